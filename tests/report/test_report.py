"""imagefactory report: on a real `imagefactory test cpu` result plus the hand-written GPU
results in tests/fixtures/results (classes a CPU cannot produce: hangs, aperture violations,
memory faults, missing kernels...)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from suite_session import CPU_CONFIG

from imagefactory.cli import main
from imagefactory.report import heatmap
from imagefactory.report import writer as report
from imagefactory.verify.results import ConvCase, TestResult

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent.parent / "fixtures" / "results"


@pytest.fixture(scope="module")
def cpu_results(cpu_image: str, tmp_path_factory) -> Path:
    """A real result: the quick conv check set in the real cpu image."""
    out = tmp_path_factory.mktemp("cpu-results")
    r = subprocess.run([sys.executable, "-m", "imagefactory", "--config",
                        str(CPU_CONFIG), "test", "cpu", "--quick", "--results",
                        str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def write_report(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(["--config", str(REPO / "variants.yaml"), "report", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_fixture_results_load() -> None:
    compat = report.load([FIXTURES], ["rocm52-torch113", "rocm52-torch20", "rocm62-patched",
                                      "rocm62-native"])
    assert [r.label for r in compat.rows] == ["rocm52-torch113", "rocm52-torch20",
                                              "rocm62-patched", "rocm62-native"]
    assert compat.cases[0] == "conv2d-k3-c16to32-32x32-fwd" and len(compat.cases) == 6
    statuses = {c.status for r in compat.rows for c in r.result.conv}
    assert statuses == set(report.CLASSES)  # every class appears in the fixtures


@pytest.mark.docker
def test_report_from_real_cpu_run_and_fixtures(cpu_results: Path, tmp_path: Path,
                                               capsys) -> None:
    out = tmp_path / "out"
    code, stdout, err = write_report(capsys, "--results", str(cpu_results), "--results",
                                     str(FIXTURES), "--out", str(out))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["COMPATIBILITY.md", "compatibility.json",
                                                     "compatibility.png", "site"]
    real = TestResult.load(cpu_results, "cpu", "quick")
    assert real is not None and real.host is None and len(real.conv) == 14

    md = (out / "COMPATIBILITY.md").read_text()
    # Summary line per variant, with the GPU and profile it came from.
    assert ("- **cpu** on CPU (no AMD GPU), profile `none`: PASSED (quick run): "
            "14/14 conv cases ok") in md  # trixie's torch 2.6: fp16, SDPA, compile, int8
    # The fixture predates `scope` and says quick: true: a quick run, and said so.
    assert ("- **rocm62-patched** on gfx1010 (AMD Radeon RX 5700 XT), profile `override`: "
            "FAILED (quick run): 3/6 conv cases ok (hang 1, aperture-violation 1, "
            "memory-fault 1)") in md
    # The matrix: a column per result in matrix order, a row per case, class and time.
    header = next(line for line in md.splitlines() if line.startswith("| case |"))
    assert header == ("| case | rocm52-torch113 | rocm52-torch20 | rocm62-patched | "
                      "rocm62-native | cpu |")
    row = next(line for line in md.splitlines()
               if line.startswith("| `conv2d-k3-c64-64x64-bwd` |"))
    cells = [c.strip() for c in row.split("|")[2:-1]]
    assert cells[:4] == ["**invalid-isa**", "**no-kernel**", "**memory-fault**", "ok 0.04 s"]
    cpu_case = next(c for c in real.conv if c.case == "conv2d-k3-c64-64x64-bwd")
    assert cells[4] == f"ok {cpu_case.seconds:.2f} s"
    assert "![variant x case heatmap](compatibility.png)" in md
    assert "**hang** (> 120 s)" in md and "**wrong-result** (err 3.7e-01)" in md

    data = json.loads((out / "compatibility.json").read_text())
    assert [r["variant"] for r in data["rows"]] == ["rocm52-torch113", "rocm52-torch20",
                                                    "rocm62-patched", "rocm62-native", "cpu"]
    cpu = data["rows"][-1]
    assert (cpu["host"], cpu["device"], cpu["passed"], cpu["summary"]) == (
        None, "cpu", True, {"ok": 14})
    assert cpu["image_id"] == real.image_id
    assert data["rows"][2]["cells"]["conv2d-k3-c64-64x64-fwd"]["status"] == "aperture-violation"
    assert "written: " in stdout and \
        "cpu: PASSED (quick run): 14/14 conv cases ok" in stdout


def test_heatmap_png_has_the_class_colours(tmp_path: Path) -> None:
    compat = report.load([FIXTURES], ["rocm52-torch113", "rocm52-torch20", "rocm62-patched",
                                      "rocm62-native"])
    report.write(compat, tmp_path)
    _, boxes = heatmap.render(compat)
    with Image.open(tmp_path / "compatibility.png") as png:
        png.load()
        assert png.format == "PNG"
        assert png.size[0] > 500 and 300 < png.size[1] < 1000  # 6 cases x 4 results
        rgb = png.convert("RGB")
    assert (tmp_path / "compatibility.png").stat().st_size < 60_000
    seen = set()
    for i, row in enumerate(compat.rows):
        for case in compat.cases:
            status = row.cells[case].status
            x0, y0, x1, y1 = boxes[(i, case)]
            # Corners of the cell (away from its text) are the class colour exactly.
            for x, y in ((x0 + 1, y0 + 1), (x1 - 2, y1 - 1), (x1 - 2, y0 + 1)):
                assert rgb.getpixel((x, y)) == heatmap.COLOURS[status], (row.label, case)
            seen.add(status)
    assert seen == set(report.CLASSES)
    # The class colours are all different, so the picture alone tells them apart.
    assert len(set(heatmap.COLOURS.values())) == len(heatmap.COLOURS)


def test_missing_cases_and_unknown_classes(tmp_path: Path) -> None:
    TestResult("a", "sha256:" + "1" * 64, True, (), (ConvCase("x", "ok", 0.5),), None,
               None).save(tmp_path)
    TestResult("b", "sha256:" + "2" * 64, False, (), (ConvCase("y", "from-the-future"),),
               "gfx1010", None).save(tmp_path)
    compat = report.load([tmp_path])
    assert [r.label for r in compat.rows] == ["b", "a"]  # grouped by ISA, no AMD GPU last
    img, boxes = heatmap.render(compat)
    rgb = img.convert("RGB")
    x0, y0, _, _ = boxes[(1, "y")]
    assert rgb.getpixel((x0 + 1, y0 + 1)) == heatmap.COLOURS[report.NOT_RUN]
    x0, y0, _, _ = boxes[(0, "y")]
    assert rgb.getpixel((x0 + 1, y0 + 1)) == heatmap.UNKNOWN
    md = report.markdown(compat)
    assert "| `x` | · | ok 0.50 s |" in md and "| `y` | **from-the-future** | · |" in md


def test_same_variant_from_two_hosts(tmp_path: Path) -> None:
    for host, d in (("gfx1010", "h1"), ("gfx1012", "h2")):
        TestResult("rocm62-patched", "sha256:" + "3" * 64, True, (), (ConvCase("x", "ok"),),
                   host, "override").save(tmp_path / d)
    (tmp_path / "h1" / "rocm62-patched.publish.json").write_text("{}")  # push's record
    compat = report.load([tmp_path / "h1", tmp_path / "h2"])
    assert [r.label for r in compat.rows] == ["rocm62-patched (gfx1010)",
                                              "rocm62-patched (gfx1012)"]
    TestResult("rocm62-patched", "sha256:" + "3" * 64, True, (), (ConvCase("x", "ok"),),
               None, None).save(tmp_path / "h3")
    compat = report.load([tmp_path / "h1", tmp_path / "h2", tmp_path / "h3"])
    assert [r.label for r in compat.rows] == ["rocm62-patched (gfx1010, override)",
                                              "rocm62-patched (gfx1012, override)",
                                              "rocm62-patched (no GPU, none)"]


def test_no_results(tmp_path: Path, capsys) -> None:
    code, _, err = write_report(capsys, "--results", str(tmp_path), "--out", str(tmp_path))
    assert code == 1
    assert err == (f"imagefactory: error: no test results in {tmp_path}: run "
                   "`imagefactory test VARIANT` first\n")


def test_broken_result_file(tmp_path: Path, capsys) -> None:
    shutil.copy(FIXTURES / "rocm62-native.json", tmp_path)
    (tmp_path / "cpu.json").write_text('{"variant": "cpu", "conv": [')
    code, _, err = write_report(capsys, "--results", str(tmp_path), "--out", str(tmp_path))
    assert code == 1
    assert err.startswith(f"imagefactory: error: {tmp_path}/cpu.json:1: not JSON (")
    assert err.count("\n") == 1


def test_no_png(tmp_path: Path, capsys) -> None:
    code, _, _ = write_report(capsys, "--results", str(FIXTURES), "--out", str(tmp_path),
                              "--no-png")
    assert code == 0
    assert not (tmp_path / "compatibility.png").exists()
    assert "compatibility.png" not in (tmp_path / "COMPATIBILITY.md").read_text()


def test_report_goes_beside_the_results_by_default(tmp_path: Path, capsys,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    TestResult("cpu", "sha256:" + "3" * 64, True, (), (ConvCase("x", "ok"),), None,
               None).save(results)
    monkeypatch.chdir(tmp_path)
    code, _, err = write_report(capsys, "--results", str(results), "--no-png")
    assert code == 0, err
    assert sorted(p.name for p in results.iterdir()) == ["COMPATIBILITY.md", "compatibility.json",
                                                         "cpu.json", "site"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # nothing in the cwd
