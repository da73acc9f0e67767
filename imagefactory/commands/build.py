"""imagefactory build: render variants and build them on the engine(s), with progress.

Parsing and printing only: the order and engines come from build/schedule.py, each
variant's skip-or-build decision from build/builder.py; git runs only once something is
actually built.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import JobError, UsageError

if TYPE_CHECKING:
    from ..appstate import AppState


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


@click.command("build")
@click.argument("variants", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Build every variant of the matrix.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Builds at once, over all engines. Default: one per engine.")
@click.option("--engine", "engines", multiple=True, metavar="URL",
              help="Docker engine to build on (repeatable; builds are spread over them, a "
                   "variant built FROM another goes to its base's engine). Default: "
                   "DOCKER_HOST, else the current docker context.")
@click.option("--force", is_flag=True, help="Rebuild the named variants even when up to date.")
@click.option("--no-cache", is_flag=True,
              help="Build without the engine's layer cache (implies --force).")
@click.option("--pull", is_flag=True,
              help="Pull newer external base images first. Default: a base image present "
                   "in the engine is used as is.")
@click.option("--progress", type=click.Choice(["auto", "plain", "quiet"]), default="auto",
              show_default=True,
              help="auto: a live view on a terminal, plain lines otherwise.")
@click.option("--builder", "builder_kind", type=click.Choice(["auto", "buildx", "classic"]),
              default="auto", show_default=True,
              help="buildx: BuildKit through `docker buildx build` (cache mounts; needed by "
                   "Dockerfiles that use them); classic: docker-py's legacy builder; auto: "
                   "buildx when the plugin is installed.")
@click.option("--buildx-builder", metavar="NAME", default=None,
              help="A named buildx builder (docker-container, remote, kubernetes driver) "
                   "instead of the engine's own BuildKit; images are loaded into the engine.")
@click.option("--cache-from", "cache_from", multiple=True, metavar="SPEC",
              help="BuildKit cache to import, as buildx takes it (repeatable), e.g. "
                   "type=registry,ref=HOST/imagefactory-cache:cpu.")
@click.option("--cache-to", "cache_to", multiple=True, metavar="SPEC",
              help="BuildKit cache to export (repeatable): type=inline with the engine's own "
                   "BuildKit, type=registry,ref=...,mode=max with a --buildx-builder that "
                   "exports caches.")
@click.option("--target", metavar="STAGE", default=None,
              help="Build up to this Dockerfile stage (as docker build --target) and tag it "
                   "<repository>:<variant>-<STAGE>. One variant, built FROM an external base.")
@click.option("--build-arg", "build_args", multiple=True, metavar="NAME=VALUE",
              help="A build argument, as docker build --build-arg (repeatable), e.g. "
                   "DEBIAN_ARCHIVE=http://deb.debian.org/debian. An image built with other "
                   "values is not up to date.")
@click.option("--log-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where each build's full log goes. Default: .imagefactory/logs next to "
                   "the rendered dockerfiles/.")
@click.pass_obj
def command(state: AppState, variants: tuple[str, ...], all_: bool, jobs: int | None,
            engines: tuple[str, ...], force: bool, no_cache: bool, pull: bool, progress: str,
            builder_kind: str, buildx_builder: str | None, cache_from: tuple[str, ...],
            cache_to: tuple[str, ...], target: str | None, build_args: tuple[str, ...],
            log_dir: Path | None) -> None:
    """Build variants' images; tag each `<repository>:<variant>` only once it built.

    A variant whose image carries the same inputs hash (and was built FROM the base image
    the engine has now) is skipped as up to date. Bases of the named variants join the build.
    """
    import threading
    from functools import partial

    from ..build.builder import FAILED, USABLE, Builder, BuildOptions
    from ..build.progress import make_view
    from ..build.schedule import Scheduler, plan
    from ..engine.base import ContainerEngine
    from ..engine.docker_engine import default_address, open_engine
    from ..paths import Paths
    from ..render.renderer import Renderer

    if buildx_builder and builder_kind == "classic":
        raise UsageError("--buildx-builder needs --builder buildx or auto, not classic")
    for flag, specs in (("--cache-from", cache_from), ("--cache-to", cache_to)):
        if specs and builder_kind == "classic":
            raise UsageError(f"{flag} needs BuildKit (--builder buildx or auto), not classic")
        wrong = next((s for s in specs if not s.strip() or any(c in s for c in "\n\r\0")),
                     None)
        if wrong is not None:
            raise UsageError(f"{flag}: {wrong!r} is not a cache spec (type=...,key=value)")
    project = state.project
    selected = state.select(variants, all_)
    order = plan(project.matrix, selected)
    paths = Paths.for_output(project.output_dir)
    renderer = Renderer(project)
    contexts = {v.name: renderer.render(v) for v in order}
    args = parse_build_args(build_args)
    if target is not None:
        if len(order) != 1:
            raise UsageError(f"--target {target}: name one variant built FROM an external base "
                             f"(this build takes {', '.join(v.name for v in order)})")
        stages = dockerfile_stages(contexts[order[0].name].dockerfile)
        if target not in stages:
            raise UsageError(f"--target {target}: {order[0].name} has no such stage "
                             f"(it has: {', '.join(stages) or 'no named stage'})")
    addresses = list(dict.fromkeys(engines)) or [default_address()]
    clients: dict[str, ContainerEngine] = {
        address: open_engine(address, timeout=120) for address in addresses}
    names = [v.name for v in order]
    rebuild = names if no_cache else [v.name for v in selected] if force else []
    options = BuildOptions(
        log_dir=log_dir or paths.logs,
        force=frozenset(rebuild), no_cache=no_cache, pull=pull,
        revision=partial(git_revision, project.root),
        builder="buildx" if buildx_builder or cache_from or cache_to else builder_kind,
        buildx_builder=buildx_builder, cache_from=cache_from, cache_to=cache_to,
        target=target, build_args=args, targeted=frozenset(v.name for v in selected),
    )
    view = make_view(progress, names, list(clients))
    cancel = threading.Event()
    builder = Builder(project.matrix, contexts, clients, options, view, cancel)
    extra = [n for n in names if n not in {v.name for v in selected}]
    view.info(f"building {len(names)} variant(s) on {len(clients)} engine(s), "
              f"{jobs or len(clients)} at a time: {', '.join(names)}"
              + (f" (bases: {', '.join(extra)})" if extra else ""))
    scheduler = Scheduler(order, list(clients), jobs or len(clients), builder.run,
                          probe=builder.probe, on_blocked=view.finished, cancel=cancel)
    try:
        results = scheduler.run()
    except KeyboardInterrupt:
        view.close()
        click.echo("imagefactory: interrupting the builds; no unfinished build is tagged",
                   err=True)
        raise
    view.close()
    bad = [r for r in results if r.status not in USABLE]
    if bad:
        failed = [r for r in bad if r.status == FAILED]
        what = ", ".join(f"{r.variant}" + (f" ({r.step.instruction})" if r.step else "")
                         for r in failed) or "none"
        raise JobError(f"{len(failed)} of {len(results)} build(s) failed: {what}"
                       + (f"; {len(bad) - len(failed)} not built" if len(bad) > len(failed)
                          else ""))


_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_STAGE = re.compile(r"(?im)^[ \t]*FROM[ \t]+\S+[ \t]+AS[ \t]+([A-Za-z0-9][A-Za-z0-9_.-]*)[ \t]*$")


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


def dockerfile_stages(dockerfile: str) -> list[str]:
    """The named stages (`FROM image AS name`), in order; Docker's lines end at \\n only."""
    return _STAGE.findall(dockerfile.replace("\r\n", "\n"))
