"""The build matrix for CI: one job per variant, sized by what the variant's build does.

.github/workflows/images.yml reads this (`imagefactory matrix --format github`) instead of
listing variants itself, so adding a variant to variants.yaml adds its CI job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `imagefactory --help` imports this module: keep jinja2 & co. out of it
    from ..matrix.loader import Variant
    from ..project import Project

RUNNER = "ubuntu-24.04"
TIMEOUT_MINUTES = 120  # pulling a ROCm base (~20 GB) and installing wheels
# GitHub-hosted jobs stop at 6 hours whatever is asked; a self-hosted large runner may take
# longer (--source-timeout).
SOURCE_TIMEOUT_MINUTES = 360


@dataclass(frozen=True)
class Job:
    variant: str
    image: str  # the engine-local tag `imagefactory build` gives it
    runner: str
    timeout_minutes: int
    source_build: bool
    gpu: bool  # a ROCm variant: worth testing on an AMD GPU runner

    def to_github(self) -> dict[str, Any]:
        return {"variant": self.variant, "image": self.image, "runner": self.runner,
                "timeout-minutes": self.timeout_minutes, "source-build": self.source_build,
                "gpu": self.gpu}


def compiles(project: Project, variant: Variant) -> bool:
    """Does building `variant` (or a variant it is built FROM) compile from source? Builder
    stages (more than one FROM) are where the templates compile; torch.source says the rest."""
    from .dockerfile import stages
    from .renderer import Renderer

    renderer = Renderer(project)
    seen: set[str] = set()
    v: Variant | None = variant
    while v is not None and v.name not in seen:
        seen.add(v.name)
        if v.torch.source == "source" or len(stages(renderer.render(v).dockerfile)) > 1:
            return True
        v = project.matrix.get(v.base_variant) if v.base_variant else None
    return False


def jobs(project: Project, variants: tuple[Variant, ...], runner: str = RUNNER,
         large_runner: str = RUNNER, timeout: int = TIMEOUT_MINUTES,
         source_timeout: int = SOURCE_TIMEOUT_MINUTES) -> list[Job]:
    from ..identity import local_tag

    out = []
    for v in variants:
        source = compiles(project, v)
        out.append(Job(v.name, local_tag(project.matrix, v), large_runner if source else runner,
                       source_timeout if source else timeout, source, v.rocm is not None))
    return out


def github(jobs_: list[Job], gpu_only: bool = False) -> dict[str, Any]:
    """`strategy.matrix` for GitHub Actions: {"include": [...]} (one job per entry)."""
    return {"include": [j.to_github() for j in jobs_ if j.gpu or not gpu_only]}
