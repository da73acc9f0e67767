"""imagefactory share: the result bundle of a test run, to send back (or check one)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import ImagefactoryError, JobError, UsageError
from ..paths import RESULTS_DIR
from ..safety import escape_control

if TYPE_CHECKING:
    from ..appstate import AppState

ISSUE_FORM = ("https://github.com/imagefactory/imagefactory/issues/new"
              "?template=result-bundle.yml")


@click.command("share")
@click.argument("target", metavar="VARIANT|RESULT_FILE|BUNDLE")
@click.option("--results", "results_dir", type=click.Path(path_type=Path, file_okay=False),
              default=RESULTS_DIR, show_default=True,
              help="Where the test results are (for a VARIANT).")
@click.option("--out", "out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where the bundle goes. Default: <results>/bundles/<variant>.json. With "
                   "--check: write the checked bundle there, re-serialized.")
@click.option("--print", "show", is_flag=True,
              help="Print the whole bundle: exactly what would be sent.")
@click.option("--check", is_flag=True,
              help="TARGET is a bundle: read it strictly, print one line (exit 2 if it is not "
                   "a valid bundle).")
@click.pass_obj
def command(state: AppState, target: str, results_dir: Path, out: Path | None, show: bool,
            check: bool) -> None:
    """Make the result bundle of a test result (a VARIANT's in --results, or a result
    file): an in-toto Statement naming the image digest that was tested, the Test Result
    predicate, every case, and this host's hardware facts (no hostname, user, path or
    serial). Nothing is sent: the command says how to send it."""
    from ..share import bundle as bundles
    from ..share import reader
    from ..share.run import make_for
    from ..verify.results import TestResult

    if check:
        found = reader.load(Path(target))
        ours = found.ours
        gpus = ours["host"]["gpus"]
        gpu = (gpus[0]["name"] or gpus[0]["pci"]["device"]) if gpus else "no AMD GPU"
        click.echo(escape_control(
            f"ok: {target}: {ours['variant']} ({found.kind} {found.digest[:19]}) on {gpu}: "
            f"{found.result}, {len(ours['cases'])} case(s), host {found.host_id[:12]}"))
        if out is not None:
            bundles.write(found.data, out)
            click.echo(escape_control(f"written: {out}"))
        if show:
            # The reader refused every control character: the text prints as it is.
            click.echo(bundles.to_json(found.data), nl=False)
        return
    path = Path(target)
    if target.endswith(".json") or "/" in target:
        result = TestResult.load_path(path)
        if result is None:
            raise UsageError(f"{target}: no such result file")
        results_dir = path.parent
    else:
        result = (TestResult.load(results_dir, target)
                  or TestResult.load(results_dir, target, "quick")
                  or TestResult.load(results_dir, target, "subset"))
        if result is None:
            raise JobError(f"no result of {target} in {results_dir}: run `imagefactory test "
                           f"{target}` first")
    try:
        variant = state.project.matrix.get(result.variant)
    except ImagefactoryError:  # a result of a variant this matrix lacks: no declared env
        variant = None
    data = make_for(result, results_dir, variant)
    # What we write must pass our own reader: a bundle the intake would refuse never leaves.
    reader.from_text(bundles.to_json(data), "the bundle made")
    written = bundles.write(data, out or bundles.bundle_path(results_dir, result.variant,
                                                             result.scope))
    if show:
        click.echo(bundles.to_json(data), nl=False)
    click.echo(escape_control(f"written: {written} ({data['predicate']['result']}, subject "
                              f"{data['subject'][0]['name']}@sha256:"
                              f"{data['subject'][0]['digest']['sha256'][:12]})"))
    click.echo("nothing was sent. To send it: look it over (`imagefactory share "
               f"{escape_control(target)} --print`), then open {ISSUE_FORM} and paste the "
               "file into the form; a maintainer's workflow checks it and proposes it for "
               "reports/.")
