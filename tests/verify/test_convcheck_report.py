"""Host side of the conv check's issue 16 fields: the result JSON and the report carry the new
classes, compile/run times and the per-variant "what works" summary; the MIOpen cache volume
that `imagefactory test` keeps per image and host GPU (and empties with --cold)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from imagefactory.commands._render import collect
from imagefactory.events import discard
from imagefactory.report import writer as report
from imagefactory.verify.results import ConvCase, TestResult

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "results"
ORDER = ["rocm52-torch113", "rocm52-torch20", "rocm62-patched", "rocm62-native"]


def test_convcheck_entries_round_trip_with_the_new_fields() -> None:
    entry = {"case": "sdpa-flash-h8-s4096-d40-fwd", "status": "skipped", "seconds": 0.4,
             "gflops": None, "max_abs_err": None, "max_rel_err": None,
             "detail": "this build has no usable flash SDPA kernel", "isolation": "fork",
             "area": "attention", "dtype": "float16", "compile_seconds": None,
             "run_seconds": None, "budget_extended": 0.0, "unknown_later_field": 1}
    case = ConvCase.from_dict(entry)
    assert case.ok and case.area == "attention" and case.dtype == "float16"
    assert not ConvCase.from_dict({**entry, "status": "not-run"}).ok
    assert not ConvCase.from_dict({**entry, "status": "out-of-memory"}).ok
    result = TestResult.load(FIXTURES, "rocm52-torch20")
    assert result is not None and result.gpu_reset and "GPU Hang" in result.gpu_reset
    again = TestResult.from_json(result.to_json())
    assert again == result and again.conv_works["convolutions"]["verdict"] == "no"
    # results written before these fields still load
    old = json.loads(result.to_json())
    for key in ("conv_works", "gpu_reset", "miopen_cache", "cold"):
        old.pop(key)
    assert TestResult.from_dict(old).conv_works == {}


def test_report_has_the_new_classes_and_what_works_per_variant() -> None:
    compat = report.load([FIXTURES], ORDER)
    md = report.markdown(compat, png=None, generated="now")
    assert "## What works" in md
    assert ("- **rocm52-torch20** on gfx1010 (AMD Radeon RX 5700 XT): convolutions: **no** "
            "(gpu-exception, gpu-hang, illegal-instruction, no-kernel, out-of-memory)") in md
    assert "- **rocm62-native** on gfx1010" in md and "convolutions: **yes**" in md
    assert "matmul, Linear, pooling: **not checked**" in md
    assert "rocm52-torch20: GPU reset during conv2d-k1-c64-64x64-fwd" in md
    row = next(r for r in compat.rows if r.label == "rocm52-torch20")
    cells = [report.cell_text(compat.cell(row, case)) for case in compat.cases]
    assert cells == ["**out-of-memory**", "**illegal-instruction**", "**gpu-exception**",
                     "**no-kernel**", "**gpu-hang**", "not-run"]
    for cls in ("skipped", "gpu-hang", "illegal-instruction", "gpu-exception",
                "out-of-memory", "not-run"):
        assert f"- `{cls}`: " in md
    data = report.to_json(compat, generated="now")
    torch20 = next(r for r in data["rows"] if r["variant"] == "rocm52-torch20")
    assert torch20["works"]["convolutions"]["failed"] == 5 and torch20["gpu_reset"]
    assert torch20["cells"]["matmul-512-fwd"]["status"] == "not-run"
    assert set(torch20["cells"]["matmul-512-fwd"]) >= {"area", "compile_seconds",
                                                       "run_seconds"}


def test_ok_cell_shows_compile_time_when_it_matters() -> None:
    assert report.cell_text(ConvCase("c", "ok", seconds=95.0, compile_seconds=90.0)) == \
        "ok 95.00 s (compile 90.00 s)"
    assert report.cell_text(ConvCase("c", "ok", seconds=1.0, compile_seconds=0.2)) == \
        "ok 1.00 s"


@pytest.mark.docker
def test_miopen_cache_volume_is_kept_per_image_and_host_and_emptied_cold(engine, docker_client,
                                                                       project) -> None:
    from suite_session import SESSION

    from imagefactory.engine.containers import SESSION_LABEL
    from imagefactory.engine.images import BuiltImage
    from imagefactory.host.devices import GpuAccess
    from imagefactory.verify.tester import MIOPEN_CACHE_LABEL, Tester, TestOptions

    variant = next(v for v in project.matrix.variants if v.rocm)
    # An image id no engine has: the volume is named after it, never made by anyone else.
    built = BuiltImage(variant, f"sha256:{uuid.uuid4().hex}{uuid.uuid4().hex}", "x:y", None)
    access = GpuAccess((), ())
    warm = Tester(engine, project.matrix, access, TestOptions(), emit=discard)
    said: list[str] = []
    cold = Tester(engine, project.matrix, access, TestOptions(cold=True), emit=collect(said.append))
    name = warm.miopen_cache(variant, built)
    assert name is not None
    try:
        assert name == f"imagefactory-miopen-{variant.name}-{built.image_id[7:19]}-" + (
            warm.host_archs[0] if warm.host_archs else "nogpu")
        volume = docker_client.volumes.get(name)
        assert volume.attrs["Labels"][MIOPEN_CACHE_LABEL] == variant.name
        # this session made it: its label is what the session-end leftover check finds
        assert name in engine.list_volumes(label=f"{SESSION_LABEL}={SESSION}")
        # something compiled into it survives the next warm run...
        docker_client.containers.run("debian:bookworm-slim", ["touch", "/c/kernel.ukdb"],
                                     volumes={name: {"bind": "/c", "mode": "rw"}},
                                     remove=True, network_mode="none")

        def listing() -> str:
            return docker_client.containers.run(
                "debian:bookworm-slim", ["ls", "/c"], remove=True, network_mode="none",
                volumes={name: {"bind": "/c", "mode": "ro"}}).decode()

        assert warm.miopen_cache(variant, built) == name
        assert listing().split() == ["kernel.ukdb"]
        # ...and --cold starts from nothing
        assert cold.miopen_cache(variant, built) == name
        assert listing().split() == []
        assert said == [f"  miopen cache: {name} emptied (--cold)"]
        # emptied means made again: still this session's (and still found at its end)
        assert name in engine.list_volumes(label=f"{SESSION_LABEL}={SESSION}")
    finally:
        engine.remove_volume(name)
    assert name not in engine.list_volumes(label=MIOPEN_CACHE_LABEL)


def test_miopen_cache_volume_carries_the_test_session_label_only_in_a_session(
        monkeypatch: pytest.MonkeyPatch, project) -> None:
    """Outside a test suite the cache volume has only its own label; under one it also has
    the session's (engine/containers.py session_labels), on any engine."""
    from fake_engine import FakeEngine

    from imagefactory.engine.containers import SESSION_ENV, SESSION_LABEL
    from imagefactory.engine.images import BuiltImage
    from imagefactory.host.devices import GpuAccess
    from imagefactory.verify.tester import MIOPEN_CACHE_LABEL, Tester, TestOptions

    variant = next(v for v in project.matrix.variants if v.rocm)
    engine = FakeEngine()
    tester = Tester(engine, project.matrix, GpuAccess((), ()), TestOptions(),
                    emit=discard)
    monkeypatch.delenv(SESSION_ENV, raising=False)
    plain = tester.miopen_cache(variant, BuiltImage(variant, "sha256:" + "a" * 64, "x:y", None))
    monkeypatch.setenv(SESSION_ENV, "s1")
    ours = tester.miopen_cache(variant, BuiltImage(variant, "sha256:" + "b" * 64, "x:y", None))
    assert plain is not None and ours is not None
    assert engine.volumes[plain] == {MIOPEN_CACHE_LABEL: variant.name}
    assert engine.volumes[ours] == {MIOPEN_CACHE_LABEL: variant.name, SESSION_LABEL: "s1"}
    assert engine.list_volumes(label=f"{SESSION_LABEL}=s1") == [ours]
