"""What a person watching a (possibly multi-hour) build sees.

- LiveView (a TTY): one live row per variant: step N/M, the current instruction, elapsed
  time, the last log line; a permanent line when each variant starts and ends.
- PlainView (no TTY, `--progress plain`): every log line, timestamped and prefixed with the
  variant name, so interleaved parallel builds stay readable in CI logs.
- PlainView(quiet=True) (`--progress quiet`): only each variant's outcome.
Failures go to stderr in every mode: one line naming the variant, the failing instruction
and the error, then (unless the lines were already shown) the last lines of its log, then
the path of the full log. The error is said once there, not again in the outcome line.
All methods may be called from build worker threads.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, ClassVar

from .builder import BLOCKED, BUILT, CANCELLED, FAILED, SKIPPED, BuildResult, Step


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


class PlainView:
    def __init__(self, names: list[str], quiet: bool = False, out: IO[str] | None = None,
                 err: IO[str] | None = None) -> None:
        self.quiet = quiet
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.width = max((len(n) for n in names), default=0)
        self.lock = threading.Lock()

    def _print(self, name: str, text: str) -> None:
        with self.lock:
            if self.quiet:
                self.out.write(f"{name}: {text}\n")
            else:
                self.out.write(f"{datetime.now():%H:%M:%S} {name:<{self.width}} | {text}\n")
            self.out.flush()

    def info(self, text: str) -> None:
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()

    def started(self, variant: str, engine: str, context_bytes: int, files: int,
                log_path: Path) -> None:
        if not self.quiet:
            self._print(variant, started_text(engine, context_bytes, files, log_path))

    def step(self, variant: str, step: Step) -> None:
        pass  # the "Step N/M : ..." line itself comes through line()

    def line(self, variant: str, text: str) -> None:
        if not self.quiet:
            self._print(variant, text)

    def finished(self, result: BuildResult) -> None:
        self._print(result.variant, outcome_text(result))
        if result.status == FAILED:
            with self.lock:
                self.out.flush()
                self.err.write("\n".join(failure_lines(result, shown=not self.quiet)) + "\n")
                self.err.flush()

    def close(self) -> None:
        pass


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


class LiveView:
    """A rich Live table, redrawn 4 times a second; permanent lines print above it."""

    _STYLE: ClassVar[dict[str, str]] = {
        "waiting": "dim", "building": "yellow", BUILT: "green", SKIPPED: "green",
        FAILED: "bold red", BLOCKED: "red", CANCELLED: "red"}

    def __init__(self, names: list[str], console: Any = None, show_engine: bool = False
                 ) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = console or Console(highlight=False)
        self.show_engine = show_engine
        self.rows = {n: _Row(n) for n in names}
        self.lock = threading.Lock()
        self.failures: list[BuildResult] = []
        self.live = Live(self, console=self.console, refresh_per_second=4, transient=True)
        self.live.start()

    def __rich__(self) -> Any:
        from rich.table import Table
        from rich.text import Text

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
                cells += [Text(state, style=self._STYLE.get(row.state, "")),
                          Text(row.elapsed()),
                          Text(row.step.instruction if row.step and row.state == "building"
                               else ""),
                          Text(row.last if row.state == "building" else "")]
                table.add_row(*cells)
        return table

    def _permanent(self, text: str, style: str = "") -> None:
        from rich.text import Text

        # A styled Text, not print(style=...): that style would leak into the live rows.
        self.live.console.print(Text(text, style=style), soft_wrap=True)

    def info(self, text: str) -> None:
        self._permanent(text)

    def started(self, variant: str, engine: str, context_bytes: int, files: int,
                log_path: Path) -> None:
        with self.lock:
            row = self.rows.setdefault(variant, _Row(variant))
            row.engine, row.state, row.started = engine, "building", time.monotonic()
        self._permanent(f"{variant}: {started_text(engine, context_bytes, files, log_path)}")

    def step(self, variant: str, step: Step) -> None:
        shown = Step(step.number, step.total, " ".join(step.instruction.split()))
        with self.lock:
            self.rows[variant].step = shown

    def line(self, variant: str, text: str) -> None:
        if text.startswith(_NOISE):
            return  # the row shows the step already; keep the build's own last output
        with self.lock:
            self.rows[variant].last = text

    def finished(self, result: BuildResult) -> None:
        with self.lock:
            row = self.rows.setdefault(result.variant, _Row(result.variant))
            row.state, row.ended, row.engine = result.status, time.monotonic(), result.engine
            if result.status == FAILED:
                self.failures.append(result)
        self._permanent(f"{result.variant}: {outcome_text(result)}",
                        self._STYLE.get(result.status, ""))

    def close(self) -> None:
        self.live.stop()
        # Failure blocks go to stderr once the live display is gone, so they stay intact.
        for result in self.failures:
            sys.stderr.write("\n".join(failure_lines(result)) + "\n")
        sys.stderr.flush()


def make_view(mode: str, names: list[str], engines: list[str]) -> PlainView | LiveView:
    """`auto`: live on a terminal, plain otherwise."""
    if mode == "auto":
        mode = "live" if sys.stdout.isatty() else "plain"
    if mode == "live":
        return LiveView(names, show_engine=len(engines) > 1)
    return PlainView(names, quiet=mode == "quiet")
