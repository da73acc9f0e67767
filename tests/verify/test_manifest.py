"""The manifest of a tested image, without an engine: the ROCm release read from what each
kind of image has, and the tester writing the manifest after the GPU code audit (with its
inventory) on the in-memory engine."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from fake_engine import FakeEngine

from imagefactory.commands._render import collect as lines_to
from imagefactory.engine.images import BuiltImage
from imagefactory.host.devices import GpuAccess
from imagefactory.verify import manifest as manifest_mod
from imagefactory.verify.manifest import Manifest, collect, debian_upstream, rocm_release
from imagefactory.verify.results import TestResult
from imagefactory.verify.tester import Tester, TestOptions

REPO = Path(__file__).resolve().parents[2]
IMAGE_ID = "sha256:" + "ab" * 32


# -- the ROCm release ---------------------------------------------------------------------

def _pins(variant: str, package: re.Pattern[str]) -> list[tuple[str, str]]:
    """(name, version) pins of the rendered Dockerfile: what the image will list."""
    text = (REPO / "dockerfiles" / variant / "Dockerfile").read_text()
    return package.findall(text)


def test_opt_rocm_version_file_wins_and_loses_its_build_number() -> None:
    info = {"/opt/rocm/.info/version": "6.2.4-120\n", "/opt/rocm-6.2.4/.info/version": "x"}
    dpkg = ["libamdhip64-6\t6.4.3-5"]
    assert rocm_release(info, dpkg, ["rocm-sdk-core==7.14.0"]) == (
        "6.2.4", "/opt/rocm/.info/version: 6.2.4-120")
    # a version file that says no release is passed over
    assert rocm_release({"/opt/rocm/.info/version": "garbage"}, dpkg, [])[0] == "6.4.3"


def test_debian_rocm_release_from_the_hip_runtime_package() -> None:
    # debian-rocm64 pins Debian's HIP runtime (libamdhip64-<soname>) and its -dev package;
    # the manifest's dpkg lines are "package<TAB>version".
    pins = _pins("debian-rocm64", re.compile(r"^\s+(libamdhip64[-\w]*)=(\S+)", re.M))
    assert ("libamdhip64-6", "6.4.3-5") in pins
    dpkg = [*sorted(f"{name}\t{version}" for name, version in pins), "rocminfo\t7.2.4-1"]
    assert rocm_release({}, dpkg, []) == ("6.4.3", "Debian package libamdhip64-6 6.4.3-5")
    # only the runtime package says it: not -dev, not an unrelated hip library
    assert rocm_release({}, ["libamdhip64-dev\t6.4.3-5", "libhipblas2\t6.4.4-1"], []) == (
        None, None)


@pytest.mark.parametrize(("version", "upstream"), [
    ("6.4.3-5", "6.4.3"), ("1:6.4.3-5", "6.4.3"), ("7.1.1+dfsg-4", "7.1.1"),
    ("6.4.1-1.1", "6.4.1"), ("5.7.1-3ubuntu1", "5.7.1"), ("6.4.3", "6.4.3"),
    ("git20240101-1", None), ("", None)])
def test_debian_upstream(version: str, upstream: str | None) -> None:
    assert debian_upstream(version) == upstream


def test_therock_release_from_its_wheels() -> None:
    # therock-gfx1010 installs rocm[libraries,device-gfx1010]==7.14.0, which brings
    # rocm-sdk-core at the same version; the manifest lists pip names as they are spelled.
    text = (REPO / "dockerfiles" / "therock-gfx1010" / "Dockerfile").read_text()
    assert '"rocm[libraries,device-gfx1010]==7.14.0"' in text and "'rocm-sdk-core'" in text
    pip = ["numpy==2.3.5", "rocm==7.14.0", "rocm_sdk_core==7.14.0",
           "torch==2.10.0+rocm7.14.0"]
    assert rocm_release({}, [], pip) == ("7.14.0", "pip rocm-sdk-core==7.14.0")
    # a nightly keeps its pre-release part; the meta package alone is enough
    assert rocm_release({}, [], ["rocm==7.15.0a20251010"])[0] == "7.15.0a20251010"
    # torch's local version is no ROCm release: a wheel-only image (rocm52-torch113) says none
    assert rocm_release({}, ["python3\t3.8.2-0ubuntu2"], ["torch==1.13.1+rocm5.2"]) == (
        None, None)


# -- collect and the note -------------------------------------------------------------------

class ProbeEngine(FakeEngine):
    """Runs `python3 -c PROBE` on this host (the probe as it is, not a copy), then answers
    with `edits` applied, as a given image would."""

    edits: dict[str, object] = {}  # noqa: RUF012 (replaced per instance, never mutated)

    def exec(self, container: str, command: Sequence[str],
             on_output: Callable[[bytes], None] | None = None) -> int:
        self._check(f"exec {' '.join(command[:2])}")
        if list(command[:2]) != ["python3", "-c"] or command[2] != manifest_mod._PROBE:
            return 0  # the conv check: writes no report
        proc = subprocess.run([sys.executable, "-c", command[2]], capture_output=True,
                              text=True, check=True)
        data = {**json.loads(proc.stdout), **self.edits}
        if on_output is not None:
            on_output(json.dumps(data).encode() + b"\n")
        return 0


# What debian-rocm64 answers: no /opt/rocm, Debian's HIP runtime package.
DEBIAN_IMAGE = {"torch": "2.9.1", "hip": "6.4.43484", "torch_error": None, "rocm_info": {},
                "dpkg": ["libamdhip64-6\t6.4.3-5", "python3\t3.13.9-1"]}


def test_collect_reports_the_release_and_notes_what_differs() -> None:
    engine = ProbeEngine()
    engine.edits = DEBIAN_IMAGE
    m = collect(engine, "c1", "debian-rocm64", IMAGE_ID, "2.9.1", "6.4.3")
    assert (m.rocm, m.rocm_source) == ("6.4.3", "Debian package libamdhip64-6 6.4.3-5")
    assert m.python == ".".join(map(str, sys.version_info[:3])) and m.error is None
    assert m.note is None and m.notes == ()
    other = collect(engine, "c1", "debian-rocm64", IMAGE_ID, "2.9.0", "6.4.4")
    assert other.notes == ("declared torch 2.9.0, the image reports 2.9.1",
                           "declared ROCm 6.4.4, the image reports 6.4.3")
    assert other.to_dict()["note"] == "; ".join(other.notes)


def test_collect_without_an_answer_keeps_what_the_tester_knows() -> None:
    engine = FakeEngine(unreachable=True)
    gpu_code = {"inventory": {"libraries": []}, "check": {"passed": False}, "seconds": 0.1}
    m = collect(engine, "c1", "v", IMAGE_ID, "2.5.1", "6.2.4", gpu_code)
    assert m.error and "connection refused" in m.error
    assert (m.rocm, m.declared_rocm, m.gpu_code) == (None, "6.2.4", gpu_code)


@pytest.mark.parametrize(("scope", "name"), [("full", "v.json"), ("quick", "v.quick.json"),
                                             ("subset", "v.subset.json")])
def test_manifest_is_kept_beside_the_result_of_its_scope(tmp_path: Path, scope: str,
                                                         name: str) -> None:
    m = Manifest("v", IMAGE_ID, "3.12.1", None, None, None, (), (), "2.5.1")
    assert m.save(tmp_path, scope) == tmp_path / "manifests" / name
    assert json.loads((tmp_path / "manifests" / name).read_text())["gpu_code"] is None


# -- the tester: manifest after the audit --------------------------------------------------

def test_tester_writes_the_manifest_after_the_audit(project, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    variant = project.matrix.get("debian-rocm64")
    engine = ProbeEngine()
    engine.edits = DEBIAN_IMAGE
    image = engine.add_image(f"{project.matrix.repository}:{variant.name}")
    built = BuiltImage(variant, image.id, f"{project.matrix.repository}:{variant.name}",
                       "0" * 64, image)
    lines: list[str] = []
    tester = Tester(engine, project.matrix, GpuAccess((), ()),
                    TestOptions(results_dir=tmp_path, quick=True, run_id="r1"),
                    emit=lines_to(lines.append))
    monkeypatch.setattr(tester, "run_suite", lambda *a: [])  # the suite needs a container

    result = tester.run(built)

    # the audit exported the container, then the probe ran, then the conv check
    order = [c for c in engine.calls if c.startswith(("export", "exec"))]
    assert [c.split()[0] for c in order] == ["export", "exec", "exec"]
    assert order[1:] == ["exec python3 -c", "exec python3 -m"]
    assert result.gpu_code is not None  # an empty filesystem: audited, and failing
    assert [c.name for c in result.failed_checks][:1] == ["gpu code"]
    saved = json.loads((tmp_path / "manifests" / "debian-rocm64.quick.json").read_text())
    assert saved["gpu_code"] == json.loads(json.dumps(result.gpu_code))
    assert saved["rocm"] == result.rocm == "6.4.3" and saved["declared_rocm"] == "6.4.3"
    assert not (tmp_path / "manifests" / "debian-rocm64.json").exists()
    manifest_line = next(line for line in lines if line.startswith("  manifest: "))
    assert "rocm 6.4.3" in manifest_line and "GPU code of 0 libraries" in manifest_line
    assert lines.index(manifest_line) > next(
        i for i, line in enumerate(lines) if line.startswith("  gpu code: "))
    # the reported release travels in the result, strictly read back
    back = TestResult.from_json(result.to_json())
    assert back.rocm == "6.4.3"


def test_no_manifest_when_the_container_does_not_start(project, tmp_path: Path) -> None:
    variant = project.matrix.get("cpu")
    engine = FakeEngine()  # no image: creating the container fails
    built = BuiltImage(variant, IMAGE_ID, f"{project.matrix.repository}:cpu", None)
    lines: list[str] = []
    result = Tester(engine, project.matrix, GpuAccess((), ()),
                    TestOptions(results_dir=tmp_path, run_id="r2"), emit=lines_to(lines.append)
                    ).run(built)
    assert not result.passed and result.rocm is None
    assert "  manifest: none (the container did not start)" in lines
    assert not (tmp_path / "manifests").exists()


def test_results_written_before_the_rocm_field_still_read() -> None:
    data = {"schema": 1, "variant": "cpu", "image_id": IMAGE_ID, "passed": True,
            "checks": [], "conv": [], "host": None, "profile": None}
    assert TestResult.from_dict(data).rocm is None
    with pytest.raises(ValueError, match="rocm: expected a string"):
        TestResult.from_dict({**data, "rocm": 6.2})
