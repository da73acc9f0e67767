"""Where the matrix, templates and in-image files live.

A checkout (or any folder with a variants.yaml) is used as is. Without one, the copies
shipped inside the installed package are used, so `pipx install imagefactory` works from
any folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .errors import ConfigError
from .matrix.loader import Matrix, Variant, load_matrix
from .matrix.recipes import TEMPLATE_SUFFIX

BASE_TEMPLATE = "base" + TEMPLATE_SUFFIX


def shipped_root() -> Path:
    """The folder holding the packaged variants.yaml and dockerfiles/."""
    here = Path(__file__).resolve().parent
    packaged = here / "_shipped"
    if (packaged / "variants.yaml").is_file():
        return packaged
    return here.parent  # an editable install or a plain checkout


@dataclass(frozen=True)
class Project:
    config_path: Path
    root: Path  # holds dockerfiles/templates and dockerfiles/files
    output_dir: Path  # where rendered dockerfiles/<variant>/Dockerfile go

    @classmethod
    def locate(cls, config: Path | None, cwd: Path | None = None) -> Project:
        cwd = cwd or Path.cwd()
        if config is None:
            local = cwd / "variants.yaml"
            if local.is_file():
                config = local
            else:
                root = shipped_root()
                return cls(root / "variants.yaml", root, cwd / "dockerfiles")
        if not config.is_file():
            raise ConfigError(str(config), None, "", "no such file")
        root = config.resolve().parent
        templates = root / "dockerfiles" / "templates"
        if not templates.is_dir():
            # A config of one's own may still use the shipped templates and in-image files.
            shipped = shipped_root()
            return cls(config, shipped, root / "dockerfiles")
        return cls(config, root, root / "dockerfiles")

    @property
    def templates_dir(self) -> Path:
        return self.root / "dockerfiles" / "templates"

    @property
    def files_dir(self) -> Path:
        """In-image files; a Dockerfile COPYs them as `files/...` from its build context."""
        return self.root / "dockerfiles" / "files"

    @cached_property
    def families(self) -> frozenset[str]:
        """The families this project has a template for: a registered family's own
        (Recipe.template_name), or any `<family>.Dockerfile.j2` (a family whose recipe is
        missing is then named by the loader as such)."""
        from .matrix import plugins

        on_disk = {p.name for p in self.templates_dir.glob("*" + TEMPLATE_SUFFIX)}
        on_disk.discard(BASE_TEMPLATE)
        registered = {name for name, cls in plugins.families().items()
                      if cls.template_name() in on_disk}
        return frozenset(registered | {n[: -len(TEMPLATE_SUFFIX)] for n in on_disk})

    @cached_property
    def matrix(self) -> Matrix:
        return load_matrix(self.config_path, self.families)

    def variants(self, names: tuple[str, ...] | list[str] = ()) -> tuple[Variant, ...]:
        """The named variants, or all of them when none is named."""
        return self.matrix.select(names) if names else self.matrix.variants

    def dockerfile_path(self, variant: Variant) -> Path:
        return self.output_dir / variant.name / "Dockerfile"
