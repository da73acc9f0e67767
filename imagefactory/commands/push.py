"""imagefactory push: publish tested images to a registry, verified and recorded."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import JobError


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
              default=Path("results"), show_default=True,
              help="Where `imagefactory test` wrote its results; the publish record "
                   "<variant>.publish.json goes there too.")
@click.option("--engine", metavar="URL", default=None,
              help="Docker engine address. Default: DOCKER_HOST, else the docker context.")
@click.option("--retries", type=click.IntRange(0, 10), default=3, show_default=True,
              help="Retries (with doubling waits) after a transient registry failure.")
@click.pass_obj
def command(state, variants: tuple[str, ...], registry: str, username: str | None,
            password_stdin: bool, skip_tests: bool, allow_quick: bool, results_dir: Path,
            engine: str | None, retries: int) -> None:
    """Push VARIANT images that passed `imagefactory test` to a registry.

    Each image gets three tags: <variant>, <variant>-<inputs hash> and
    <rocm..-torch..-gfx..>-<variant>. Prints `repo:tag repo@digest` per tag after checking
    the registry serves that digest, and writes <results>/<variant>.publish.json.
    """
    from ..engine.docker_engine import connect
    from ..publish import credentials
    from ..publish.publisher import Publisher, plan
    from ..publish.registry import Target

    def info(line: str) -> None:
        click.echo(line, err=True)

    target = Target.parse(registry)
    chosen = state.select(variants)
    creds = credentials.resolve(target, username, password_stdin, sys.stdin)
    client = connect(engine)
    matrix = state.project.matrix

    # Decide every variant before pushing any, so a refusal never leaves half a release.
    plans, refused = [], []
    for variant in chosen:
        try:
            plans.append(plan(client, matrix, variant, target, results_dir, skip_tests,
                              allow_quick))
        except JobError as exc:
            refused.append(str(exc))
    if len(refused) == 1:
        raise JobError(refused[0] + ("; nothing pushed" if len(chosen) > 1 else ""))
    if refused:
        for line in refused:
            info(f"imagefactory: {line}")
        raise JobError(f"{len(refused)} of {len(chosen)} variants cannot be published; "
                       "nothing pushed")

    publisher = Publisher(client, target, creds, results_dir, retries=retries, echo=info)
    for p in plans:
        if p.tests_skipped:
            info(f"imagefactory: warning: --skip-tests: publishing {p.variant.name} (image "
                 f"{p.built.short_id}) without checking its test result; it gets the tag "
                 f"{p.tags[-1]} and its publish record says tests_skipped: true")
        info(f"{p.variant.name}: pushing image {p.built.short_id} to {p.repository} as "
             f"{', '.join(p.tags)}")
        published = publisher.publish(p)
        for tag in p.tags:
            click.echo(f"{p.repository}:{tag} {published.reference}")
        info(f"{p.variant.name}: verified in the registry; record {published.record_path}")
