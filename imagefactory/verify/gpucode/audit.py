"""The audit: a directory or a tar stream -> Inventory of GPU code per library and target.

A file on disk is read as little as its format allows: the ELF headers, then only the
`.hip_fatbin` section, and inside it only each bundle's header (the code objects are skipped
by seeking; a compressed bundle is decompressed only as far as its entry IDs). A tar stream
(`docker export`) cannot seek, so each member is read once, front to back, and a host ELF is
searched for bundle magics as it streams: only bundles whose whole header parses count, which
keeps string constants such as the one in the HIP runtime out. Memory stays bounded by the
reader's chunk and the header limits in bundle.py in both cases."""

from __future__ import annotations

import logging
import os
import re
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from . import elf
from .bundle import BUNDLE_MAGIC, CCOB_MAGIC, Bundle, scan_bundles
from .errors import AuditUsageError, GpuCodeError, MalformedInput
from .model import (
    BUNDLE,
    CODE_OBJECT,
    FATBIN,
    HOST,
    KDB,
    TENSILE,
    CodeFile,
    Inventory,
    Library,
    normalise_name,
)
from .reader import ForwardReader
from .targets import processors_in_name

log = logging.getLogger(__name__)

_TENSILE_EXT = (".co", ".hsaco", ".dat", ".yaml")
_VERSION_DIR = re.compile(r"\d+(\.\d+)*")
# torch's own libraries; the ROCm libraries a wheel bundles in torch/lib keep their names.
_TORCH_LIBS = ("libtorch", "libc10", "libcaffe2", "_C.")
# ROCm libraries listed even when they carry no device code: MIOpen without a fat binary
# still compiles its kernels at run time, and "present, no code" differs from "absent".
KNOWN_LIBRARIES = frozenset({"miopen", "rocblas", "hipblaslt", "hipblas", "rocfft",
                             "rocsparse", "rocrand", "rocsolver", "rccl", "amdhip64"})


def is_kdb(path: str) -> bool:
    return path.endswith(".kdb") and bool(processors_in_name(PurePosixPath(path).name))


def is_tensile(path: str) -> bool:
    """A file of a Tensile library directory: `.../rocblas/library/TensileLibrary_gfx1010.dat`,
    `.../Kernels.so-000-gfx1010.hsaco`, hipBLASLt's `.../hipblaslt/library/extop_gfx1100.co`."""
    p = PurePosixPath(path)
    name = p.name
    if name.startswith(("TensileLibrary", "Kernels.so-")):
        return True
    return "library" in p.parts[:-1] and name.endswith(_TENSILE_EXT)


def library_of(path: str, kind: str) -> str:
    """The library a file belongs to, as the audit names it (lower case, no lib/.so)."""
    p = PurePosixPath(path)
    parts = p.parts
    if p.name.startswith(_TORCH_LIBS) and "torch" in parts:  # libtorch_hip.so, libc10_hip.so
        return "torch"
    if kind == KDB:
        return "miopen"
    if kind == TENSILE and "library" in parts[:-1]:
        i = len(parts) - 2 - list(reversed(parts[:-1])).index("library")
        for comp in reversed(parts[:i]):
            if not _VERSION_DIR.fullmatch(comp):
                return normalise_name(comp)
    return normalise_name(p.name)


@dataclass
class _Found:
    """What one file turned out to carry, before it becomes a frozen CodeFile."""

    kind: str | None = None
    targets: dict[str, int] = field(default_factory=dict)
    compressed: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    elf_library: bool = False  # a host ELF shared library (name *.so*)

    def add_bundle(self, b: Bundle) -> None:
        for e in b.code_objects:
            t = str(e.target)
            self.targets[t] = self.targets.get(t, 0) + 1
        if b.compressed:
            self.compressed.add(b.compressed)


def _scan(found: _Found, reader: ForwardReader, report: bool) -> None:
    for item in scan_bundles(reader):
        if isinstance(item, MalformedInput):
            if report:
                found.problems.append(str(item))
        else:
            found.add_bundle(item)


def _inspect(path: str, size: int, f: IO[bytes], seekable: bool) -> tuple[_Found, int]:
    """Read one file (positioned at its start) -> what it carries, bytes read."""
    found = _Found()
    if is_kdb(path):
        found.kind = KDB
        for proc in processors_in_name(PurePosixPath(path).name)[:1]:
            found.targets[proc] = 1
        return found, 0
    head = f.read(elf.EHDR_SIZE)
    nread = len(head)
    hdr = None
    try:
        hdr = elf.parse_header(head)
        if hdr is not None and hdr.machine == elf.EM_AMDGPU:
            found.kind = CODE_OBJECT
            found.targets[str(elf.code_object_target(hdr))] = 1
        elif hdr is not None and seekable:
            found.elf_library = ".so" in PurePosixPath(path).name
            for sec in elf.fatbin_sections(elf.read_sections(f, hdr, size), size):
                f.seek(sec.offset)
                r = ForwardReader(f, sec.offset, sec.offset + sec.size, seekable=True)
                _scan(found, r, report=True)
                nread += r.bytes_read
            found.kind = FATBIN if found.targets or found.problems else None
        elif hdr is not None or head.startswith((BUNDLE_MAGIC, CCOB_MAGIC)):
            # A bundle file, or a host ELF streamed from a tar: search it as it comes.
            bundle_file = hdr is None
            found.elf_library = not bundle_file and ".so" in PurePosixPath(path).name
            r = ForwardReader(f, len(head), size, seekable=seekable, prefix=head)
            _scan(found, r, report=bundle_file)
            nread += r.bytes_read
            if found.targets or found.problems:
                found.kind = BUNDLE if bundle_file else FATBIN
    except MalformedInput as exc:
        name = PurePosixPath(path).name
        host_elf = head[:4] == elf.ELF_MAGIC and (hdr is None or hdr.machine != elf.EM_AMDGPU)
        if host_elf and not found.targets and not name.endswith((".co", ".hsaco")):
            # A broken program or data file says nothing about GPU code; a broken library
            # might hide some: list it, with the problem.
            if ".so" in name:
                found.kind = HOST
                found.problems.append(str(exc))
        else:
            found.problems.append(str(exc))
            found.kind = found.kind or (CODE_OBJECT if head[:4] == elf.ELF_MAGIC else BUNDLE)
    if is_tensile(path):
        found.kind = TENSILE
        if not found.targets:  # a .dat index, or a code object that did not parse
            for proc in processors_in_name(PurePosixPath(path).name)[:1]:
                found.targets[proc] = 1
    return found, nread


def _code_file(path: str, size: int, found: _Found) -> CodeFile | None:
    if found.kind is None and found.elf_library and \
            library_of(path, HOST) in KNOWN_LIBRARIES:
        found.kind = HOST
    if found.kind is None or (found.kind == TENSILE and not found.targets and not found.problems):
        return None  # nothing GPU, or a Tensile index that names no arch
    return CodeFile(path, found.kind, library_of(path, found.kind), size,
                    dict(sorted(found.targets.items())), tuple(sorted(found.compressed)),
                    tuple(found.problems))


def audit_file(path: str | os.PathLike[str], display: str | None = None) -> CodeFile | None:
    """One file on disk -> CodeFile, or None when it carries no GPU code."""
    p = Path(path)
    size = p.stat().st_size
    with p.open("rb") as f:
        found, _n = _inspect(display or str(p), size, f, seekable=True)
    return _code_file(display or str(p), size, found)


def _group(source: str, files: Iterable[CodeFile], problems: list[str], seen: int,
           nbytes: int) -> Inventory:
    by_lib: dict[str, list[CodeFile]] = {}
    for cf in files:
        by_lib.setdefault(cf.library, []).append(cf)
        problems.extend(f"{cf.path}: {p}" for p in cf.problems)
    libs = tuple(Library(name, tuple(sorted(fs, key=lambda c: c.path)))
                 for name, fs in sorted(by_lib.items()))
    return Inventory(source, libs, tuple(problems), seen, nbytes)


def audit_path(root: str | os.PathLike[str]) -> Inventory:
    """Every GPU library under a directory (or one file) on the host, e.g. a torch/lib."""
    top = Path(root)
    if not top.exists():
        raise AuditUsageError(f"{top}: no such file or directory")
    files: list[CodeFile] = []
    problems: list[str] = []
    seen = nbytes = 0
    for p, st in regular_files(top, problems):
        try:
            seen += 1
            with p.open("rb") as f:
                found, n = _inspect(str(p), st.st_size, f, seekable=True)
            nbytes += n
        except OSError as exc:
            problems.append(f"{p}: {exc.strerror or exc}")
            continue
        cf = _code_file(str(p), st.st_size, found)
        if cf is not None:
            files.append(cf)
    return _group(str(top), files, problems, seen, nbytes)


def _in_tree(p: Path, root: Path) -> bool:
    try:
        return p.resolve().is_relative_to(root)
    except (OSError, RuntimeError):
        return False


def regular_files(top: Path, problems: list[str] | None = None
                  ) -> Iterator[tuple[Path, os.stat_result]]:
    """Every regular file under `top` once (by inode). Symlinks are followed to files inside
    the tree given (`librocblas.so -> librocblas.so.4`, the usual layout), and `top` itself
    when it is one; a link out of the tree is not followed (it is not part of what was
    asked for, and /proc-like targets block)."""
    root = top.resolve()
    seen: set[tuple[int, int]] = set()
    paths: Iterable[Path] = [top] if root.is_file() else _walk(top)
    for p in paths:
        try:
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                if p != top and not _in_tree(p, root):
                    continue
                st = p.stat()
        except OSError as exc:
            if problems is not None and not p.is_symlink():
                problems.append(f"{p}: {exc.strerror or exc}")
            continue
        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            yield p, st


_PSEUDO = frozenset({"/proc", "/sys", "/dev", "/run"})  # reads there block or never end


def _walk(top: Path) -> Iterable[Path]:
    for d, dirs, names in os.walk(top):
        dirs[:] = sorted(x for x in dirs if os.path.realpath(os.path.join(d, x)) not in _PSEUDO)
        for n in sorted(names):
            yield Path(d) / n


def audit_tar(fileobj: IO[bytes], source: str = "<tar>") -> Inventory:
    """Every GPU library in a tar stream (e.g. `docker export`), read once, front to back;
    nothing is written to disk. Member paths are reported absolute (`/usr/lib/...`)."""
    files: list[CodeFile] = []
    problems: list[str] = []
    seen = nbytes = 0
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
            for member in tar:
                if not member.isreg():
                    continue
                seen += 1
                path = member_path(member.name)
                data = tar.extractfile(member)
                if data is None:
                    continue
                try:
                    found, n = _inspect(path, member.size, data, seekable=False)
                except MalformedInput as exc:  # pragma: no cover - _inspect records these
                    problems.append(f"{path}: {exc}")
                    continue
                nbytes += n
                cf = _code_file(path, member.size, found)
                if cf is not None:
                    files.append(cf)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise GpuCodeError(f"{source}: unreadable tar stream: {exc}") from None
    return _group(source, files, problems, seen, nbytes)


def member_path(name: str) -> str:
    """An exported tar member's path in the image: `./usr/lib/x` and `usr/lib/x` are
    `/usr/lib/x`."""
    while name.startswith("./"):
        name = name[2:]
    return "/" + name.lstrip("/")
