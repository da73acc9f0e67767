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
@click.option("--attest", is_flag=True,
              help="Sign the bundle's Test Result predicate with cosign (--key, the password in "
                   "COSIGN_PASSWORD) and attach it to the published image digest it names. "
                   "TARGET: a bundle file, or a VARIANT (its bundle is made first).")
@click.option("--verify", is_flag=True,
              help="Read the attestations on the bundle's published digest with cosign "
                   "(--key: the public key) and check one carries exactly this bundle's "
                   "predicate. TARGET: a bundle file, or a VARIANT's bundle in --results.")
@click.option("--key", "key", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, help="cosign key: the private key with --attest, the public key "
                                 "with --verify.")
@click.pass_obj
def command(state: AppState, target: str, results_dir: Path, out: Path | None, show: bool,
            check: bool, attest: bool, verify: bool, key: Path | None) -> None:
    """Make the result bundle of a test result (a VARIANT's in --results, or a result
    file): an in-toto Statement naming the image digest that was tested, the Test Result
    predicate, every case, and this host's hardware facts (no hostname, user, path or
    serial). Nothing is sent: the command says how to send it. A maintainer's runner signs
    bundles of published images into the registry with --attest; --verify reads them back."""
    from ..publish import attest as attesting
    from ..share import bundle as bundles
    from ..share import reader
    from ..share.run import make_for
    from ..verify.results import TestResult

    if sum((check, attest, verify)) > 1:
        raise UsageError("give one of --check, --attest and --verify")
    if (attest or verify) != (key is not None):
        raise UsageError("--key goes with --attest (the private key) or --verify (the public "
                         "key), and they need it")
    is_file = target.endswith(".json") or "/" in target
    if verify or (attest and is_file):
        assert key is not None
        found = reader.load(Path(target) if is_file else _variant_bundle(results_dir, target))
        if verify:
            done = attesting.verify(found, key)
            read = done.attested
            others = f", {len(read.refused)} not a result bundle" if read.refused else ""
            click.echo(escape_control(
                f"verified: {found.source}: the predicate attested on "
                f"{done.image.reference} (signed by {key}) is this bundle's "
                f"({len(read.bundles)} result bundle(s) attested there{others})"))
        else:
            _attested(attesting.attest(found, key).reference, found.source, key)
        return
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
    if attest:
        assert key is not None
        made = reader.from_text(bundles.to_json(data), str(written))
        _attested(attesting.attest(made, key).reference, str(written), key)
        return
    click.echo("nothing was sent. To send it: look it over (`imagefactory share "
               f"{escape_control(target)} --print`), then open {ISSUE_FORM} and paste the "
               "file into the form; a maintainer's workflow checks it and proposes it for "
               "reports/.")


def _variant_bundle(results_dir: Path, variant: str) -> Path:
    """A VARIANT's bundle in --results: the full run's, else the quick or subset one."""
    from ..share.bundle import bundle_path

    for scope in ("full", "quick", "subset"):
        path = bundle_path(results_dir, variant, scope)
        if path.is_file():
            return path
    raise JobError(f"no bundle of {variant} in {results_dir / 'bundles'}: make it with "
                   f"`imagefactory share {variant}`")


def _attested(reference: str, source: str, key: Path) -> None:
    click.echo(escape_control(f"attested: {source} on {reference} (signed with {key}; no "
                              "transparency log entry)"))
    click.echo(escape_control(f"check it: imagefactory share {source} --verify --key "
                              "<the public key>"))
