"""What a tested image holds, as the running container reports it: Python, torch (and its
HIP), the ROCm release, every Python distribution (`pip freeze` form) and Debian package, and
the GPU code inventory the tester's audit read from it.

In the manner of jupyter/docker-stacks' tagging/manifests: versions come from the image,
not from what the matrix declares, and a declared version that differs is said so.

The ROCm release is read from what the image has, first found wins: AMD's packages write
/opt/rocm*/.info/version; Debian's ROCm lives in /usr (its HIP runtime package
libamdhip64-<soname> says the release); TheRock's comes as pip wheels (rocm-sdk-core, rocm).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..engine.base import ContainerEngine, EngineError
from ..safety import write_atomic
from .results import result_path

# Runs inside the image with its own python3: importlib.metadata lists distributions without
# pip (Debian's python3 images have none), dpkg-query lists the packages. ROCm's version
# files are read here; the packages that say the release are picked on the host (rocm_release).
_PROBE = r"""
import glob, json, platform, subprocess, importlib.metadata as md
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
out["rocm_info"] = {}
for root in ["/opt/rocm", *sorted(glob.glob("/opt/rocm-*"))]:
    for name in ("version", "version-dev"):
        try:
            out["rocm_info"][f"{root}/.info/{name}"] = open(f"{root}/.info/{name}").read(200)
            break
        except OSError:
            pass
print(json.dumps(out))
"""

# Debian's HIP runtime: libamdhip64-6 (the soname in the name, as Debian policy has it);
# not -dev, not -tests.
_DEBIAN_HIP = re.compile(r"libamdhip64-?[0-9]+")
# TheRock's wheels, the core SDK first: `rocm` is the meta package that pins it.
_PIP_ROCM = ("rocm-sdk-core", "rocm")
_RELEASE = re.compile(r"[0-9]+(?:\.[0-9]+)+")


def rocm_release(info: Mapping[str, str], dpkg: Iterable[str], pip: Iterable[str]
                 ) -> tuple[str | None, str | None]:
    """(release, where it was read) of the ROCm the image has, or (None, None).

    `info`: ROCm version files by path (/opt/rocm first), text like "6.2.4-120" (release and
    build number); `dpkg`: "package<TAB>version" lines; `pip`: "name==version" lines.
    """
    for path, text in info.items():
        found = _RELEASE.match(text.strip())
        if found:
            return found.group(), f"{path}: {text.strip()[:40]}"
    for line in dpkg:
        package, _, version = line.partition("\t")
        if _DEBIAN_HIP.fullmatch(package):
            release = debian_upstream(version)
            if release:
                return release, f"Debian package {package} {version}"
    wheels = {}
    for line in pip:
        name, sep, version = line.partition("==")
        if sep:
            wheels[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    for name in _PIP_ROCM:
        if wheels.get(name):
            return wheels[name], f"pip {name}=={wheels[name]}"
    return None, None


def debian_upstream(version: str) -> str | None:
    """The upstream release in a Debian version: `1:6.4.3+dfsg-5` -> 6.4.3 (no epoch, no
    Debian revision, no repack suffix); None when it does not start with a release."""
    upstream = version.strip().split(":", 1)[-1]
    if "-" in upstream:
        upstream = upstream.rsplit("-", 1)[0]
    found = _RELEASE.match(upstream.split("+", 1)[0])
    return found.group() if found else None


@dataclass(frozen=True)
class Manifest:
    variant: str
    image_id: str
    python: str | None
    torch: str | None
    hip: str | None
    rocm: str | None  # the release, as rocm_release reads it from the image
    pip: tuple[str, ...]
    dpkg: tuple[str, ...]  # "package\tversion"
    declared_torch: str
    error: str | None = None
    declared_rocm: str | None = None  # None for a CPU variant
    rocm_source: str | None = None  # where `rocm` was read
    # The tester's GPU code audit of this image: {"inventory": Inventory.brief(), "check":
    # CodeCheck.to_dict(), "seconds": ...} (as TestResult.gpu_code); None for a CPU variant
    # or when the audit could not read the image.
    gpu_code: Mapping[str, Any] | None = None

    @property
    def notes(self) -> tuple[str, ...]:
        """Declared versions that differ from those the image reports."""
        from ..identity import version_note

        found = [version_note(self.declared_torch, self.torch)]
        if self.declared_rocm:
            found.append(version_note(self.declared_rocm, self.rocm, "ROCm"))
        return tuple(n for n in found if n)

    @property
    def note(self) -> str | None:
        """The notes in one line (None when the image reports what was declared)."""
        return "; ".join(self.notes) or None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["pip"], out["dpkg"] = list(self.pip), list(self.dpkg)
        out["gpu_code"] = None if self.gpu_code is None else dict(self.gpu_code)
        out["note"] = self.note
        return out

    def save(self, results_dir: Path, scope: str = "full") -> Path:
        """<results>/manifests/<variant>.json (<variant>.quick.json, .subset.json as the test
        result beside it): beside the results, not among them (readers of <results>/*.json
        take every file there for a test result)."""
        from ..errors import JobError

        path = result_path(results_dir / "manifests", self.variant, scope)
        return write_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n", error=JobError)


def collect(engine: ContainerEngine, container: str, variant: str, image_id: str,
            declared_torch: str, declared_rocm: str | None = None,
            gpu_code: Mapping[str, Any] | None = None) -> Manifest:
    """Ask the running container; an image that cannot answer gives a Manifest with
    `error` set (the suite reports what is broken). `gpu_code` is the audit's, kept with it."""
    empty = Manifest(variant, image_id, None, None, None, None, (), (), declared_torch,
                     declared_rocm=declared_rocm, gpu_code=gpu_code)
    chunks: list[bytes] = []
    try:
        rc = engine.exec(container, ["python3", "-c", _PROBE], chunks.append)
    except EngineError as exc:
        return replace(empty, error=str(exc))
    text = b"".join(chunks).decode("utf-8", "replace").strip()
    try:
        data = json.loads(text.splitlines()[-1]) if rc == 0 and text else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return replace(empty, error=f"the manifest probe exited {rc}: {text[-200:]}")
    pip, dpkg = tuple(data.get("pip") or ()), tuple(data.get("dpkg") or ())
    info = data.get("rocm_info")
    rocm, source = rocm_release(info if isinstance(info, dict) else {}, dpkg, pip)
    return replace(empty, python=data.get("python"), torch=data.get("torch"),
                   hip=data.get("hip"), rocm=rocm, rocm_source=source, pip=pip, dpkg=dpkg,
                   error=data.get("torch_error"))
