"""What a publish run reports: refusals, the push of each planned variant (a warning when
its tests were skipped), the engine's retries, each tag as published, the record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..events import Event


@dataclass(frozen=True)
class Refused(Event):
    """One variant that cannot be published (one of several: the run then raises)."""

    reason: str


@dataclass(frozen=True)
class TestsSkipped(Event):
    """--skip-tests: this variant is published without its test result checked."""

    __test__ = False

    variant: str
    short_id: str
    tag: str  # the tag that says so


@dataclass(frozen=True)
class Pushing(Event):
    variant: str
    short_id: str
    repository: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class PushNote(Event):
    """The push's progress: a layer upload the engine retries, a retry, a pushed ref."""

    text: str


@dataclass(frozen=True)
class TagPublished(Event):
    """The output proper: `repository:tag` serves `reference` (repo@digest)."""

    repository: str
    tag: str
    reference: str


@dataclass(frozen=True)
class Recorded(Event):
    """Verified in the registry; the publish record written."""

    variant: str
    record_path: Path
