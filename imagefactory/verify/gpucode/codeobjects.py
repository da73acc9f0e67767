"""The code objects themselves, for the instruction-level check (isa.py): standalone AMDGPU
code objects (`.co`, `.hsaco`) and the entries of offload bundles in a library's
`.hip_fatbin` section or a bundle file, plain and compressed.

audit.py only reads bundle headers; here the selected entries are cut out. A plain bundle's
entry is read by seeking to it; a compressed bundle is decompressed whole (bounded by
MAX_CODE_OBJECT), since its entries lie behind the header inside the compressed payload."""

from __future__ import annotations

import io
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from . import elf
from .audit import KNOWN_LIBRARIES, is_tensile, library_of, member_path, regular_files
from .bundle import _HEADER_SIZES, _METHODS, BUNDLE_MAGIC, CCOB_MAGIC, Bundle, read_plain_header
from .errors import GpuCodeError, MalformedInput
from .model import CODE_OBJECT, FATBIN, TENSILE
from .reader import ForwardReader
from .targets import TargetId

# A code object, or a decompressed bundle, larger than this is refused (a bomb, not a
# kernel: rocBLAS's largest Tensile code objects are tens of MB).
MAX_CODE_OBJECT = 1 << 30

Want = Callable[[TargetId], bool]


@dataclass(frozen=True)
class CodeObject:
    """One AMDGPU code object to disassemble: on disk already (`file`) or cut out (`data`)."""

    library: str
    where: str  # the file, and the bundle entry it came from
    target: TargetId
    file: str | None = None
    data: bytes | None = None


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data, self._off = data, 0

    def read_exact(self, n: int, what: str) -> bytes:
        out = self._data[self._off:self._off + n]
        if len(out) != n:
            raise MalformedInput(f"truncated {what}")
        self._off += n
        return out


def _decompress(f: IO[bytes], at: int, limit: int) -> bytes:
    """The plain bundle inside the compressed bundle at `at`."""
    f.seek(at)
    head = f.read(8)
    if len(head) != 8 or head[:4] != CCOB_MAGIC:
        raise MalformedInput(f"at offset {at}: no CCOB header")
    _m, version, method = struct.unpack("<4sHH", head)
    if version not in _HEADER_SIZES or method not in _METHODS:
        raise MalformedInput(f"at offset {at}: compressed bundle v{version} method {method}")
    rest = f.read(_HEADER_SIZES[version] - 8)
    if len(rest) != _HEADER_SIZES[version] - 8:
        raise MalformedInput(f"at offset {at}: truncated CCOB header")
    if version == 1:
        total, (usize, _h) = None, struct.unpack("<IQ", rest)
    elif version == 2:
        total, usize, _h = struct.unpack("<IIQ", rest)
    else:
        total, usize, _h = struct.unpack("<QQQ", rest)
    if usize > MAX_CODE_OBJECT:
        raise MalformedInput(f"at offset {at}: compressed bundle claims {usize} bytes "
                             f"uncompressed (limit {MAX_CODE_OBJECT})")
    left = limit - _HEADER_SIZES[version] if total is None else total - _HEADER_SIZES[version]
    out = bytearray()
    try:
        if _METHODS[method] == "zstd":
            import zstandard

            reader = zstandard.ZstdDecompressor().stream_reader(
                io.BytesIO(f.read(max(0, left))), read_across_frames=False)
            while len(out) <= usize and (chunk := reader.read(1 << 20)):
                out += chunk
        else:
            z = zlib.decompressobj()
            while left > 0 and not z.eof and len(out) <= usize:
                data = f.read(min(left, 1 << 20))
                if not data:
                    break
                left -= len(data)
                out += z.decompress(data, usize + 1 - len(out))
    except MalformedInput:
        raise
    except Exception as exc:  # zlib.error, zstandard.ZstdError: a corrupt payload
        raise MalformedInput(f"at offset {at}: compressed bundle does not decompress: "
                             f"{exc}") from None
    if len(out) != usize:
        raise MalformedInput(f"at offset {at}: compressed bundle gives {len(out)} bytes, "
                             f"its header says {usize}")
    return bytes(out)


def _entries(bundle: Bundle, f: IO[bytes], end: int, want: Want, path: str, library: str
             ) -> Iterator[CodeObject]:
    if bundle.compressed:
        plain = _decompress(f, bundle.offset, end - bundle.offset)
        entries, _extent = read_plain_header(_Bytes(plain), len(plain))
        for e in entries:
            if e.target is not None and e.size and want(e.target):
                yield CodeObject(library, f"{path} @0x{bundle.offset:x} [{e.entry_id}]", e.target,
                                 data=plain[e.offset:e.offset + e.size])
        return
    for e in bundle.entries:
        if e.target is not None and e.size and want(e.target):
            if e.size > MAX_CODE_OBJECT:
                raise MalformedInput(f"bundle entry {e.entry_id} is {e.size} bytes")
            f.seek(bundle.offset + e.offset)
            data = f.read(e.size)
            if len(data) != e.size:
                raise MalformedInput(f"bundle entry {e.entry_id} is truncated")
            yield CodeObject(library, f"{path} @0x{bundle.offset:x} [{e.entry_id}]",
                             e.target, data=data)


def _bundles(f: IO[bytes], start: int, end: int) -> list[Bundle]:
    from .bundle import scan_bundles

    f.seek(start)
    r = ForwardReader(f, start, end, seekable=True)
    return [b for b in scan_bundles(r) if isinstance(b, Bundle)]


def from_file(path: str, f: IO[bytes], size: int, want: Want, on_disk: str | None
              ) -> Iterator[CodeObject]:
    """The wanted code objects in one seekable file (positioned anywhere). `on_disk`: its
    path on this host, when a standalone code object can be handed to the disassembler as
    it is. Raises MalformedInput for what its headers promise and do not hold."""
    f.seek(0)
    head = f.read(elf.EHDR_SIZE)
    hdr = elf.parse_header(head)
    if hdr is not None and hdr.machine == elf.EM_AMDGPU:
        target = elf.code_object_target(hdr)
        if want(target):
            lib = library_of(path, TENSILE if is_tensile(path) else CODE_OBJECT)
            if on_disk is not None:
                yield CodeObject(lib, path, target, file=on_disk)
            else:
                f.seek(0)
                yield CodeObject(lib, path, target, data=f.read(size))
        return
    lib = library_of(path, FATBIN)
    if hdr is not None:
        for sec in elf.fatbin_sections(elf.read_sections(f, hdr, size), size):
            for b in _bundles(f, sec.offset, sec.offset + sec.size):
                yield from _entries(b, f, sec.offset + sec.size, want, path, lib)
    elif head.startswith((BUNDLE_MAGIC, CCOB_MAGIC)):
        for b in _bundles(f, 0, size):
            yield from _entries(b, f, size, want, path, lib)


def in_path(top: Path, want: Want, problems: list[str]) -> Iterator[CodeObject]:
    """The wanted code objects under a directory (or one file) on this host."""
    for p, st in regular_files(top):
        try:
            with p.open("rb") as f:
                yield from list(from_file(str(p), f, st.st_size, want, str(p)))
        except MalformedInput as exc:
            problems.append(f"{p}: {exc}")
        except OSError as exc:
            problems.append(f"{p}: {exc.strerror or exc}")


def _spool_worthy(path: str) -> bool:
    """A host library that may carry a fat binary: the ROCm libraries and torch's own."""
    name = PurePosixPath(path).name
    return ".so" in name and (library_of(path, FATBIN) in KNOWN_LIBRARIES
                              or name.startswith(("libtorch", "libc10")))


def in_tar(fileobj: IO[bytes], want: Want, problems: list[str], source: str = "<tar>"
           ) -> Iterator[CodeObject]:
    """The wanted code objects in a tar stream, read once: standalone code objects are read
    into memory; a ROCm library or bundle file is spooled to a temporary file (its section
    headers lie at its end) and cut like a file on disk."""
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
            for member in tar:
                if not member.isreg() or member.size < elf.EHDR_SIZE:
                    continue
                path = member_path(member.name)
                data = tar.extractfile(member)
                if data is None:
                    continue
                head = data.read(elf.EHDR_SIZE)
                amdgpu = head[:4] == elf.ELF_MAGIC and len(head) >= 20 and \
                    struct.unpack_from("<H", head, 18)[0] == elf.EM_AMDGPU
                bundle = head.startswith((BUNDLE_MAGIC, CCOB_MAGIC))
                host = head[:4] == elf.ELF_MAGIC and not amdgpu and _spool_worthy(path)
                if not (amdgpu or bundle or host):
                    continue
                if member.size > MAX_CODE_OBJECT and not host:
                    problems.append(f"{path}: {member.size} bytes, over the "
                                    f"{MAX_CODE_OBJECT}-byte limit for a code object")
                    continue
                with tempfile.TemporaryFile() as spool:
                    spool.write(head)
                    while chunk := data.read(1 << 20):
                        spool.write(chunk)
                    try:
                        yield from list(from_file(path, spool, member.size, want, None))
                    except MalformedInput as exc:
                        problems.append(f"{path}: {exc}")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise GpuCodeError(f"{source}: unreadable tar stream: {exc}") from None
