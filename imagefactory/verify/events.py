"""What a test run reports: the tester's progress lines, each check's outcome, the conv
cases' verdicts worth a mark, notes, and each result as it is saved."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..events import Event
from .results import Check, ConvCase


@dataclass(frozen=True)
class TestLine(Event):
    """One line of the tester's progress, as printed (indented, safe to print)."""

    __test__ = False  # not a pytest test class

    text: str


@dataclass(frozen=True)
class TestNote(Event):
    """Something the run wants said (a declared version the image does not report, a
    profile the host's GPU does not match); `text` is what the image or matrix said."""

    __test__ = False

    text: str
    indent: str = "  "


@dataclass(frozen=True)
class CheckDone(Event):
    """One check's outcome (names and details come from the image: the renderer cleans)."""

    check: Check


@dataclass(frozen=True)
class Verdict(Event):
    """A conv case that is a known failure, fixed, or a regression."""

    case: ConvCase


@dataclass(frozen=True)
class TestFinished(Event):
    """A variant's result, saved at `path`."""

    __test__ = False

    variant: str
    passed: bool
    seconds: float
    path: Path


@dataclass(frozen=True)
class BundleWritten(Event):
    variant: str
    path: Path
