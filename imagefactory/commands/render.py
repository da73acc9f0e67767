"""imagefactory render: write dockerfiles/<variant>/Dockerfile, or check them for drift."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..errors import JobError

if TYPE_CHECKING:
    from ..appstate import AppState


@click.command("render")
@click.argument("variants", nargs=-1)
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 naming each rendered file that differs from what "
                   "the templates produce.")
@click.pass_obj
def command(state: AppState, variants: tuple[str, ...], check: bool) -> None:
    """Render Dockerfiles from variants.yaml and the templates (all variants by default)."""
    from ..render.bake import bake_drifted, bake_path, write_bake
    from ..render.renderer import Renderer, drifted, write_rendered

    project = state.project
    renderer = Renderer(project)
    contexts = [renderer.render(v) for v in project.variants(variants)]
    # The bake file covers the whole matrix: written and checked when all variants are.
    whole = not variants
    if check:
        stale = drifted(project, contexts)
        if whole and bake_drifted(project, contexts):
            stale.append(bake_path(project))
        for path in stale:
            click.echo(f"out of date: {path} (run `imagefactory render`)", err=True)
        if stale:
            raise JobError(f"{len(stale)} rendered file(s) differ from the templates")
        click.echo(f"{len(contexts)} rendered Dockerfile(s) up to date"
                   + (f", and {bake_path(project).name}" if whole else ""))
        return
    changed = write_rendered(project, contexts)
    for ctx in contexts:
        path = project.dockerfile_path(ctx.variant)
        state_word = "written" if path in changed else "unchanged"
        click.echo(f"{ctx.variant.name}: {path} ({state_word})")
    if whole:
        state_word = "written" if write_bake(project, contexts) else "unchanged"
        click.echo(f"bake: {bake_path(project)} ({state_word})")
