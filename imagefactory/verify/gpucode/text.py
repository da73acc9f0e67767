"""Plain-text rendering of an inventory, for `imagefactory audit` and `doctor`."""

from __future__ import annotations

from .model import KDB, TENSILE, Inventory


def format_inventory(inv: Inventory, isas: tuple[str, ...] = ()) -> str:
    """One line per library (targets with their code object / file counts), then totals,
    the per-ISA summary for `isas`, notes and problems."""
    lines = [f"GPU code in {inv.source}: {len(inv.libraries)} libraries, "
             f"{inv.files_seen} files looked at"]
    width = max((len(lib.name) for lib in inv.libraries), default=0)
    for lib in inv.libraries:
        parts = []
        for target in lib.targets:
            files = [f for f in lib.files if target in f.targets]
            tensile = sum(1 for f in files if f.kind == TENSILE)
            kdb = sum(1 for f in files if f.kind == KDB)
            code = sum(f.targets[target] for f in files if f.kind not in (TENSILE, KDB))
            counts = [c for c in (_n(code, "code object"), _n(tensile, "Tensile file"),
                                  _n(kdb, "kernel database")) if c]
            parts.append(f"{target} ({', '.join(counts)})")
        kinds = ",".join(lib.kinds) or "no device code"
        lines.append(f"  {lib.name:<{width}}  [{kinds}]  " + ("; ".join(parts) or "-"))
    totals = inv.totals()
    if totals:
        lines.append("totals: " + ", ".join(
            f"{t}: {row['libraries']} libraries" for t, row in totals.items()))
    lines.extend(inv.summary(isa) for isa in isas)
    lines.extend(f"note: {n}" for isa in isas for n in inv.notes(isa))
    lines.extend(f"problem: {p}" for p in inv.problems)
    return "\n".join(lines)


def _n(count: int, what: str) -> str:
    return f"{count} {what}{'s' if count != 1 else ''}" if count else ""
