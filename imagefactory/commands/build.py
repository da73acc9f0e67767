"""imagefactory build: render variants and build them on the engine(s), with progress.

Parsing and printing only: build/run.py's build_variants plans, renders, opens the engines
and builds (the order and engines from build/schedule.py, each variant's skip-or-build
decision from build/builder.py); the one renderer (commands/_render.py) prints its events,
and this turns the outcome into the exit status.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import JobError, UsageError
from ..paths import LOGS_DIR, STATE_DIR

if TYPE_CHECKING:
    from ..appstate import AppState


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
              help=f"Where each build's full log goes. Default: {STATE_DIR}/{LOGS_DIR} next to "
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
    from ..build.run import BuildSettings, build_variants, parse_build_args
    from ._render import Printer

    if buildx_builder and builder_kind == "classic":
        raise UsageError("--buildx-builder needs --builder buildx or auto, not classic")
    for flag, specs in (("--cache-from", cache_from), ("--cache-to", cache_to)):
        if specs and builder_kind == "classic":
            raise UsageError(f"{flag} needs BuildKit (--builder buildx or auto), not classic")
        wrong = next((s for s in specs if not s.strip() or any(c in s for c in "\n\r\0")),
                     None)
        if wrong is not None:
            raise UsageError(f"{flag}: {wrong!r} is not a cache spec (type=...,key=value)")
    selected = state.select(variants, all_)
    settings = BuildSettings(
        jobs=jobs, force=force, no_cache=no_cache, pull=pull, builder=builder_kind,
        buildx_builder=buildx_builder, cache_from=cache_from, cache_to=cache_to,
        target=target, build_args=parse_build_args(build_args), log_dir=log_dir)
    printer = Printer(progress)
    try:
        run = build_variants(state.project, selected, settings, printer, engines=engines)
    except KeyboardInterrupt:
        if printer.planned:  # builds had started: say what became of them
            printer.close()
            click.echo("imagefactory: interrupting the builds; no unfinished build is tagged",
                       err=True)
        raise
    printer.close()
    bad, failed = run.unusable, run.failed
    if bad:
        what = ", ".join(f"{r.variant}" + (f" ({r.step.instruction})" if r.step else "")
                         for r in failed) or "none"
        raise JobError(f"{len(failed)} of {len(run.results)} build(s) failed: {what}"
                       + (f"; {len(bad) - len(failed)} not built" if len(bad) > len(failed)
                          else ""))
