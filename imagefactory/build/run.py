"""A build run: the named variants (and their bases) rendered, checked, spread over engines and
built, into one BuildRun. The click command only parses its options and prints; this is what
`imagefactory build` does between the two, callable without click (and, with an engine
opener of one's own, without Docker: tests/fake_engine.py)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ..engine.base import ContainerEngine
from ..errors import UsageError
from ..events import Emit
from ..matrix.loader import Variant
from ..paths import Paths
from ..project import Project
from ..render.dockerfile import stage_names
from ..render.renderer import BuildContext, Renderer
from .builder import AUTO, BUILDX, FAILED, USABLE, Builder, BuildOptions, BuildResult
from .events import BuildFinished, BuildPlanned
from .schedule import Scheduler, plan

# An engine address (`--engine URL`) -> the engine, connected.
Opener = Callable[[str], ContainerEngine]

_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")


@dataclass(frozen=True)
class BuildSettings:
    """What `imagefactory build`'s options ask of every variant of a run."""

    jobs: int | None = None  # builds at once over all engines; None: one per engine
    force: bool = False  # rebuild the named variants even when up to date
    no_cache: bool = False  # without the layer cache; every planned variant rebuilds
    pull: bool = False
    builder: str = AUTO  # classic, buildx or auto (build/builder.py)
    buildx_builder: str | None = None
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    target: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    log_dir: Path | None = None  # None: the project's Paths.logs


@dataclass(frozen=True)
class BuildPlan:
    """What will be built where, known before the first build starts."""

    order: tuple[Variant, ...]  # bases first
    selected: tuple[Variant, ...]  # those named; the rest of `order` are their bases
    engines: tuple[str, ...]  # addresses
    jobs: int
    contexts: Mapping[str, BuildContext]

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.order]

    @property
    def bases(self) -> list[str]:
        """Planned variants not named: bases the named ones build FROM."""
        named = {v.name for v in self.selected}
        return [n for n in self.names if n not in named]


@dataclass(frozen=True)
class BuildRun:
    plan: BuildPlan
    results: tuple[BuildResult, ...]  # in plan order

    @property
    def unusable(self) -> tuple[BuildResult, ...]:
        """Failed, blocked or cancelled: no image tagged for them by this run."""
        return tuple(r for r in self.results if r.status not in USABLE)

    @property
    def failed(self) -> tuple[BuildResult, ...]:
        return tuple(r for r in self.results if r.status == FAILED)


def git_revision(root: Path) -> str | None:
    """The project's git HEAD, when it is a git checkout."""
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    rev = out.stdout.strip()
    return rev if out.returncode == 0 and rev else None


def parse_build_args(raw: tuple[str, ...] | list[str]) -> dict[str, str]:
    """NAME=VALUE pairs as docker build takes them; a value is one line of printable text."""
    out: dict[str, str] = {}
    for item in raw:
        name, sep, value = item.partition("=")
        if not sep or not _ARG_NAME.fullmatch(name):
            raise UsageError(f"--build-arg {item[:60]!r}: expected NAME=VALUE (NAME: letters, "
                             "digits, _)")
        if not value.isprintable():
            raise UsageError(f"--build-arg {name}: the value has control characters")
        out[name] = value
    return out


def _docker_opener(address: str) -> ContainerEngine:
    from ..engine.docker_engine import open_engine

    return open_engine(address, timeout=120)


def build_variants(project: Project, selected: Sequence[Variant], settings: BuildSettings,
                   emit: Emit, *,
                   engines: Sequence[str] = (), opener: Opener | None = None,
                   cancel: threading.Event | None = None) -> BuildRun:
    """Build `selected` and the bases they need, each on the engine the schedule picks.

    Refusals that need the rendered Dockerfiles (a --target the Dockerfile lacks, --target
    over several variants) are UsageErrors raised before any engine is opened. Then `emit`
    gets a BuildPlanned and each build's events (build/events.py, from the worker threads);
    Ctrl-C sets `cancel` (nothing unfinished is tagged) and the KeyboardInterrupt
    propagates. `engines`: addresses (default: the one
    of DOCKER_HOST / the docker context); `opener` connects to one (default: Docker)."""
    order = plan(project.matrix, selected)
    renderer = Renderer(project)
    contexts = {v.name: renderer.render(v) for v in order}
    target = settings.target
    if target is not None:
        if len(order) != 1:
            raise UsageError(f"--target {target}: name one variant built FROM an external base "
                             f"(this build takes {', '.join(v.name for v in order)})")
        stages = stage_names(contexts[order[0].name].dockerfile)
        if target not in stages:
            raise UsageError(f"--target {target}: {order[0].name} has no such stage "
                             f"(it has: {', '.join(stages) or 'no named stage'})")
    if not engines:
        from ..engine.docker_engine import default_address

        engines = [default_address()]
    addresses = list(dict.fromkeys(engines))
    connect = opener or _docker_opener
    clients = {address: connect(address) for address in addresses}
    names = [v.name for v in order]
    rebuild = (names if settings.no_cache
               else [v.name for v in selected] if settings.force else [])
    needs_buildx = settings.buildx_builder or settings.cache_from or settings.cache_to
    options = BuildOptions(
        log_dir=settings.log_dir or Paths.for_output(project.output_dir).logs,
        force=frozenset(rebuild), no_cache=settings.no_cache, pull=settings.pull,
        revision=partial(git_revision, project.root),
        builder=BUILDX if needs_buildx else settings.builder,
        buildx_builder=settings.buildx_builder, cache_from=settings.cache_from,
        cache_to=settings.cache_to, target=target, build_args=dict(settings.build_args),
        targeted=frozenset(v.name for v in selected),
    )
    jobs = settings.jobs or len(clients)
    the_plan = BuildPlan(tuple(order), tuple(selected), tuple(addresses), jobs, contexts)
    emit(BuildPlanned(tuple(the_plan.names), tuple(the_plan.bases), the_plan.engines, jobs))
    if cancel is None:
        cancel = threading.Event()
    builder = Builder(project.matrix, contexts, clients, options, emit, cancel)
    scheduler = Scheduler(order, addresses, jobs, builder.run, probe=builder.probe,
                          on_blocked=lambda result: emit(BuildFinished(result)), cancel=cancel)
    return BuildRun(the_plan, tuple(scheduler.run()))
