"""imagefactory test: the testinfra suite and the conv check in each variant's image."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import JobError, UsageError
from ..paths import RESULTS_DIR
from ._params import Seconds

# Docker's stage names: a letter, then letters, digits, '_', '.', '-'.
_STAGE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,127}")

if TYPE_CHECKING:
    from ..appstate import AppState


@click.command("test")
@click.argument("variants", nargs=-1, required=True)
@click.option("--device", "devices", multiple=True, metavar="HOST[:CONTAINER]",
              help="A device to pass instead of the /dev/kfd and /dev/dri/renderD* found on "
                   "this host (repeatable).")
@click.option("--profile", default=None, metavar="NAME",
              help="Env profile to run under (default: the variant's default profile).")
@click.option("--quick", is_flag=True, help="Run the conv check's quick case set.")
@click.option("--timeout", type=Seconds(), default=None, metavar="S",
              help="Seconds each conv case may take before it counts as a hang.")
@click.option("--cases", default=None, metavar="GLOB",
              help="Only the conv cases whose names match (e.g. 'conv2d-k3-*').")
@click.option("--cold", is_flag=True,
              help="Empty the MIOpen kernel cache and find-db volume kept for each image on "
                   "this host first, as on a first run (kernels compile again).")
@click.option("--results", "results_dir", type=click.Path(path_type=Path, file_okay=False),
              default=RESULTS_DIR, show_default=True,
              help="Where <variant>.json results are written.")
@click.option("--target", default=None, metavar="STAGE",
              help="Test the image `imagefactory build --target STAGE` made "
                   "(<repository>:<variant>-<STAGE>): only the checks that apply to that "
                   "stage; its result goes to <results>/stages/.")
@click.option("--suite-args", default=None, metavar="ARGS",
              help="Run the testinfra suite by hand: these pytest options (-k EXPR, -x, "
                   "--pdb, -v, --tb=STYLE, ...) and its output as it runs; the result goes "
                   "to <results>/debug/.")
@click.option("--engine", default=None, metavar="URL",
              help="Docker engine (default: DOCKER_HOST or the current docker context).")
@click.option("--run-id", default=None, hidden=True, envvar="IMAGEFACTORY_RUN_ID",
              help="Label value (io.imagefactory.run) for this run's containers.")
@click.pass_obj
def command(state: AppState, variants: tuple[str, ...], devices: tuple[str, ...],
            profile: str | None,
            quick: bool, timeout: float | None, cases: str | None, cold: bool,
            results_dir: Path, target: str | None, suite_args: str | None,
            engine: str | None, run_id: str | None) -> None:
    """Test built images: start each with the GPU devices passed through, run the testinfra
    suite and the conv check in it, write <results>/<variant>.json. Exit 0 only when every
    check and every conv case of every variant passed."""
    from ..verify.run import test_variants
    from ..verify.tester import TestOptions
    from ._render import Printer

    if target is not None and not _STAGE.fullmatch(target):
        raise UsageError(f"--target {target!r}: a stage name is letters, digits, '_', '.' "
                         "and '-', starting with a letter")
    by_hand: tuple[str, ...] = ()
    if suite_args is not None:
        from ..verify.suite.plugin import suite_args as checked

        by_hand = checked(suite_args)
        if not by_hand:
            raise UsageError("--suite-args: give at least one pytest option (like -v)")
    options = TestOptions(profile=profile, quick=quick, timeout=timeout, cases=cases, cold=cold,
                          results_dir=results_dir, engine=engine, run_id=run_id, target=target,
                          suite_args=by_hand)
    results = test_variants(state.project, variants, options, devices=devices, emit=Printer())
    failed = []
    for result in results:
        if not result.passed:
            what = [c.name for c in result.failed_checks if c.name != "conv check"]
            what += [f"conv {c.case}: {c.status}" for c in result.regressions]
            if not what:
                what = [c.detail for c in result.failed_checks]
            failed.append(f"{result.variant} ({'; '.join(what)})")
    if failed:
        raise JobError(f"{len(failed)} of {len(results)} variant(s) failed: {', '.join(failed)}")
