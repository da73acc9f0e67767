"""Which variant fits the card: a name given as a family with one variant per ISA (therock)
resolves to the one built for the host's GPU, and a variant built for another RDNA1 ISA
says so before it runs there.

RDNA1 has two ISAs in the wild: gfx1010 (Navi10: RX 5600 XT / 5700 / 5700 XT) and gfx1012
(Navi14: RX 5500 / 5500 XT). Code objects are per ISA: an image that carries only gfx1010
code and runs without the gfx1030 override finds no kernel on a gfx1012 card.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UsageError
from ..matrix.loader import Matrix, Variant, suggest


@dataclass(frozen=True)
class Pick:
    variant: Variant
    note: str | None = None  # one line for the user, when the pick needs explaining


def _newest_first(v: Variant) -> tuple[int, ...]:
    return tuple(-int(p) if p.isdigit() else 0 for p in (v.rocm or "0").split("."))


def resolve(matrix: Matrix, name: str, host_isas: Sequence[str]) -> Pick:
    """`name` as a variant, or as a family whose variants each target one ISA: then the one
    built for the (first) host GPU's ISA. A family without a variant for the card, or with
    no AMD GPU to choose by, is a usage error naming the variants to choose from."""
    if name in matrix.names:
        return Pick(matrix.get(name))
    family = [v for v in matrix.variants if v.family == name]
    if not family:
        families = sorted({v.family for v in matrix.variants} - set(matrix.names))
        close = difflib.get_close_matches(name, [*matrix.names, *families], n=1, cutoff=0.5)
        if close and close[0] in families:
            raise UsageError(f"unknown variant '{name}'{suggest(name, close)}")
        matrix.get(name)  # the matrix's own error: unknown variant, with its suggestion
    choices = ", ".join(v.name for v in family)
    if not host_isas:
        raise UsageError(f"'{name}' is a family ({choices}); no AMD GPU found to pick by: "
                         "name the variant")
    isa = host_isas[0]
    # The newest ROCm first: the family's newest release line is the one to run (doctor's
    # order too); equal versions keep the matrix order.
    fits = sorted((v for v in family if isa in v.gfx_targets), key=_newest_first)
    if not fits:
        raise UsageError(f"no {name} variant carries {isa} code (choose from {choices})")
    return Pick(fits[0], f"{name} on this {isa} card: {fits[0].name}")


def isa_mismatch(matrix: Matrix, variant: Variant, host_isas: Sequence[str],
                 profile: str | None = None) -> str | None:
    """One line when `variant` carries code only for other ISAs than the card's and runs
    without the override; names the variant built for the card if there is one."""
    if not host_isas or not variant.gfx_targets or variant.uses_override(profile):
        return None
    isa = host_isas[0]
    if isa in variant.gfx_targets:
        return None
    better = [v.name for v in matrix.variants
              if isa in v.gfx_targets and v.family == variant.family]
    better = better or [v.name for v in matrix.variants
                        if isa in v.gfx_targets and not v.uses_override()]
    hint = f": use {better[0]}" if better else ""
    return (f"{variant.name} carries {', '.join(variant.gfx_targets)} code only and this card "
            f"is {isa}; expect 'no-kernel' failures{hint}")
