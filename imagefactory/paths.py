"""Where imagefactory keeps what it writes: one object, so no module invents a location.

- state: next to the rendered dockerfiles/ (`.imagefactory/`), per project;
- logs: the build logs, under state (`--log-dir` overrides);
- results: test results, manifests and publish records (`--results`, default ./results);
  a `test --target` stage's result goes to its `stages/` folder, a `test --suite-args` run's
  (the suite by hand) to `debug/`;
- cache: per user (XDG_CACHE_HOME, else ~/.cache/imagefactory): crash reports.

Commands' option defaults are the constants below, so `--help` shows what Paths uses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

STATE_DIR = ".imagefactory"
LOGS_DIR = "logs"
RESULTS_DIR = Path("results")  # relative: the folder a command runs in
STAGES_DIR = "stages"
DEBUG_DIR = "debug"
CRASHES_DIR = "crashes"


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imagefactory"


@dataclass(frozen=True)
class Paths:
    """`Paths()` is the defaults in the current folder (where the shipped matrix renders);
    `Paths.for_output` is a located project's."""

    state: Path = Path(STATE_DIR)
    results: Path = RESULTS_DIR
    cache: Path = field(default_factory=user_cache_dir)

    @classmethod
    def for_output(cls, output_dir: Path, results: Path | None = None) -> Paths:
        """The paths of a project whose Dockerfiles are rendered into `output_dir`."""
        return cls(output_dir.parent / STATE_DIR, RESULTS_DIR if results is None else results)

    @property
    def logs(self) -> Path:
        return self.state / LOGS_DIR

    @property
    def stages(self) -> Path:
        """Stage images' results: never read as the variant's (push and report read the
        top level of `results`)."""
        return self.results / STAGES_DIR

    @property
    def debug(self) -> Path:
        """Results of runs whose suite was run by hand (`test --suite-args`): never read as
        the variant's either."""
        return self.results / DEBUG_DIR

    @property
    def crashes(self) -> Path:
        return self.cache / CRASHES_DIR
