"""imagefactory list: the matrix, one line per variant."""

from __future__ import annotations

import json

import click


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def command(state, as_json: bool) -> None:
    """Show the variant matrix: name, ROCm, torch, GPU targets, base image."""
    rows = []
    for v in state.project.variants():
        rows.append({
            "name": v.name,
            "family": v.family,
            "rocm": v.rocm,
            "torch": v.torch.version,
            "torch_source": v.torch.source,
            "gfx_targets": list(v.gfx_targets),
            "base": v.base.ref if v.base else f"variant:{v.base_variant}",
            "profiles": [p.name for p in v.profiles],
            "default_profile": v.default_profile.name if v.default_profile else None,
            "description": v.description,
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from ._table import print_table

    print_table(
        ["variant", "ROCm", "torch", "targets", "base"],
        [[r["name"], r["rocm"] or "-", f'{r["torch"]} ({r["torch_source"]})',
          ",".join(r["gfx_targets"]) or "cpu", r["base"]] for r in rows],
    )
