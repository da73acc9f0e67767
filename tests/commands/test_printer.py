"""commands/_render.py, the one renderer of the runs' events: plain lines (no control code
at all) where stdout is no terminal, rich (colour, the live build table) where it is one;
the words are the same either way. And the test run's events on the in-memory FakeEngine
(tests/fake_engine.py)."""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console

from imagefactory.build.builder import BUILT, FAILED, BuildResult, Step
from imagefactory.build.events import (
    BuildFinished,
    BuildLine,
    BuildPlanned,
    BuildStarted,
    BuildStep,
)
from imagefactory.commands._render import Printer, collect, lines
from imagefactory.events import Event
from imagefactory.publish.events import (
    Pushing,
    PushNote,
    Recorded,
    Refused,
    TagPublished,
    TestsSkipped,
)
from imagefactory.verify.events import (
    BundleWritten,
    CheckDone,
    TestFinished,
    TestLine,
    TestNote,
    Verdict,
)
from imagefactory.verify.results import Check, ConvCase

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

TEST_EVENTS: list[Event] = [
    TestLine("cpu: testing imagefactory:cpu (0123456789ab), profile default, devices none"),
    TestNote("declared torch 2.5.1, the image reports 2.6.0"),
    CheckDone(Check("container starts", True, "abc")),
    CheckDone(Check("torch \x1b[2J imports", False, "https://bob:secret@ghcr.io/x")),
    Verdict(ConvCase("conv2d-k3", "fail", verdict="known", known_reason="MIOpen bug",
                     known_source="variants.yaml:12")),
    Verdict(ConvCase("conv2d-k5", "ok", verdict="fixed")),
    Verdict(ConvCase("conv2d-k7", "hang", verdict="regression")),
    TestFinished("cpu", False, 12.345, Path("results/cpu.json")),
    BundleWritten("cpu", Path("results/cpu.bundle.json")),
]
TEST_PLAIN = [
    "cpu: testing imagefactory:cpu (0123456789ab), profile default, devices none",
    "  note: declared torch 2.5.1, the image reports 2.6.0",
    "  ok    container starts",
    "  FAIL  torch \\x1b[2J imports: https://***@ghcr.io/x",
    "  known  conv2d-k3: fail (MIOpen bug; variants.yaml:12)",
    "  FIXED  conv2d-k5: ok",
    "  REGR   conv2d-k7: hang",
    "cpu: FAILED in 12.3 s -> results/cpu.json",
    "cpu: result bundle -> results/cpu.bundle.json",
]
PUSH_EVENTS: list[Event] = [
    Refused("cpu: no passing test result"),
    TestsSkipped("cpu", "0123456789ab", "cpu-untested"),
    Pushing("cpu", "0123456789ab", "reg:5000/team/imagefactory", ("cpu", "cpu-abc")),
    PushNote("pushed reg:5000/team/imagefactory:cpu (3 layer(s) uploaded, 0 reused)"),
    TagPublished("reg:5000/team/imagefactory", "cpu", "reg:5000/team/imagefactory@sha256:d"),
    Recorded("cpu", Path("results/cpu.publish.json")),
]


def consoles(terminal: bool) -> tuple[Printer, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    printer = Printer(console=Console(file=out, force_terminal=terminal, width=100),
                      err_console=Console(file=err, force_terminal=terminal, width=100))
    return printer, out, err


def test_plain_test_lines_have_no_control_code_and_read_as_before() -> None:
    printer, out, err = consoles(terminal=False)
    for event in TEST_EVENTS:
        printer(event)
    assert out.getvalue() == "".join(line + "\n" for line in TEST_PLAIN)
    assert err.getvalue() == ""


def test_on_a_terminal_the_same_words_in_colour() -> None:
    printer, out, _ = consoles(terminal=True)
    for event in TEST_EVENTS:
        printer(event)
    text = out.getvalue()
    assert ANSI.search(text), "no colour on a terminal"
    assert ANSI.sub("", text).splitlines() == TEST_PLAIN
    # The image's own escape stays escaped: only the renderer's codes are real.
    assert "\x1b[2J" not in text and "secret" not in text


def test_a_long_line_is_never_wrapped() -> None:
    long = TestLine("  | " + "x" * 300)
    for terminal in (False, True):
        printer, out, _ = consoles(terminal)
        printer(long)
        assert ANSI.sub("", out.getvalue()) == long.text + "\n"


def test_push_progress_goes_to_stderr_and_the_tags_to_stdout() -> None:
    printer, out, err = consoles(terminal=False)
    for event in PUSH_EVENTS:
        printer(event)
    assert out.getvalue() == ("reg:5000/team/imagefactory:cpu "
                              "reg:5000/team/imagefactory@sha256:d\n")
    assert err.getvalue().splitlines() == [
        "imagefactory: cpu: no passing test result",
        "imagefactory: warning: --skip-tests: publishing cpu (image 0123456789ab) without "
        "checking its test result; it gets the tag cpu-untested and its publish record "
        "says tests_skipped: true",
        "cpu: pushing image 0123456789ab to reg:5000/team/imagefactory as cpu, cpu-abc",
        "pushed reg:5000/team/imagefactory:cpu (3 layer(s) uploaded, 0 reused)",
        "cpu: verified in the registry; record results/cpu.publish.json"]
    collected_out: list[str] = []
    collected_err: list[str] = []
    emit = collect(collected_out.append, collected_err.append)
    for event in PUSH_EVENTS:
        emit(event)
    assert collected_out == out.getvalue().splitlines()
    assert collected_err == err.getvalue().splitlines()


def test_every_event_but_a_build_s_has_its_lines() -> None:
    for event in [*TEST_EVENTS, *PUSH_EVENTS]:
        assert lines(event)
    try:
        lines(BuildLine("cpu", "x"))
    except TypeError:
        pass
    else:
        raise AssertionError("a build's events are the Printer's: they need its mode")


def build_events(tmp_path: Path) -> tuple[list[Event], BuildResult]:
    failed = BuildResult("b", "e", FAILED, tag="if:b", duration=2.0, log_path=tmp_path / "b.log",
                         step=Step(2, 3, "RUN exit 3"), error="exit code 3",
                         log_tail=("making", "exit code 3"))
    return [
        BuildPlanned(("a", "b"), ("a",), ("e",), 1),
        BuildStarted("a", "e", 2048, 3, tmp_path / "a.log"),
        BuildStep("a", Step(1, 2, "FROM debian")),
        BuildLine("a", "Step 1/2 : FROM debian"),
        BuildLine("a", "hello from the build"),
        BuildFinished(BuildResult("a", "e", BUILT, "sha256:" + "1" * 64, "if:a", 1.5,
                                  tmp_path / "a.log")),
        BuildStarted("b", "e", 100, 1, tmp_path / "b.log"),
        BuildFinished(failed),
    ], failed


def printed(mode: str, tmp_path: Path, *, terminal: bool) -> tuple[str, str]:
    """What the printer in `mode` shows of build_events: (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    printer = Printer(mode, console=Console(file=out, force_terminal=terminal),
                      err_console=Console(file=err, force_terminal=terminal))
    events, _ = build_events(tmp_path)
    for event in events:
        printer(event)
    printer.close()
    return out.getvalue(), err.getvalue()


def test_build_plain_lines_are_timestamped_and_the_failure_goes_to_stderr(tmp_path) -> None:
    out, err = printed("plain", tmp_path, terminal=True)
    got = [re.sub(r"^\d\d:\d\d:\d\d ", "T ", line) for line in out.splitlines()]
    assert got == [
        "building 2 variant(s) on 1 engine(s), 1 at a time: a, b (bases: a)",
        f"T a | building on e, context 2.0 KiB (3 files); log {tmp_path / 'a.log'}",
        "T a | Step 1/2 : FROM debian",
        "T a | hello from the build",
        "T a | built 111111111111 in 1.5s, tagged if:a",
        f"T b | building on e, context 100 B (1 files); log {tmp_path / 'b.log'}",
        "T b | FAILED at step 2/3 (RUN exit 3)"]
    # Shown as they came, the lines are not repeated; the one that is the error never.
    assert err.splitlines() == [
        "imagefactory: build of 'b' failed at step 2/3 (RUN exit 3): exit code 3",
        f"  full log: {tmp_path / 'b.log'}"]


def test_build_quiet_is_each_outcome(tmp_path) -> None:
    out, err = printed("quiet", tmp_path, terminal=False)
    assert out.splitlines() == [
        "building 2 variant(s) on 1 engine(s), 1 at a time: a, b (bases: a)",
        "a: built 111111111111 in 1.5s, tagged if:a",
        "b: FAILED at step 2/3 (RUN exit 3)"]
    assert err.splitlines()[1:] == ["  | making", f"  full log: {tmp_path / 'b.log'}"]


def test_build_on_a_terminal_is_the_live_table(tmp_path) -> None:
    out, err = io.StringIO(), io.StringIO()
    printer = Printer(console=Console(file=out, force_terminal=True, width=120),
                      err_console=Console(file=err, force_terminal=True, width=120))
    events, failed = build_events(tmp_path)
    for event in events[:5]:
        printer(event)
    assert printer.live is not None
    row = printer.rows["a"]
    assert (row.state, row.last) == ("building", "hello from the build")  # "Step" is noise
    assert row.step == Step(1, 2, "FROM debian")
    table = Console(file=io.StringIO(), width=120, force_terminal=False)
    table.print(printer)
    assert "1/2" in table.file.getvalue() and "FROM debian" in table.file.getvalue()
    for event in events[5:]:
        printer(event)
    printer.close()
    assert printer.live is None
    text = ANSI.sub("", out.getvalue())
    assert "a: built 111111111111 in 1.5s, tagged if:a" in text
    assert "b: FAILED at step 2/3 (RUN exit 3)" in text
    assert ANSI.search(out.getvalue())
    # Once the table is gone, the failure block whole, with the log's last lines.
    assert ANSI.sub("", err.getvalue()).splitlines() == [
        "imagefactory: build of 'b' failed at step 2/3 (RUN exit 3): exit code 3",
        "  | making", f"  full log: {failed.log_path}"]
