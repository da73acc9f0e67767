"""imagefactory build: render variants and build them through docker-py, with progress.

A no-change build is mostly start-up, so this path imports only what deciding "up to date"
needs: docker-py, tarfile and git run only once some variant is actually built.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import JobError


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
@click.option("--log-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where each build's full log goes. Default: .imagefactory/logs next to "
                   "the rendered dockerfiles/.")
@click.pass_obj
def command(state, variants: tuple[str, ...], all_: bool, jobs: int | None,
            engines: tuple[str, ...], force: bool, no_cache: bool, pull: bool, progress: str,
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
    from ..engine.docker_engine import default_address, open_engine
    from ..render.cache import CachedRenderer

    project = state.project
    selected = state.select(variants, all_)
    order = plan(project.matrix, selected)
    state_dir = project.output_dir.parent / ".imagefactory"
    renderer = CachedRenderer(project, state_dir / "render-cache.json")
    contexts = {v.name: renderer.render(v) for v in order}
    renderer.save()
    addresses = list(dict.fromkeys(engines)) or [default_address()]
    clients = {address: open_engine(address, timeout=120) for address in addresses}
    names = [v.name for v in order]
    rebuild = names if no_cache else [v.name for v in selected] if force else []
    options = BuildOptions(
        log_dir=log_dir or state_dir / "logs",
        force=frozenset(rebuild), no_cache=no_cache, pull=pull,
        revision=partial(git_revision, project.root),
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
