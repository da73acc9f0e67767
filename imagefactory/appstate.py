"""What every subcommand shares: the located project, loaded once and only when needed."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from .errors import UsageError
from .matrix.loader import Variant
from .project import Project


class AppState:
    def __init__(self, config: Path | None) -> None:
        self.config = config

    @cached_property
    def project(self) -> Project:
        return Project.locate(self.config)

    def select(self, names: tuple[str, ...], all_: bool = False, *,
               required: bool = True) -> tuple[Variant, ...]:
        """Variants named on the command line; `--all` (or none named, if not required): all."""
        if names and all_:
            raise UsageError("name variants or give --all, not both")
        if not names and required and not all_:
            raise UsageError("name at least one variant (or --all); "
                             f"variants: {', '.join(self.project.matrix.names)}")
        return self.project.variants(names)
