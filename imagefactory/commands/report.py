"""imagefactory report: the compatibility matrix from the test results."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import ImagefactoryError
from ..paths import RESULTS_DIR
from ..safety import escape_control

REPORTS_DIR = Path("reports")  # result bundles from other hosts (the intake workflow's PRs)

if TYPE_CHECKING:
    from ..appstate import AppState


@click.command("report")
@click.option("--results", "results_dirs", type=click.Path(path_type=Path, file_okay=False),
              multiple=True, metavar="DIR",
              help="Folder of <variant>.json test results (repeatable, e.g. one per GPU "
                   f"host). Default: {RESULTS_DIR}")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None,
              help="Where COMPATIBILITY.md, compatibility.json and compatibility.png go. "
                   "Default: the (first) results folder, beside the results it reads.")
@click.option("--reports", "reports_dirs",
              type=click.Path(path_type=Path, file_okay=False, exists=True),
              multiple=True, metavar="DIR",
              help="Folder of result bundles from other hosts (repeatable). Default: "
                   "reports/ when there is one.")
@click.option("--no-png", is_flag=True, help="Skip the heatmap picture.")
@click.option("--no-site", is_flag=True,
              help="Skip the static compatibility site (OUT/site/index.html and its pages).")
@click.pass_obj
def command(state: AppState, results_dirs: tuple[Path, ...], out_dir: Path | None,
            reports_dirs: tuple[Path, ...], no_png: bool, no_site: bool) -> None:
    """Write the compatibility report: each tested variant against each conv check case,
    with the class of every cell (ok, hang, aperture-violation, ...) and its time, the GPU
    and profile each result came from, and a summary line per variant."""
    from ..report import merge
    from ..report import writer as report

    dirs = list(results_dirs) or [RESULTS_DIR]
    # Order rows as the matrix does when there is one; results of other variants still show.
    try:
        matrix = state.project.matrix
        order = matrix.names
    except ImagefactoryError:  # a report needs only the results, not a loadable matrix
        matrix, order = None, ()
    compat = report.load(dirs, order)
    out = out_dir or dirs[0]
    reports = list(reports_dirs) or ([REPORTS_DIR] if REPORTS_DIR.is_dir() else [])
    counted = merge.collect(dirs, reports)
    merged = merge.to_json(counted)
    for path in report.write(compat, out, png=not no_png, extra=merged,
                             extra_md=merge.markdown(merged)):
        click.echo(escape_control(f"written: {path}"))
    if not no_site:
        from ..report import site

        written = site.build_and_write(compat, out / site.SITE_DIR, report.now(), matrix,
                                       counted)
        click.echo(escape_control(f"written: {out / site.SITE_DIR / 'index.html'} "
                                  f"({len(written)} files)"))
    for row in compat.rows:  # text from result files: no terminal control gets through
        click.echo(escape_control(f"  {row.label}: {row.summary()}"))
    for group in merged["groups"]:
        click.echo(escape_control(f"  {group['variant']} on {group['gpu']}: {group['hosts']} "
                                  f"host(s), {group['runs']} run(s): {group['verdict']}"))
    for line in merged["kept_out"]:
        click.echo(escape_control(f"  {line}"))
