"""The case list: stable ids, pure data (no torch), so the parent and host tests can use it.

Choice of the Conv2d cross-product (all 3x3/64 channels/64x64 unless the sweep says else,
batch 2, padding k//2 unless "p0"; each forward (fwd) and forward+backward (bwd)):
  kernel sweep   k1, k3, k5, k7
  size sweep     32x32, 64x64, 128x128, 224x224
  channel sweep  16, 32, 64, 128 (in = out)
  field repro    16 -> 32 channels at 32x32 (reported to work) and 64x64 (reported to hang)
  variations     stride 2 (s2), no padding (p0), dilation 2 (d2), groups 4 (g4), depthwise (dw)
  ResNet stem    7x7, 3 -> 64 channels, stride 2 at 224x224
Every sweep passes through k3-c64-64x64, so one failing axis shows up as one failing sweep
instead of a full k x size x channel product (4 x 4 x 4 x 2 = 128 cases, too slow per child).
Plus Conv1d, Conv3d, ConvTranspose2d and sanity ops (matmul, Linear, BatchNorm2d, pooling)
that tell a broken convolution apart from a broken GPU.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Any

CONV_OPS = ("conv1d", "conv2d", "conv3d", "convtranspose2d")


@dataclass(frozen=True)
class Case:
    id: str
    op: str
    backward: bool
    quick: bool
    args: dict[str, Any] = field(default_factory=dict, compare=False)


# Ids of the --quick subset (all still in the full list): the field repro pair, the common
# 3x3 case both ways, a 1x1 case and a matmul that separates "no GPU math" from "no conv".
QUICK = frozenset(
    {
        "conv2d-k3-c16to32-32x32-fwd",
        "conv2d-k3-c16to32-64x64-fwd",
        "conv2d-k3-c64-64x64-fwd",
        "conv2d-k3-c64-64x64-bwd",
        "conv2d-k1-c64-64x64-fwd",
        "matmul-512-fwd",
    }
)


def _chan(cin: int, cout: int) -> str:
    return f"c{cin}" if cin == cout else f"c{cin}to{cout}"


def _both(base: str, op: str, args: dict[str, Any]) -> list[Case]:
    return [
        Case(f"{base}-{kind}", op, kind == "bwd", f"{base}-{kind}" in QUICK, args)
        for kind in ("fwd", "bwd")
    ]


def _conv2d(k: int, cin: int, cout: int, hw: int, tag: str = "", **kw: int) -> list[Case]:
    args = {"batch": 2, "cin": cin, "cout": cout, "size": (hw, hw), "kernel": k,
            "stride": 1, "padding": k // 2, "dilation": 1, "groups": 1}
    args.update(kw)
    if args["dilation"] > 1 and "padding" not in kw:
        args["padding"] = args["dilation"] * (k - 1) // 2
    base = f"conv2d-k{k}-{_chan(cin, cout)}-{hw}x{hw}" + (f"-{tag}" if tag else "")
    return _both(base, "conv2d", args)


def _build() -> list[Case]:
    specs: list[tuple[int, int, int, int, str, dict[str, int]]] = []
    specs += [(k, 64, 64, 64, "", {}) for k in (1, 3, 5, 7)]
    specs += [(3, 64, 64, hw, "", {}) for hw in (32, 128, 224)]
    specs += [(3, c, c, 64, "", {}) for c in (16, 32, 128)]
    specs += [(3, 16, 32, hw, "", {}) for hw in (32, 64)]
    specs += [
        (3, 64, 64, 64, "s2", {"stride": 2}),
        (3, 64, 64, 64, "p0", {"padding": 0}),
        (3, 64, 64, 64, "d2", {"dilation": 2}),
        (3, 64, 64, 64, "g4", {"groups": 4}),
        (3, 64, 64, 64, "dw", {"groups": 64}),
        (7, 3, 64, 224, "s2", {"stride": 2}),
    ]
    cases: list[Case] = []
    for k, cin, cout, hw, tag, kw in specs:
        cases += _conv2d(k, cin, cout, hw, tag, **kw)
    conv = {"stride": 1, "dilation": 1, "groups": 1}
    cases += _both("conv1d-k3-c64-1024", "conv1d",
                   dict(conv, batch=2, cin=64, cout=64, size=(1024,), kernel=3, padding=1))
    cases += _both("conv3d-k3-c16-16x32x32", "conv3d",
                   dict(conv, batch=2, cin=16, cout=16, size=(16, 32, 32), kernel=3, padding=1))
    cases += _both("convtranspose2d-k4-c64to32-32x32-s2", "convtranspose2d",
                   dict(conv, batch=2, cin=64, cout=32, size=(32, 32), kernel=4, padding=1,
                        stride=2))
    cases += _both("matmul-512", "matmul", {"m": 512, "k": 512, "n": 512})
    cases += _both("linear-256to512", "linear", {"batch": 64, "fin": 256, "fout": 512})
    cases += _both("batchnorm2d-c64-64x64", "batchnorm2d", {"batch": 2, "c": 64, "size": (64, 64)})
    for pool in ("maxpool2d", "avgpool2d"):
        cases += _both(f"{pool}-k2-c64-64x64", pool,
                       {"batch": 2, "c": 64, "size": (64, 64), "kernel": 2})
    return cases


CASES: tuple[Case, ...] = tuple(_build())
BY_ID: dict[str, Case] = {c.id: c for c in CASES}


def select(quick: bool = False, globs: str | None = None) -> list[Case]:
    """Cases in list order: the quick subset if asked, filtered by comma-separated globs."""
    chosen = [c for c in CASES if c.quick or not quick]
    if globs:
        patterns = [g.strip() for g in globs.split(",") if g.strip()]
        chosen = [c for c in chosen if any(fnmatch.fnmatchcase(c.id, p) for p in patterns)]
    return chosen


def conv_out_size(size: int, k: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def flops(case: Case) -> float | None:
    """Analytic FLOPs (multiply + add = 2) of one timed call; None for memory-bound ops.
    A backward case times forward + backward: input and weight gradients each cost a
    forward's worth, so 3x."""
    a = case.args
    if case.op in ("conv1d", "conv2d", "conv3d"):
        out = [conv_out_size(s, a["kernel"], a["stride"], a["padding"], a["dilation"])
               for s in a["size"]]
        per_out = (a["cin"] // a["groups"]) * a["kernel"] ** len(a["size"])
        fwd = 2.0 * a["batch"] * a["cout"] * math.prod(out) * per_out
    elif case.op == "convtranspose2d":
        fwd = (2.0 * a["batch"] * a["cin"] * math.prod(a["size"])
               * (a["cout"] // a["groups"]) * a["kernel"] ** 2)
    elif case.op == "matmul":
        fwd = 2.0 * a["m"] * a["k"] * a["n"]
    elif case.op == "linear":
        fwd = 2.0 * a["batch"] * a["fin"] * a["fout"]
    else:
        return None
    return 3 * fwd if case.backward else fwd
