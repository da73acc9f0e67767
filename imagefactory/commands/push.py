"""imagefactory push: publish tested images to a registry, verified and recorded."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..paths import RESULTS_DIR

if TYPE_CHECKING:
    from ..appstate import AppState


@click.command("push")
@click.argument("variants", nargs=-1, required=True)
@click.option("--registry", required=True, envvar="IMAGEFACTORY_REGISTRY", metavar="HOST/NS",
              help="Where to publish: HOST[:PORT]/NAMESPACE, e.g. ghcr.io/OWNER or "
                   "docker.io/USER. Images go to HOST/NAMESPACE/<repository in variants.yaml>.")
@click.option("--username", metavar="USER",
              help="Registry user (with --password-stdin or IMAGEFACTORY_REGISTRY_PASSWORD). "
                   "Default: IMAGEFACTORY_REGISTRY_USERNAME, else Docker's own login "
                   "(~/.docker/config.json, credential helpers).")
@click.option("--password-stdin", is_flag=True,
              help="Read the password or token from the first line of standard input.")
@click.option("--skip-tests", is_flag=True,
              help="Emergencies only: publish even without a passing test result. Warns, "
                   "adds the tag <variant>-untested and says so in the publish record.")
@click.option("--allow-quick", is_flag=True,
              help="Accept a `test --quick` (or --cases) result when the image has no full "
                   "test result. By default only a full run publishes.")
@click.option("--results", "results_dir", type=click.Path(path_type=Path, file_okay=False),
              default=RESULTS_DIR, show_default=True,
              help="Where `imagefactory test` wrote its results; the publish record "
                   "<variant>.publish.json goes there too.")
@click.option("--engine", metavar="URL", default=None,
              help="Docker engine address. Default: DOCKER_HOST, else the docker context.")
@click.option("--retries", type=click.IntRange(0, 10), default=3, show_default=True,
              help="Retries (with doubling waits) after a transient registry failure.")
@click.pass_obj
def command(state: AppState, variants: tuple[str, ...], registry: str, username: str | None,
            password_stdin: bool, skip_tests: bool, allow_quick: bool, results_dir: Path,
            engine: str | None, retries: int) -> None:
    """Push VARIANT images that passed `imagefactory test` to a registry.

    Each image gets three tags: <variant>, <variant>-<inputs hash> and
    <rocm..-torch..-gfx..>-<variant>. Prints `repo:tag repo@digest` per tag after checking
    the registry serves that digest, and writes <results>/<variant>.publish.json.
    """
    from ..publish import credentials
    from ..publish.registry import Target
    from ..publish.run import publish_variants
    from ..render.renderer import Renderer
    from ._render import Printer

    target = Target.parse(registry)
    chosen = state.select(variants)
    creds = credentials.resolve(target, username, password_stdin, sys.stdin)
    renderer = Renderer(state.project)
    publish_variants(state.project.matrix, chosen, target, creds, results_dir,
                     rendered_hash=lambda v: renderer.render(v).inputs_hash,
                     skip_tests=skip_tests, allow_quick=allow_quick, retries=retries,
                     engine=engine, emit=Printer())
