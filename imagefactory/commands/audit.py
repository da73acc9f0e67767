"""imagefactory audit: which GPU targets the code in an image or a folder is built for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import JobError, UsageError

if TYPE_CHECKING:
    from ..verify.gpucode.isa import IsaReport


@click.command("audit")
@click.argument("target", metavar="IMAGE|PATH")
@click.option("--isa", "isas", multiple=True, metavar="GFX",
              help="Check that the libraries carry code for this ISA, e.g. gfx1010 or "
                   "gfx1010:xnack- (repeatable). Exit 1 naming each library that does not.")
@click.option("--need", "needed", multiple=True, metavar="LIB",
              help="With --isa: the libraries to check (e.g. torch, rocblas; repeatable). "
                   "Default: every library that carries device code.")
@click.option("--chip", "chips", multiple=True, metavar="GFX",
              help="Instruction check: disassemble the code this RDNA1 chip (gfx1010, gfx1011, "
                   "gfx1012) loads under the profile, as its own target and as the chip, and "
                   "name every instruction the chip cannot decode (repeatable; needs Debian's "
                   "llvm-objdump). Exit 1 when one does not decode or no code object was read.")
@click.option("--override", metavar="VERSION", default=None,
              help="With --chip: the profile sets HSA_OVERRIDE_GFX_VERSION=VERSION (10.3.0: "
                   "the card loads gfx1030 code). Default: none, the chip's own code.")
@click.option("--json", "as_json", is_flag=True,
              help="Machine-readable output: every file, its library and targets.")
@click.option("--engine", default=None, metavar="URL",
              help="Docker engine for an IMAGE (default: DOCKER_HOST or the docker context).")
def command(target: str, isas: tuple[str, ...], needed: tuple[str, ...],
            chips: tuple[str, ...], override: str | None, as_json: bool,
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
    if override and not chips:
        raise UsageError("--override takes effect with --chip: give the chip to check for")
    from ..verify.gpucode.check import isa_from_override
    from ..verify.gpucode.isa import check_chip

    for chip in chips:
        check_chip(chip)
    if override:
        isa_from_override(override)
    path = Path(target)
    local = path.exists() or not _looks_like_image(target)
    if local:
        inv = audit_path(path)
    else:
        from ..engine.docker_engine import open_engine
        from ..engine.export import image_filesystem

        with image_filesystem(open_engine(engine), target) as chunks:
            inv = audit_tar(chunk_stream(chunks), target)
    if isas and not any(lib.targets for lib in inv.libraries):
        # Nothing read is no pass: an empty folder, or a link the audit did not follow.
        raise JobError(f"{target}: no GPU code object read ({inv.files_seen} files looked "
                       f"at): nothing to check for {', '.join(isas)}")
    reports = [_isa_report(target, local, chip, override, engine) for chip in chips]
    result = None
    if isas:
        libs = needed or tuple(lib.name for lib in inv.libraries
                               if set(lib.kinds) & set(REQUIRED_KINDS))
        result = check_inventory(inv, isas, libs)
    if as_json:
        out: dict[str, Any] = {"inventory": inv.to_dict()}
        if result is not None:
            out["check"] = result.to_dict()
        if reports:
            out["instructions"] = [r.to_dict() for r in reports]
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(format_inventory(inv, isas))
        for r in reports:
            click.echo("\n".join(r.lines()))
    if result is not None and not result.passed:
        n = len(result.failures)
        raise JobError(f"{n} librar{'ies' if n != 1 else 'y'} without code for "
                       f"{', '.join(isas)}: {'; '.join(result.failures)}")
    for r in reports:
        if r.status == "skipped":
            raise JobError(f"instruction check for {r.chip} skipped: {r.skipped}")
        if r.status != "pass":
            raise JobError(f"{r.profile} on {r.chip}: {'; '.join(r.failures())}")


def _isa_report(target: str, local: bool, chip: str, override: str | None,
                engine: str | None) -> IsaReport:
    """The instruction check of one chip: the code objects streamed out of the folder or the
    image (read again: an export is one pass) and disassembled as they come."""
    from ..verify.gpucode import codeobjects
    from ..verify.gpucode.isa import find_objdump, loaded_isa, run_check, wanted

    want = wanted(loaded_isa(chip, override))
    problems: list[str] = []
    if find_objdump() is None or local:
        cos = codeobjects.in_path(Path(target), want, problems) if local else iter(())
        return run_check(cos, target, chip, override, problems)
    from ..engine.docker_engine import open_engine
    from ..engine.export import image_filesystem
    from ..verify.gpucode.reader import chunk_stream

    with image_filesystem(open_engine(engine), target) as chunks:
        cos = codeobjects.in_tar(chunk_stream(chunks), want, problems, target)
        return run_check(cos, target, chip, override, problems)


def _looks_like_image(ref: str) -> bool:
    """`registry:5000/repo/name:tag` has a slash but is no path on this host."""
    return not ref.startswith(("/", "./", "../", "~"))
