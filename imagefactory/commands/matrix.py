"""imagefactory matrix: the CI build matrix, one job per variant."""

from __future__ import annotations

import json

import click

from ..render.ghmatrix import RUNNER, SOURCE_TIMEOUT_MINUTES, TIMEOUT_MINUTES


@click.command("matrix")
@click.argument("variants", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text",
              show_default=True,
              help="github: one line of JSON for `strategy.matrix` ({\"include\": [...]}).")
@click.option("--runner", default=RUNNER, show_default=True,
              help="Runner label for variants that install prebuilt packages.")
@click.option("--large-runner", default=RUNNER, show_default=True,
              help="Runner label for variants that compile (ROCm libraries, PyTorch, MIOpen).")
@click.option("--timeout", type=click.IntRange(1), default=TIMEOUT_MINUTES, show_default=True,
              help="Job timeout in minutes for prebuilt-package variants.")
@click.option("--source-timeout", type=click.IntRange(1), default=SOURCE_TIMEOUT_MINUTES,
              show_default=True, help="Job timeout in minutes for variants that compile.")
@click.option("--gpu-only", is_flag=True,
              help="Only ROCm variants (the jobs for an AMD GPU test runner).")
@click.pass_obj
def command(state, variants: tuple[str, ...], fmt: str, runner: str, large_runner: str,
            timeout: int, source_timeout: int, gpu_only: bool) -> None:
    """Print the build matrix: each variant with its runner, timeout, and whether it is a
    source build. Default: every variant of variants.yaml."""
    from ..render.ghmatrix import github, jobs

    found = jobs(state.project, state.project.variants(variants), runner, large_runner,
                 timeout, source_timeout)
    if fmt == "github":
        # One line: the workflow writes it to $GITHUB_OUTPUT as `matrix=<this>`.
        click.echo(json.dumps(github(found, gpu_only), separators=(",", ":")))
        return
    found = [j for j in found if j.gpu or not gpu_only]
    if fmt == "json":
        click.echo(json.dumps([j.to_github() for j in found], indent=2))
        return
    from ._table import print_table

    print_table(["variant", "runner", "timeout", "source build", "GPU test"],
                [[j.variant, j.runner, f"{j.timeout_minutes} min",
                  "yes" if j.source_build else "no", "yes" if j.gpu else "no"] for j in found])
