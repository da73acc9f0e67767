"""What a build run reports: the plan, then per variant started, steps, log lines and
finished. Emitted from the build worker threads (the renderer locks)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..events import Event

if TYPE_CHECKING:  # builder.py emits these events: a runtime import would be a cycle
    from .builder import BuildResult, Step


@dataclass(frozen=True)
class BuildPlanned(Event):
    """The plan, known before the first build starts."""

    names: tuple[str, ...]  # bases first
    bases: tuple[str, ...]  # planned but not named
    engines: tuple[str, ...]
    jobs: int


@dataclass(frozen=True)
class BuildStarted(Event):
    variant: str
    engine: str
    context_bytes: int
    files: int
    log_path: Path


@dataclass(frozen=True)
class BuildStep(Event):
    variant: str
    step: Step  # the instruction already made safe to print (Builder.shown)


@dataclass(frozen=True)
class BuildLine(Event):
    variant: str
    text: str  # one line the build printed, redacted and escaped


@dataclass(frozen=True)
class BuildFinished(Event):
    """Built, skipped, failed, blocked or cancelled (`result.status`)."""

    result: BuildResult
