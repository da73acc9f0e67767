"""What a tested image holds, as the running container reports it: Python, torch (and its
HIP), the ROCm release, every Python distribution (`pip freeze` form) and Debian package.

In the manner of jupyter/docker-stacks' tagging/manifests: versions come from the image,
not from what the matrix declares, and a declared version that differs is said so.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..engine.base import ContainerEngine, EngineError

# Runs inside the image with its own python3: importlib.metadata lists distributions without
# pip (Debian's python3 images have none), dpkg-query lists the packages.
_PROBE = r"""
import json, platform, subprocess, importlib.metadata as md
out = {"python": platform.python_version()}
try:
    import torch
    out["torch"] = torch.__version__
    out["hip"] = getattr(torch.version, "hip", None)
except Exception as exc:
    out["torch_error"] = f"{type(exc).__name__}: {exc}"
out["pip"] = sorted({f"{d.metadata['Name']}=={d.version}" for d in md.distributions()
                     if d.metadata['Name']}, key=str.lower)
try:
    dpkg = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\n"],
                          capture_output=True, text=True, check=True).stdout
    out["dpkg"] = sorted(line for line in dpkg.splitlines() if line)
except Exception:
    out["dpkg"] = []
for path in ("/opt/rocm/.info/version", "/opt/rocm/.info/version-dev"):
    try:
        out["rocm"] = open(path).read().strip()
        break
    except OSError:
        pass
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Manifest:
    variant: str
    image_id: str
    python: str | None
    torch: str | None
    hip: str | None
    rocm: str | None
    pip: tuple[str, ...]
    dpkg: tuple[str, ...]  # "package\tversion"
    declared_torch: str
    error: str | None = None

    @property
    def note(self) -> str | None:
        """The declared torch differs from the one the image reports: say so."""
        from ..identity import version_note

        return version_note(self.declared_torch, self.torch)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["pip"], out["dpkg"] = list(self.pip), list(self.dpkg)
        out["note"] = self.note
        return out

    def save(self, results_dir: Path) -> Path:
        """<results>/manifests/<variant>.json: beside the results, not among them (readers
        of <results>/*.json take every file there for a test result)."""
        path = results_dir / "manifests" / f"{self.variant}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path


def collect(engine: ContainerEngine, container: str, variant: str, image_id: str,
            declared_torch: str) -> Manifest:
    """Ask the running container; an image that cannot answer gives a Manifest with
    `error` set (the suite reports what is broken)."""
    chunks: list[bytes] = []
    try:
        rc = engine.exec(container, ["python3", "-c", _PROBE], chunks.append)
    except EngineError as exc:
        return _empty(variant, image_id, declared_torch, str(exc))
    text = b"".join(chunks).decode("utf-8", "replace").strip()
    try:
        data = json.loads(text.splitlines()[-1]) if rc == 0 and text else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return _empty(variant, image_id, declared_torch,
                      f"the manifest probe exited {rc}: {text[-200:]}")
    return Manifest(variant, image_id, data.get("python"), data.get("torch"), data.get("hip"),
                    data.get("rocm"), tuple(data.get("pip") or ()),
                    tuple(data.get("dpkg") or ()), declared_torch, data.get("torch_error"))


def _empty(variant: str, image_id: str, declared_torch: str, error: str) -> Manifest:
    return Manifest(variant, image_id, None, None, None, None, (), (), declared_torch, error)
