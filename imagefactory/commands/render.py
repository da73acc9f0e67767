"""imagefactory render: write dockerfiles/<variant>/Dockerfile, or check them for drift."""

from __future__ import annotations

import click

from ..errors import JobError


@click.command("render")
@click.argument("variants", nargs=-1)
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 naming each rendered file that differs from what "
                   "the templates produce.")
@click.pass_obj
def command(state, variants: tuple[str, ...], check: bool) -> None:
    """Render Dockerfiles from variants.yaml and the templates (all variants by default)."""
    from ..render.renderer import Renderer, drifted, write_rendered

    project = state.project
    renderer = Renderer(project)
    contexts = [renderer.render(v) for v in project.variants(variants)]
    if check:
        stale = drifted(project, contexts)
        for path in stale:
            click.echo(f"out of date: {path} (run `imagefactory render`)", err=True)
        if stale:
            raise JobError(f"{len(stale)} rendered Dockerfile(s) differ from the templates")
        click.echo(f"{len(contexts)} rendered Dockerfile(s) up to date")
        return
    changed = write_rendered(project, contexts)
    for ctx in contexts:
        path = project.dockerfile_path(ctx.variant)
        state_word = "written" if path in changed else "unchanged"
        click.echo(f"{ctx.variant.name}: {path} ({state_word})")
