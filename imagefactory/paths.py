"""Where imagefactory keeps what it writes: one object, so no module invents a location.

- state: next to the rendered dockerfiles/ (`.imagefactory/`), per project;
- logs: the build logs, under state (`--log-dir` overrides);
- results: test results, manifests and publish records (`--results`, default ./results);
- cache: per user (XDG_CACHE_HOME, else ~/.cache/imagefactory): crash reports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imagefactory"


@dataclass(frozen=True)
class Paths:
    state: Path
    results: Path = Path("results")
    cache: Path = field(default_factory=user_cache_dir)

    @classmethod
    def for_output(cls, output_dir: Path, results: Path | None = None) -> Paths:
        """The paths of a project whose Dockerfiles are rendered into `output_dir`."""
        return cls(output_dir.parent / ".imagefactory", results or Path("results"))

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def crashes(self) -> Path:
        return self.cache / "crashes"
