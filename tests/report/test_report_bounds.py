"""Report crashes and bombs of issue #25: a newline in a case or GPU name, a non-list
`gpu_code.check.summary`, and a heatmap whose size grew with the text inside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fuzzing import examples
from hypothesis import given
from hypothesis import strategies as st

from imagefactory.cli import main
from imagefactory.report import writer as report
from imagefactory.report.heatmap import MAX_HEIGHT, MAX_WIDTH
from imagefactory.verify.results import ConvCase, TestResult

REPO = Path(__file__).resolve().parents[2]
IMAGE = "sha256:" + "a" * 64


def _report(d: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main(["--config", str(REPO / "variants.yaml"), "report", "--results", str(d)])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("where", ["case", "gpu"])
def test_newline_in_a_case_or_gpu_name_is_drawn_not_a_crash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str) -> None:
    name = "line one\nline two\r\u2028three"
    case = name if where == "case" else "conv2d"
    gpu = name if where == "gpu" else "AMD Radeon RX 5600 XT"
    r = TestResult("rocm62-native", IMAGE, True, (), (ConvCase(case, "ok", 0.1),), "gfx1010",
                   None, gpu=gpu)
    (tmp_path / "rocm62-native.json").write_text(r.to_json())
    code, err = _report(tmp_path, capsys)
    assert code == 0, err
    assert (tmp_path / report.PNG).stat().st_size > 0


@pytest.mark.parametrize("summary", [5, "text", {"a": 1}, True, None, [1, None, "x"]])
def test_gpu_code_summary_of_any_json_type(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           summary: object) -> None:
    doc = json.loads(TestResult("cpu", IMAGE, True, (), (ConvCase("c", "ok"),), None,
                                None).to_json())
    doc["gpu_code"] = {"check": {"summary": summary, "failures": 7, "notes": ["n"]}}
    (tmp_path / "cpu.json").write_text(json.dumps(doc))
    code, err = _report(tmp_path, capsys)
    assert code == 0, err
    lines = json.loads((tmp_path / report.JSON).read_text())["rows"][0]["gpu_code"]
    expected = [str(x) for x in summary] if isinstance(summary, list) else []
    assert lines == [*expected, "n"]


@pytest.mark.parametrize("isa", [5, "x", [1, {"summary": 3}, {"summary": "s", "status": 7}]])
def test_instruction_check_line_from_any_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              isa: object) -> None:
    doc = json.loads(TestResult("cpu", IMAGE, True, (), (ConvCase("c", "ok"),), None,
                                None).to_json())
    real = {"status": "fail", "summary": "override 10.3.0 on gfx1010: rocblas 167 of 167 "
            "kernels use instructions gfx1010 lacks"}
    doc["gpu_code"] = {"check": {"summary": ["rocblas yes"]},
                       "isa": [real, *isa] if isinstance(isa, list) else isa}
    (tmp_path / "cpu.json").write_text(json.dumps(doc))
    code, err = _report(tmp_path, capsys)
    assert code == 0, err
    lines = json.loads((tmp_path / report.JSON).read_text())["rows"][0]["gpu_code"]
    want = ["rocblas yes"] + ([f"instructions (fail): {real['summary']}", "instructions (?): s"]
                              if isinstance(isa, list) else [])
    assert lines == want
    md = (tmp_path / report.MARKDOWN).read_text()
    if isinstance(isa, list):
        assert "instructions (fail): override 10.3.0 on gfx1010: rocblas 167 of 167" in md


def test_heatmap_size_is_bounded_whatever_the_input() -> None:
    from imagefactory.report.heatmap import render

    # Long names (a 13 MB result is mostly such text) and many rows and cases.
    conv = tuple(ConvCase(f"case-{i}-" + "x" * 5000, "ok", 0.5) for i in range(3000))
    rows = tuple(report.Row(TestResult(f"v{i}", IMAGE, True, (), conv, "gfx1010", None,
                                       gpu="G" * 20000), f"v{i}" + "y" * 20000)
                 for i in range(200))
    compat = report.Compatibility(rows, tuple(c.case for c in conv), ())
    image, _ = render(compat)
    assert image.width <= MAX_WIDTH and image.height <= MAX_HEIGHT, image.size


def test_report_files_are_0644_and_a_symlink_is_replaced_not_followed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import stat

    r = TestResult("cpu", IMAGE, True, (), (ConvCase("c", "ok"),), None, None)
    (tmp_path / "cpu.json").write_text(r.to_json())
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / report.MARKDOWN).symlink_to(victim)
    old = os.umask(0)
    try:
        code, err = _report(tmp_path, capsys)
    finally:
        os.umask(old)
    assert code == 0, err
    assert victim.read_text() == "precious\n"
    for name in (report.MARKDOWN, report.JSON, report.PNG):
        path = tmp_path / name
        assert not path.is_symlink()
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, name  # shareable, not writable


@examples(15)
@given(cases=st.integers(0, 400), name_len=st.integers(0, 3000), gpu_len=st.integers(0, 3000),
       variants=st.integers(1, 6))
def test_report_output_is_bounded_by_its_input(cases: int, name_len: int, gpu_len: int,
                                               variants: int) -> None:
    # Huge or many cases: the Markdown and JSON grow at most linearly with the text they
    # carry and the number of cells, the heatmap stays within its pixel bounds.
    import tempfile

    from imagefactory.report.heatmap import render

    conv = tuple(ConvCase(f"c{i}-" + "x" * name_len, "ok", 0.5) for i in range(cases))
    rows = tuple(report.Row(TestResult(f"v{i}", IMAGE, True, (), conv, "gfx1010", None,
                                       gpu="G" * gpu_len), f"v{i}") for i in range(variants))
    compat = report.Compatibility(rows, tuple(c.case for c in conv), ())
    carried = sum(len(c.case) for c in conv) * variants + gpu_len * variants + 1
    with tempfile.TemporaryDirectory() as out:
        written = report.write(compat, Path(out), png=False)
        size = sum(p.stat().st_size for p in written)
    # Each cell (a case of a variant) also carries a constant amount of its own: its status,
    # times and errors in the JSON, its row in the merged groups, its Markdown cell.
    assert size <= 20 * carried + 1_000 * cases * variants + 200_000, (size, carried)
    image, _ = render(compat)
    assert image.width <= MAX_WIDTH and image.height <= MAX_HEIGHT
