"""Hostile result files against `imagefactory report` (issue 12): whatever a result file
holds, the report is inert Markdown (no HTML, no markup, no broken table), strict JSON, and
built in time linear in the number of cases; a file that is not a result is one line, exit 1.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from fuzzing import NASTY
from hypothesis import given
from hypothesis import strategies as st

from imagefactory.cli import main
from imagefactory.report import writer as report
from imagefactory.verify.results import Check, ConvCase, TestResult

REPO = Path(__file__).resolve().parents[2]
IMAGE = "sha256:" + "a" * 64
HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "| a | b |", "`",
           "``", "**bold**", "[link](javascript:alert(1))", "![i](http://x/y.png)", "\\|",
           "&lt;", "<!--", "\x1b]0;title\x07", "\x1b[2J", "_x_", "~~s~~"]

text = st.lists(st.one_of(st.sampled_from(HOSTILE + NASTY), st.text(max_size=6)),
                max_size=5).map("".join)


def run(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(["--config", str(REPO / "variants.yaml"), "report", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _strict(text_: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in JSON")
    return json.loads(text_, parse_constant=refuse)


def _check_markdown(md: str, ncols: tuple[int, ...]) -> None:
    """Render as GitHub would (CommonMark + tables, raw HTML allowed) and check the HTML:
    the only tags are the ones the report itself makes, and every table row has its
    columns."""
    from markdown_it import MarkdownIt

    assert "\x1b" not in md and "\x07" not in md
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    tags = set(re.findall(r"</?([A-Za-z][A-Za-z0-9]*)", html))
    assert tags <= {"h1", "h2", "h3", "p", "ul", "li", "strong", "code", "table", "thead", "tbody",
                    "tr", "th", "td", "img"}, tags
    assert html.count("<img") <= 1  # the heatmap, when asked for
    assert "<a " not in html and "<em>" not in html and "<s>" not in html
    for row in re.findall(r"<tr>(.*?)</tr>", html, re.S):
        assert len(re.findall(r"<t[dh][ >]", row)) in ncols, row


@given(variant=st.sampled_from(["cpu", "rocm62-native", "x"]), host=st.none() | text,
       gpu=st.none() | text, profile=st.none() | text, torch=st.none() | text,
       cases=st.lists(st.tuples(text, text, text), min_size=1, max_size=5),
       checks=st.lists(st.tuples(text, st.booleans(), text), max_size=3))
def test_fuzz_results_make_an_inert_report(tmp_path_factory: pytest.TempPathFactory,
                                           capsys: pytest.CaptureFixture[str], variant: str,
                                           host: str | None, gpu: str | None,
                                           profile: str | None, torch: str | None,
                                           cases: list[tuple[str, str, str]],
                                           checks: list[tuple[str, bool, str]]) -> None:
    d = tmp_path_factory.mktemp("r")
    conv = tuple(ConvCase(c, s, 1.0, detail=x) for c, s, x in cases)
    result = TestResult(variant, IMAGE, False, tuple(Check(*c) for c in checks), conv, host,
                        profile, torch=torch, gpu=gpu)
    (d / f"{variant}.json").write_text(result.to_json())
    code, _, err = run("--results", str(d), "--out", str(d), "--no-png", capsys=capsys)
    if code != 0:
        assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
        assert "\x1b" not in err
        return
    md = (d / report.MARKDOWN).read_text()
    _check_markdown(md, (2, 7))  # the matrix (case + one row) and the summary table
    data = _strict((d / report.JSON).read_text())
    assert data["rows"][0]["variant"] == variant


@given(data=st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | text,
                         lambda kids: st.lists(kids, max_size=3)
                         | st.dictionaries(text, kids, max_size=3), max_leaves=12),
       mutate=st.sampled_from(["whole", "passed", "conv", "checks", "schema", "host",
                               "conv_works", "gpu_code", "gpu_reset"]))
def test_fuzz_malformed_result_is_one_line(tmp_path_factory: pytest.TempPathFactory,
                                           capsys: pytest.CaptureFixture[str], data: Any,
                                           mutate: str) -> None:
    d = tmp_path_factory.mktemp("m")
    doc: Any = json.loads(TestResult("cpu", IMAGE, True, (), (ConvCase("c", "ok"),), None,
                                     None).to_json())
    if mutate == "whole":
        doc = data
    else:
        doc[mutate] = data
    (d / "cpu.json").write_text(json.dumps(doc))
    code, _, err = run("--results", str(d), "--out", str(d), "--no-png", capsys=capsys)
    assert code in (0, 1)
    if code == 1:
        assert err.count("\n") == 1 and "Traceback" not in err and "\x1b" not in err
    else:
        _strict((d / report.JSON).read_text())


def _compat(n: int) -> report.Compatibility:
    conv = tuple(ConvCase(f"case-{i}", "ok" if i % 3 else "hang", 0.5) for i in range(n))
    rows = [report.Row(TestResult(v, IMAGE, False, (), conv, None, None), v)
            for v in ("a", "b")]
    return report.Compatibility(tuple(rows), tuple(c.case for c in conv), ())


def _seconds(n: int) -> float:
    compat = _compat(n)
    start = time.perf_counter()
    report.markdown(compat, None, "now")
    report.to_json(compat, "now")
    return time.perf_counter() - start


def test_report_time_is_linear_in_cases() -> None:
    # 8x the cases: linear code takes about 8x, quadratic 64x. The bound sits between with
    # room for a loaded CI machine; best of 3 against noise.
    small = min(_seconds(2_000) for _ in range(3))
    large = min(_seconds(16_000) for _ in range(3))
    assert large < 24 * small, (small, large)


def test_nan_never_reaches_compatibility_json(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        TestResult("cpu", IMAGE, True, (), (ConvCase("c", "ok", float("nan")),), None,
                   None).to_json()


def test_what_works_section_is_escaped_and_tolerates_odd_values(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(TestResult("cpu", IMAGE, True, (), (ConvCase("c", "ok"),), None,
                                None).to_json())
    doc["conv_works"] = {"conv": {"verdict": "<b>yes</b>", "classes": [1, "<i>x</i>"]},
                         "fp16": {"classes": "not-a-list"}}
    (tmp_path / "cpu.json").write_text(json.dumps(doc))
    code, _, err = run("--results", str(tmp_path), "--out", str(tmp_path), "--no-png",
                       capsys=capsys)
    assert code == 0, err
    _check_markdown((tmp_path / report.MARKDOWN).read_text(), (2, 7))
    doc["conv_works"] = {"conv": "yes"}
    (tmp_path / "cpu.json").write_text(json.dumps(doc))
    code, _, err = run("--results", str(tmp_path), "--out", str(tmp_path), "--no-png",
                       capsys=capsys)
    assert code == 1 and "conv_works.conv: expected an object" in err
