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

Beyond convolutions, what RDNA1 users are reported to break on (issue 16: TheRock issues
6467/7609, MIOpen issues 485/839/1528, jc1122/pytorch-gfx1010): fp16 Conv2d at batch 1, 2, 4
(one asm solver segfaults or hangs above batch 2), BatchNorm2d training with running stats
(DPP instructions invalid on gfx10), GroupNorm/LayerNorm, LSTM/GRU (MIOpen RNN), the hipcub
ops (nonzero, unique, cumsum, sort, topk) and atomics (scatter_add, index_put), attention
per SDPA backend at Stable Diffusion's shape (1 image, 8 heads of 40, 64x64 latent), fp16 and
bf16 matmul (hipBLASLt/rocBLAS), a ResNet-18 training step, an SD UNet block with attention
and an allocation sweep.

What RDNA1 users run in 2026 (issue 27: TheRock issues 7609/6467, ComfyUI 14868): models
through torch.compile, whose Triton kernels are reported to write nothing on gfx1010 (gray
images with Flux), so small fused graphs compiled by inductor are compared with eager on the
CPU (an elementwise chain, a matmul with a bias+GELU epilogue, a conv+ReLU, a softmax
attention block); int8 matmul (torch._int_mm, hipBLASLt on ROCm) and fp8 (torch._scaled_mm
on float8_e4m3fn), each `skipped` with the reason where the torch lacks the feature.
Each case has an `area`: the report's "what works" summary groups
cases by it, in the words users ask in.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Any

from convcheck import vocabulary

CONV_OPS = ("conv1d", "conv2d", "conv3d", "convtranspose2d")

# Areas, in the order the summary lists them, with the words users ask in (vocabulary.py).
AREAS = vocabulary.AREAS


@dataclass(frozen=True)
class Case:
    id: str
    op: str
    backward: bool
    quick: bool
    args: dict[str, Any] = field(default_factory=dict, compare=False)
    dtype: str = "float32"  # what the case computes in on the device under test
    area: str = "convolutions"


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
        "conv2d-fp16-k3-c64-64x64-b4-bwd",
        "batchnorm2d-train-c64-32x32-bwd",
        "lstm-l2-h128-seq32-bwd",
        "nonzero-1m-fwd",
        "sdpa-math-h8-s4096-d40-fwd",
        "matmul-fp16-1024-fwd",
        "compile-elementwise-64k-fwd",
        "int8-mm-256-fwd",
    }
)


def _chan(cin: int, cout: int) -> str:
    return f"c{cin}" if cin == cout else f"c{cin}to{cout}"


def _both(base: str, op: str, args: dict[str, Any], dtype: str = "float32",
          area: str = "convolutions", kinds: tuple[str, ...] = ("fwd", "bwd")) -> list[Case]:
    return [
        Case(f"{base}-{kind}", op, kind != "fwd", f"{base}-{kind}" in QUICK, args, dtype, area)
        for kind in kinds
    ]


def _conv2d(k: int, cin: int, cout: int, hw: int, tag: str = "", **kw: int) -> list[Case]:
    args: dict[str, Any] = {"batch": 2, "cin": cin, "cout": cout, "size": (hw, hw),
                            "kernel": k, "stride": 1, "padding": k // 2, "dilation": 1,
                            "groups": 1}
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
    basics = "basics"
    cases += _both("matmul-512", "matmul", {"m": 512, "k": 512, "n": 512}, area=basics)
    cases += _both("linear-256to512", "linear", {"batch": 64, "fin": 256, "fout": 512},
                   area=basics)
    cases += _both("batchnorm2d-c64-64x64", "batchnorm2d", {"batch": 2, "c": 64, "size": (64, 64)},
                   area=basics)
    for pool in ("maxpool2d", "avgpool2d"):
        cases += _both(f"{pool}-k2-c64-64x64", pool,
                       {"batch": 2, "c": 64, "size": (64, 64), "kernel": 2}, area=basics)
    cases += _beyond_convolutions()
    return cases


def _beyond_convolutions() -> list[Case]:
    cases: list[Case] = []
    for batch in (1, 2, 4):  # one fp16 asm solver is reported to crash or hang above 2
        args = {"batch": batch, "cin": 64, "cout": 64, "size": (64, 64), "kernel": 3,
                "stride": 1, "padding": 1, "dilation": 1, "groups": 1}
        cases += _both(f"conv2d-fp16-k3-c64-64x64-b{batch}", "conv2d", args, "float16", "fp16")
    norm = "normalization"
    cases += _both("batchnorm2d-train-c64-32x32", "batchnorm2d_train",
                   {"batch": 4, "c": 64, "size": (32, 32)}, area=norm)
    cases += _both("groupnorm-g32-c320-32x32", "groupnorm",
                   {"batch": 2, "c": 320, "groups": 32, "size": (32, 32)}, area=norm)
    cases += _both("layernorm-768-seq77", "layernorm", {"batch": 2, "seq": 77, "dim": 768},
                   area=norm)
    for rnn in ("lstm", "gru"):
        cases += _both(f"{rnn}-l2-h128-seq32", rnn,
                       {"batch": 4, "seq": 32, "input": 64, "hidden": 128, "layers": 2},
                       area="rnn")
    ops = "tensor-ops"
    fwd = ("fwd",)
    cases += _both("nonzero-1m", "nonzero", {"n": 1 << 20}, area=ops, kinds=fwd)
    cases += _both("unique-1m", "unique", {"n": 1 << 20, "values": 1000}, area=ops, kinds=fwd)
    cases += _both("cumsum-1024x1024", "cumsum", {"rows": 1024, "cols": 1024}, area=ops)
    cases += _both("scatter_add-1m-to-4096", "scatter_add", {"n": 1 << 20, "out": 4096},
                   area=ops)
    cases += _both("index_put-1m-to-4096", "index_put", {"n": 1 << 20, "out": 4096}, area=ops)
    cases += _both("sort-1m", "sort", {"n": 1 << 20}, area=ops, kinds=fwd)
    cases += _both("topk-1m-k100", "topk", {"n": 1 << 20, "k": 100}, area=ops, kinds=fwd)
    # Stable Diffusion 1.5 at 512x512: 64x64 latent = 4096 tokens, 8 heads of 40; one image
    # (CFG doubles it). The math backend materialises 8 x 4096^2 scores: 0.5 GB in fp16,
    # what runs 8 GB cards out of memory at batch 2 and above.
    for backend in ("math", "efficient", "flash"):
        cases += _both(f"sdpa-{backend}-h8-s4096-d40", "sdpa",
                       {"batch": 1, "heads": 8, "seq": 4096, "dim": 40, "backend": backend},
                       "float16", "attention")
    for dtype, tag in (("float16", "fp16"), ("bfloat16", "bf16")):
        cases += _both(f"matmul-{tag}-1024", "matmul", {"m": 1024, "k": 1024, "n": 1024},
                       dtype, "fp16")
    cases += _both("resnet18-b2-64x64", "resnet18_step", {"batch": 2, "size": 64, "classes": 10},
                   area="training", kinds=("train",))
    cases += _both("unet-block-c320-16x16-attn", "unet_block",
                   {"batch": 1, "c": 320, "size": 16, "heads": 8}, area="training")
    cases += _compiled_and_low_precision()
    cases += _both("alloc-sweep-half-memory", "alloc", {"fraction": 0.5}, area="memory",
                   kinds=("fwd",))
    return cases


def _compiled_and_low_precision() -> list[Case]:
    fwd = ("fwd",)
    cases: list[Case] = []
    compiled = "compile"
    cases += _both("compile-elementwise-64k", "compile", {"model": "elementwise", "n": 1 << 16},
                   area=compiled, kinds=fwd)
    cases += _both("compile-matmul-epilogue-256", "compile",
                   {"model": "matmul_epilogue", "m": 256, "k": 256, "n": 256},
                   area=compiled, kinds=fwd)
    cases += _both("compile-conv-relu-c16-32x32", "compile",
                   {"model": "conv_relu", "batch": 2, "c": 16, "size": 32},
                   area=compiled, kinds=fwd)
    cases += _both("compile-attention-h4-s256-d32", "compile",
                   {"model": "attention", "batch": 1, "heads": 4, "seq": 256, "dim": 32},
                   area=compiled, kinds=fwd)
    # torch._int_mm wants m > 16 and k, n multiples of 8 on CUDA/ROCm.
    cases += _both("int8-mm-256", "int_mm", {"m": 256, "k": 256, "n": 256}, "int8",
                   "int8-fp8", kinds=fwd)
    cases += _both("fp8-e4m3-mm-256", "scaled_mm", {"m": 256, "k": 256, "n": 256},
                   "float8_e4m3fn", "int8-fp8", kinds=fwd)
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
    fwd: float
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
    elif case.op == "sdpa":  # QK^T and PV
        fwd = 4.0 * a["batch"] * a["heads"] * a["seq"] ** 2 * a["dim"]
    elif case.op in ("int_mm", "scaled_mm") or (case.op == "compile"
                                                 and a["model"] == "matmul_epilogue"):
        fwd = 2.0 * a["m"] * a["k"] * a["n"]
    elif case.op == "linear":
        fwd = 2.0 * a["batch"] * a["fin"] * a["fout"]
    else:
        return None
    return 3 * fwd if case.backward else fwd
