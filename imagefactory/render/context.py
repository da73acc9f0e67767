"""A rendered BuildContext -> the in-memory tar stream an engine builds from.

Only the Dockerfile and the files it COPYs go in (BuildContext.files lists exactly those),
never the repository: a smaller context uploads faster and cannot leak unrelated files.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import PurePosixPath

from .renderer import BuildContext

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
            content = src.read_bytes()
            executable = bool(src.stat().st_mode & 0o111)
            tar.addfile(_info(rel, len(content), executable=executable), io.BytesIO(content))
    return buf.getvalue()


def context_names(tar_bytes: bytes) -> list[str]:
    """The member names of a context tar (files only), for reports and tests."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return [m.name for m in tar.getmembers() if m.isfile()]
