"""The one renderer: what the runs emit (build/, verify/ and publish/ `events.py`) as output.

`Printer` is the `emit` the build, test and push commands hand their run. Where stdout is a
terminal it prints through rich: colour, and for a build a live table (one row per
variant: step N/M, the current instruction, elapsed time, the last log line) under a
permanent line as each variant starts and ends. Otherwise it writes plain lines, no
control code at all (CI logs, captured output):

- a build (`--progress plain`, or no terminal): every log line, timestamped and prefixed
  with the variant name, so interleaved parallel builds stay readable; `--progress quiet`:
  only each variant's outcome;
- a test: the tester's lines, `ok`/`FAIL` per check, `known`/`FIXED`/`REGR` per conv case
  that has a verdict, then `PASSED`/`FAILED` and where the result went;
- a push: progress on stderr, `repo:tag repo@digest` per published tag on stdout.

A build's failures go to stderr in every mode: one line naming the variant, the failing
instruction and the error, then (unless the lines were already shown) the last lines of
its log, then the path of the full log. The error is said once there, not again in the
outcome line. Build events come from worker threads: the printer locks.

Text from images and engines arrives redacted where the run redacts it (build lines, the
tester's lines); check names and details and conv cases are cleaned here.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

from convcheck.vocabulary import FIXED, KNOWN, REGRESSION
from rich.console import Console
from rich.text import Text

from ..build.builder import BLOCKED, BUILT, CANCELLED, FAILED, SKIPPED, BuildResult, Step
from ..build.events import BuildFinished, BuildLine, BuildPlanned, BuildStarted, BuildStep
from ..events import Emit, Event
from ..publish.events import Pushing, PushNote, Recorded, Refused, TagPublished, TestsSkipped
from ..safety import clean
from ..verify.events import BundleWritten, CheckDone, TestFinished, TestLine, TestNote, Verdict

Stream = Literal["out", "err"]

# Styles on a terminal; plain output has none of them.
_STATUS_STYLE = {
    "waiting": "dim", "building": "yellow", BUILT: "green", SKIPPED: "green",
    FAILED: "bold red", BLOCKED: "red", CANCELLED: "red"}
_MARKS = {KNOWN: ("known", "yellow"), FIXED: ("FIXED", "cyan"),
          REGRESSION: ("REGR ", "red")}


# -- the words ---------------------------------------------------------------------------

def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_time(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s"
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


def started_text(engine: str, context_bytes: int, files: int, log_path: Path) -> str:
    return (f"building on {engine}, context {human_size(context_bytes)} ({files} files); "
            f"log {log_path}")


def outcome_text(result: BuildResult) -> str:
    if result.status == BUILT:
        return f"built {result.short_id} in {human_time(result.duration)}, tagged {result.tag}"
    if result.status == SKIPPED:
        return f"skipped (up to date) {result.tag} {result.short_id}"
    if result.status == CANCELLED:
        return "interrupted; no tag was moved"
    if result.status == BLOCKED:
        return result.error or "not built"
    where = f" at {result.step}" if result.step else ""
    return f"FAILED{where}"  # the error itself: once, in the failure block on stderr


def failure_lines(result: BuildResult, *, shown: bool = False) -> list[str]:
    """The failure block: one line naming variant, instruction and error; the log's last
    lines unless they were `shown` as they came (plain progress), and never the lines that
    only repeat the error; then where the full log is."""
    where = f" at {result.step}" if result.step else ""
    error = result.error or "unknown error"
    lines = [f"imagefactory: build of '{result.variant}' failed{where}: {error}"]
    if not shown:
        lines += [f"  | {line}" for line in result.log_tail if error not in line]
    if result.log_path:
        lines.append(f"  full log: {result.log_path}")
    return lines


def planned_text(event: BuildPlanned) -> str:
    return (f"building {len(event.names)} variant(s) on {len(event.engines)} engine(s), "
            f"{event.jobs} at a time: {', '.join(event.names)}"
            + (f" (bases: {', '.join(event.bases)})" if event.bases else ""))


def lines(event: Event) -> list[tuple[Stream, Text]]:
    """A test's or a push's event as it reads in every mode: the stream and the text (with
    its styles; `.plain` is the plain line). A build's events are the Printer's own: how
    they show depends on the mode and on what came before."""
    if isinstance(event, TestLine):
        return [("out", Text(event.text))]
    if isinstance(event, TestNote):
        return [("out", Text(clean(f"{event.indent}note: {event.text}")))]
    if isinstance(event, CheckDone):
        c = event.check
        mark = Text("ok  ", "green") if c.passed else Text("FAIL", "bold red")
        rest = clean(c.name + ("" if c.passed or not c.detail else f": {c.detail}"))
        return [("out", Text.assemble("  ", mark, "  ", rest))]
    if isinstance(event, Verdict):
        case = event.case
        word, colour = _MARKS[case.verdict or ""]
        why = f" ({case.known_reason}; {case.known_source})" if case.known_reason else ""
        return [("out", Text.assemble("  ", (word, colour), "  ",
                                      clean(f"{case.case}: {case.status}{why}")))]
    if isinstance(event, TestFinished):
        verdict = (Text("PASSED", "bold green") if event.passed
                   else Text("FAILED", "bold red"))
        return [("out", Text.assemble(f"{event.variant}: ", verdict,
                                      f" in {event.seconds:.1f} s -> {event.path}"))]
    if isinstance(event, BundleWritten):
        return [("out", Text(f"{event.variant}: result bundle -> {event.path}"))]
    if isinstance(event, Refused):
        return [("err", Text(f"imagefactory: {event.reason}"))]
    if isinstance(event, TestsSkipped):
        return [("err", Text(
            f"imagefactory: warning: --skip-tests: publishing {event.variant} (image "
            f"{event.short_id}) without checking its test result; it gets the tag "
            f"{event.tag} and its publish record says tests_skipped: true", "bold yellow"))]
    if isinstance(event, Pushing):
        return [("err", Text(f"{event.variant}: pushing image {event.short_id} to "
                             f"{event.repository} as {', '.join(event.tags)}"))]
    if isinstance(event, PushNote):
        return [("err", Text(event.text))]
    if isinstance(event, TagPublished):
        return [("out", Text(f"{event.repository}:{event.tag} {event.reference}"))]
    if isinstance(event, Recorded):
        return [("err", Text(f"{event.variant}: verified in the registry; record "
                             f"{event.record_path}", "green"))]
    raise TypeError(f"no rendering for {type(event).__name__}")


def collect(out: Callable[[str], None], err: Callable[[str], None] | None = None) -> Emit:
    """An `emit` that hands each plain line of a test's or a push's events to `out` (or
    `err`, for those meant for stderr; default: `out` too)."""

    def emit(event: Event) -> None:
        for stream, text in lines(event):
            (err or out if stream == "err" else out)(text.plain)

    return emit


# -- the printer -------------------------------------------------------------------------

def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@dataclass
class _Row:
    name: str
    engine: str = ""
    state: str = "waiting"
    step: Step | None = None
    last: str = ""
    started: float | None = None
    ended: float | None = None

    def elapsed(self) -> str:
        if self.started is None:
            return ""
        return human_time((self.ended or time.monotonic()) - self.started)


# Engine bookkeeping lines, not what the build itself printed.
_NOISE = ("Step ", " ---> ", "Removing intermediate container ")


class Printer:
    """The runs' events as output (an `Emit`); `close()` once the run is over.

    `progress` is `build --progress`: auto (the live table on a terminal, plain lines
    otherwise), plain or quiet. `console`/`err_console`: where stdout/stderr go; by default
    consoles on sys.stdout/sys.stderr that are terminals only where those are TTYs."""

    def __init__(self, progress: str = "auto", *, console: Console | None = None,
                 err_console: Console | None = None) -> None:
        self.console = console or Console(highlight=False,
                                          force_terminal=_isatty(sys.stdout))
        self.err_console = err_console or Console(highlight=False, stderr=True,
                                                  force_terminal=_isatty(sys.stderr))
        self.terminal = self.console.is_terminal
        self.quiet = progress == "quiet"
        self.live_build = self.terminal and progress == "auto"
        self.lock = threading.Lock()  # plain writes; the live rows
        self.planned = False  # a BuildPlanned came: builds may have started
        self.width = 0
        self.rows: dict[str, _Row] = {}
        self.show_engine = False
        self.failures: list[BuildResult] = []
        self.live: Any = None

    # where text goes

    def _write(self, stream: Stream, text: Text) -> None:
        console = self.console if stream == "out" else self.err_console
        if console.is_terminal:
            # Never under self.lock: the live refresh takes the console's lock, then ours.
            console.print(text, soft_wrap=True)
        else:
            with self.lock:
                console.file.write(text.plain + "\n")
                console.file.flush()

    def _plain_block(self, block: list[str]) -> None:
        """Lines to stderr in one write (a failure block stays together)."""
        with self.lock:
            self.console.file.flush()
            self.err_console.file.write("\n".join(block) + "\n")
            self.err_console.file.flush()

    # the events

    def __call__(self, event: Event) -> None:
        if isinstance(event, BuildPlanned):
            self._planned(event)
        elif isinstance(event, BuildStarted):
            self._started(event)
        elif isinstance(event, BuildStep):
            self._step(event)
        elif isinstance(event, BuildLine):
            self._line(event)
        elif isinstance(event, BuildFinished):
            self._finished(event.result)
        else:
            for stream, text in lines(event):
                self._write(stream, text)

    def _planned(self, event: BuildPlanned) -> None:
        self.planned = True
        self.width = max((len(n) for n in event.names), default=0)
        self.show_engine = len(event.engines) > 1
        if self.live_build:
            from rich.live import Live

            self.rows = {n: _Row(n) for n in event.names}
            self.live = Live(self, console=self.console, refresh_per_second=4,
                             transient=True)
            self.live.start()
        self._write("out", Text(planned_text(event)))

    def _variant_line(self, name: str, text: str, style: str = "") -> None:
        """A permanent line about one variant."""
        if self.live_build:
            self._write("out", Text(f"{name}: {text}", style))
        elif self.quiet:
            self._write("out", Text(f"{name}: {text}"))
        else:
            self._write("out", Text(f"{datetime.now():%H:%M:%S} {name:<{self.width}} | "
                                    f"{text}"))

    def _started(self, event: BuildStarted) -> None:
        if self.live_build:
            with self.lock:
                row = self.rows.setdefault(event.variant, _Row(event.variant))
                row.engine, row.state, row.started = event.engine, "building", time.monotonic()
        if not self.quiet:
            self._variant_line(event.variant, started_text(
                event.engine, event.context_bytes, event.files, event.log_path))

    def _step(self, event: BuildStep) -> None:
        # Plain: the "Step N/M : ..." line itself comes as a BuildLine.
        if self.live_build:
            step = event.step
            shown = Step(step.number, step.total, " ".join(step.instruction.split()))
            with self.lock:
                self.rows.setdefault(event.variant, _Row(event.variant)).step = shown

    def _line(self, event: BuildLine) -> None:
        if self.live_build:
            if event.text.startswith(_NOISE):
                return  # the row shows the step already; keep the build's own last output
            with self.lock:
                self.rows.setdefault(event.variant, _Row(event.variant)).last = event.text
        elif not self.quiet:
            self._variant_line(event.variant, event.text)

    def _finished(self, result: BuildResult) -> None:
        if self.live_build:
            with self.lock:
                row = self.rows.setdefault(result.variant, _Row(result.variant))
                row.state, row.ended, row.engine = result.status, time.monotonic(), result.engine
                if result.status == FAILED:
                    self.failures.append(result)
        self._variant_line(result.variant, outcome_text(result),
                           _STATUS_STYLE.get(result.status, ""))
        if result.status == FAILED and not self.live_build:
            self._plain_block(failure_lines(result, shown=not self.quiet))

    def close(self) -> None:
        """Stop the live table; then the failure blocks, so they stay intact."""
        if self.live is not None:
            self.live.stop()
            self.live = None
        with self.lock:
            failures, self.failures = self.failures, []
        for result in failures:
            self._write("err", Text("\n".join(failure_lines(result))))

    def __rich__(self) -> Any:
        """The live table."""
        from rich.table import Table

        table = Table.grid(padding=(0, 1), expand=True)
        table.add_column(no_wrap=True)
        if self.show_engine:
            table.add_column(no_wrap=True, style="dim", max_width=28, overflow="ellipsis")
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True, justify="right")
        table.add_column(no_wrap=True, overflow="ellipsis", ratio=2)
        table.add_column(no_wrap=True, overflow="ellipsis", ratio=3, style="dim")
        with self.lock:
            for row in self.rows.values():
                state = (f"{row.step.number}/{row.step.total}"
                         if row.state == "building" and row.step else row.state)
                cells = [Text(row.name, style="bold")]
                if self.show_engine:
                    cells.append(Text(row.engine))
                cells += [Text(state, style=_STATUS_STYLE.get(row.state, "")),
                          Text(row.elapsed()),
                          Text(row.step.instruction if row.step and row.state == "building"
                               else ""),
                          Text(row.last if row.state == "building" else "")]
                table.add_row(*cells)
        return table
