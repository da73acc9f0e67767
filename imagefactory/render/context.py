"""A rendered BuildContext -> the in-memory tar stream an engine builds from.

Only the Dockerfile and the files it COPYs go in (BuildContext.files lists exactly those),
never the repository: a smaller context uploads faster and cannot leak unrelated files.

Confinement: `confined_files` turns each COPY/ADD source (as Docker's parser reads it,
render/dockerfile.py) into files under the project's `dockerfiles/files/`, and refuses
anything that could reach elsewhere: absolute paths, `..`, globs, variables, URLs, symlinks
(at any level), anything not a regular file. `context_tar` checks each file again as it
reads it (no symlink followed, regular files only), so nothing outside that folder can get
into the bytes sent to the engine, whatever the configuration or the templates say.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .renderer import BuildContext

CONTEXT_PREFIX = "files"
_SKIP_PARTS = {"__pycache__"}
_FORBIDDEN = set("*?[]$\\`'\"{}~")


def _refuse(where: str, source: str, why: str) -> ConfigError:
    from ..safety import escape_control

    return ConfigError(where, None, "COPY", f"source {escape_control(source)!r} {why}")


def confined_files(root: Path, sources: list[tuple[int, str]], where: str
                   ) -> tuple[tuple[str, Path], ...]:
    """(path in the context, file on disk) for every source, all inside `root`."""
    base = root.resolve()
    found: dict[str, Path] = {}
    for line, source in sources:
        at = f"{where}:{line}" if line else where
        if "://" in source or source.startswith("git@"):
            raise _refuse(at, source, "is a URL; only files under files/ may be copied")
        if any(c in _FORBIDDEN for c in source) or any(not c.isprintable() for c in source):
            raise _refuse(at, source, "has a glob, variable, quote or control character")
        if source.startswith("/"):
            raise _refuse(at, source, "is absolute; only files under files/ may be copied")
        parts = [p for p in PurePosixPath(source).parts if p != "."]
        if ".." in parts:
            raise _refuse(at, source, "contains '..'")
        if not parts or parts[0] != CONTEXT_PREFIX:
            raise _refuse(at, source, "must be under files/")
        path = base
        for part in parts[1:]:
            path = path / part
            try:
                st = os.lstat(path)
            except OSError:
                raise _refuse(at, source, f"does not exist under {root}") from None
            if stat.S_ISLNK(st.st_mode):
                raise _refuse(at, source, f"goes through a symlink ({path})")
        if not path.resolve().is_relative_to(base):  # belt and braces after the lstat walk
            raise _refuse(at, source, "resolves outside files/")
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            for rel, f in _walk(path, base, at, source):
                found[rel] = f
        elif stat.S_ISREG(st.st_mode):
            found[PurePosixPath(CONTEXT_PREFIX, *parts[1:]).as_posix()] = path
        else:
            raise _refuse(at, source, "is not a regular file or folder")
    return tuple(sorted(found.items()))


def _walk(top: Path, base: Path, at: str, source: str) -> list[tuple[str, Path]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        here = Path(dirpath)
        # Caches and hidden files (tool caches such as .ruff_cache) are never build inputs.
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_PARTS
                             and not d.startswith("."))
        for d in dirnames:
            if os.path.islink(here / d):
                raise _refuse(at, source, f"holds a symlink ({here / d})")
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith(".pyc"):
                continue
            f = here / name
            st = os.lstat(f)
            if stat.S_ISLNK(st.st_mode):
                raise _refuse(at, source, f"holds a symlink ({f})")
            if not stat.S_ISREG(st.st_mode):
                raise _refuse(at, source, f"holds something not a regular file ({f})")
            out.append(((PurePosixPath(CONTEXT_PREFIX) / f.relative_to(base).as_posix())
                        .as_posix(), f))
    return out


def _read_confined(src: Path) -> tuple[bytes, int]:
    """The bytes and mode of a regular file, never through a symlink at its last step."""
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(str(src), None, "COPY", "not a regular file")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(), st.st_mode
    finally:
        os.close(fd)

# Fixed owner and time: the same inputs give the same tar, so layers are reproducible;
# the inputs hash, not file times, says when something changed.
_MTIME = 0


def _info(name: str, size: int = 0, *, directory: bool = False, executable: bool = False
          ) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = _MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.mode = 0o755 if executable else 0o644
    return info


def context_tar(ctx: BuildContext) -> bytes:
    """The context as an uncompressed tar: Dockerfile first, then each COPY source file."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = ctx.dockerfile.encode()
        tar.addfile(_info("Dockerfile", len(data)), io.BytesIO(data))
        dirs: set[str] = set()
        for rel, src in ctx.files:
            # Explicit directory entries, so their mode does not depend on the engine.
            for parent in reversed(PurePosixPath(rel).parents[:-1]):
                if str(parent) not in dirs:
                    dirs.add(str(parent))
                    tar.addfile(_info(str(parent), directory=True))
            content, mode = _read_confined(src)
            executable = bool(mode & 0o111)
            tar.addfile(_info(rel, len(content), executable=executable), io.BytesIO(content))
    return buf.getvalue()


def context_names(tar_bytes: bytes) -> list[str]:
    """The member names of a context tar (files only), for reports and tests."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return [m.name for m in tar.getmembers() if m.isfile()]
