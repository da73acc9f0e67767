"""What a variant needs from its image's GPU code, and the check `imagefactory test` runs."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ...matrix.loader import override_in
from .errors import AuditUsageError
from .model import Inventory
from .targets import as_target

# The libraries a ROCm PyTorch image runs convolutions and matmuls through.
DEFAULT_NEEDED = ("torch", "rocblas", "miopen")
# Present is enough: without a kernel database for the ISA, MIOpen compiles its kernels at run
# time (a slow first use, not a failure).
RUNTIME_COMPILED = frozenset({"miopen"})
_OVERRIDE = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def isa_from_override(value: str) -> str:
    """HSA_OVERRIDE_GFX_VERSION (`10.3.0`) -> the ISA the runtime reports (`gfx1030`); the
    stepping is written in hex as in gfx90a (`9.0.10`)."""
    m = _OVERRIDE.fullmatch(value.strip())
    if not m:
        raise AuditUsageError(f"HSA_OVERRIDE_GFX_VERSION {value!r} is not MAJOR.MINOR.STEPPING")
    major, minor, stepping = (int(g) for g in m.groups())
    return f"gfx{major}{minor}{stepping:x}"


def runtime_isas(gfx_targets: Sequence[str], env: Mapping[str, str]) -> tuple[str, ...]:
    """The ISAs a variant's code must run as: the override's (gfx1030) when its environment
    sets HSA_OVERRIDE_GFX_VERSION, else its gfx_targets."""
    override = override_in(env)
    if override:
        return (isa_from_override(override),)
    for t in gfx_targets:
        as_target(t)  # a typo in gfx_targets is a usage error, not a silent pass
    return tuple(gfx_targets)


@dataclass(frozen=True)
class CodeCheck:
    """The outcome of the GPU code check for one image."""

    isas: tuple[str, ...]
    needed: tuple[str, ...]
    failures: tuple[str, ...]  # "hipblaslt: no gfx1010 code (tensile; it has gfx1100, ...)"
    summary: tuple[str, ...]  # one line per ISA: "gfx1010 code: torch yes, rocblas yes (...)"
    notes: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """JSON-shaped: lists, not tuples, so a saved result reads back equal."""
        return {"passed": self.passed,
                **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}}

    @property
    def detail(self) -> str:
        """One line for a result's check: the failures, else the summary."""
        return "; ".join(self.failures or self.summary)


def check_inventory(inv: Inventory, isas: Sequence[str],
                    needed: Sequence[str] = DEFAULT_NEEDED) -> CodeCheck:
    """Every needed library is there and carries code for every ISA (MIOpen: is there)."""
    failures: list[str] = []
    for isa in isas:
        for name in needed:
            lib = inv.library(name)
            if lib is None:
                failures.append(f"{name}: not found in {inv.source}")
            elif name not in RUNTIME_COMPILED:
                failures.extend(inv.missing([name], isa))
    notes = [n for isa in isas for n in inv.notes(isa)]
    return CodeCheck(tuple(isas), tuple(needed), tuple(dict.fromkeys(failures)),
                     tuple(inv.summary(isa) for isa in isas), tuple(dict.fromkeys(notes)))
