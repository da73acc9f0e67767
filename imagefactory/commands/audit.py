"""imagefactory audit: which GPU targets the code in an image or a folder is built for."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import JobError, UsageError


@click.command("audit")
@click.argument("target", metavar="IMAGE|PATH")
@click.option("--isa", "isas", multiple=True, metavar="GFX",
              help="Check that the libraries carry code for this ISA, e.g. gfx1010 or "
                   "gfx1010:xnack- (repeatable). Exit 1 naming each library that does not.")
@click.option("--need", "needed", multiple=True, metavar="LIB",
              help="With --isa: the libraries to check (e.g. torch, rocblas; repeatable). "
                   "Default: every library that carries device code.")
@click.option("--json", "as_json", is_flag=True,
              help="Machine-readable output: every file, its library and targets.")
@click.option("--engine", default=None, metavar="URL",
              help="Docker engine for an IMAGE (default: DOCKER_HOST or the docker context).")
def command(target: str, isas: tuple[str, ...], needed: tuple[str, ...], as_json: bool,
            engine: str | None) -> None:
    """List the GPU code in an image (IMAGE: name:tag or id, read through `docker export`
    without unpacking it) or a folder on this host (PATH: e.g. a torch/lib): per library the
    gfx targets of its fat binaries, code objects, Tensile files and MIOpen kernel databases,
    and totals per target. No GPU and no ROCm needed."""
    from ..verify.gpucode.audit import audit_path, audit_tar
    from ..verify.gpucode.check import check_inventory
    from ..verify.gpucode.errors import MalformedInput
    from ..verify.gpucode.model import REQUIRED_KINDS
    from ..verify.gpucode.reader import chunk_stream
    from ..verify.gpucode.targets import parse_target_id
    from ..verify.gpucode.text import format_inventory

    for isa in isas:
        try:
            parse_target_id(isa)
        except MalformedInput:
            raise UsageError(f"--isa {isa}: not a GPU target (expected e.g. gfx1010, "
                             "gfx1010:xnack-, gfx10-1-generic)") from None
    if needed and not isas:
        raise UsageError("--need takes effect with --isa: give the ISA to check for")
    path = Path(target)
    if path.exists() or not _looks_like_image(target):
        inv = audit_path(path)
    else:
        from ..engine.docker_engine import open_engine
        from ..engine.export import image_filesystem

        with image_filesystem(open_engine(engine), target) as chunks:
            inv = audit_tar(chunk_stream(chunks), target)
    result = None
    if isas:
        libs = needed or tuple(lib.name for lib in inv.libraries
                               if set(lib.kinds) & set(REQUIRED_KINDS))
        result = check_inventory(inv, isas, libs)
    if as_json:
        out = {"inventory": inv.to_dict()}
        if result is not None:
            out["check"] = result.to_dict()
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(format_inventory(inv, isas))
    if result is not None and not result.passed:
        n = len(result.failures)
        raise JobError(f"{n} librar{'ies' if n != 1 else 'y'} without code for "
                       f"{', '.join(isas)}: {'; '.join(result.failures)}")


def _looks_like_image(ref: str) -> bool:
    """`registry:5000/repo/name:tag` has a slash but is no path on this host."""
    return not ref.startswith(("/", "./", "../", "~"))
