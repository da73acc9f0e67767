"""What runs inside one case's child process (the only code here that imports torch).

The case's inputs are made on the CPU from a seed derived from the case id, run on the
device, and compared with a reference: on --device cuda the same op on the CPU in float32
(the GPU must agree with the CPU), on --device cpu the op in float64 (so the CPU check still
checks something). TF32 is off for the comparison. The verdict goes to stdout as one
`CONVCHECK-RESULT {json}` line; failures are left to surface as they would for a user
(exception, signal, hang), and the parent classifies them.
"""

from __future__ import annotations

import json
import sys
import time
import zlib
from typing import Any, Callable

from convcheck import faults
from convcheck.cases import Case, flops
from convcheck.classify import RESULT_MARK

# Tolerance per dtype: pass iff max|dev - ref| <= ATOL + RTOL * max|ref|, per output tensor.
# Scaled by the tensor's largest value, not elementwise: a convolution's near-zero outputs
# carry rounding from terms of full magnitude. float32 RTOL 1e-3 admits Winograd/FFT/
# implicit-GEMM rounding on long reductions (up to 128*7*7 terms here) and still flags a
# wrong kernel, whose error is of the order of the output itself.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (1e-3, 1e-5),
    "float16": (1e-2, 1e-3),
    "bfloat16": (5e-2, 1e-2),
}
MIN_TIMED_SECONDS = 0.2  # timed repetitions after the checked call, until this much time...
MAX_REPS = 10  # ...or this many calls


def _tensors(case: Case, gen: Any) -> tuple[Callable[..., Any], list[Any]]:
    """(function of the input tensors, CPU float32 inputs) for the case's op."""
    import torch
    import torch.nn.functional as F

    a = case.args

    def randn(*shape: int, scale: float = 1.0) -> Any:
        return torch.randn(*shape, generator=gen) * scale

    if case.op in ("conv1d", "conv2d", "conv3d", "convtranspose2d"):
        dims = len(a["size"])
        x = randn(a["batch"], a["cin"], *a["size"])
        fan_in = a["cin"] // a["groups"] * a["kernel"] ** dims
        opts = {"stride": a["stride"], "padding": a["padding"], "groups": a["groups"],
                "dilation": a["dilation"]}
        if case.op == "convtranspose2d":
            w = randn(a["cin"], a["cout"] // a["groups"], *[a["kernel"]] * dims,
                      scale=fan_in ** -0.5)
            return (lambda x, w, b: F.conv_transpose2d(x, w, b, **opts)), [x, w, randn(a["cout"])]
        w = randn(a["cout"], a["cin"] // a["groups"], *[a["kernel"]] * dims, scale=fan_in ** -0.5)
        fn = getattr(F, case.op)
        return (lambda x, w, b: fn(x, w, b, **opts)), [x, w, randn(a["cout"])]
    if case.op == "matmul":
        return torch.matmul, [randn(a["m"], a["k"]), randn(a["k"], a["n"], scale=a["k"] ** -0.5)]
    if case.op == "linear":
        w = randn(a["fout"], a["fin"], scale=a["fin"] ** -0.5)
        return F.linear, [randn(a["batch"], a["fin"]), w, randn(a["fout"])]
    if case.op == "batchnorm2d":
        x = randn(a["batch"], a["c"], *a["size"]) * 3 + 1
        return (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True)), [
            x, randn(a["c"]), randn(a["c"])]
    if case.op in ("maxpool2d", "avgpool2d"):
        pool = F.max_pool2d if case.op == "maxpool2d" else F.avg_pool2d
        return (lambda x: pool(x, a["kernel"])), [randn(a["batch"], a["c"], *a["size"])]
    raise ValueError(f"unknown op {case.op!r}")


def _run(case: Case, fn: Callable[..., Any], inputs: list[Any], grad_out: Any) -> list[Any]:
    """Outputs to compare: the forward result, plus every input's gradient for backward."""
    import torch

    if not case.backward:
        with torch.no_grad():
            return [fn(*inputs)]
    leaves = [t.detach().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves, grad_out.to(out.device, out.dtype))
    return [out.detach(), *grads]


def _compare(got: list[Any], ref: list[Any], dtype: str) -> tuple[bool, float, float, str]:
    rtol, atol = TOLERANCES[dtype]
    ok, max_abs, max_rel, notes = True, 0.0, 0.0, []
    for i, (g, r) in enumerate(zip(got, ref)):
        name = "out" if i == 0 else f"grad{i - 1}"
        if tuple(g.shape) != tuple(r.shape):
            return False, float("inf"), float("inf"), f"{name} shape {tuple(g.shape)} != " \
                f"{tuple(r.shape)}"
        g64, r64 = g.detach().cpu().double(), r.detach().cpu().double()
        if not bool(g64.isfinite().all()):
            ok = False
            notes.append(f"{name} has NaN/Inf")
            max_abs = max_rel = float("inf")
            continue
        err = float((g64 - r64).abs().max()) if g64.numel() else 0.0
        scale = float(r64.abs().max()) if r64.numel() else 0.0
        max_abs = max(max_abs, err)
        max_rel = max(max_rel, err / scale if scale > 0 else (0.0 if err == 0 else float("inf")))
        if err > atol + rtol * scale:
            ok = False
            notes.append(f"{name} off by {err:.3g} (max |ref| {scale:.3g})")
    return ok, max_abs, max_rel, "; ".join(notes)


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _finite(x: float) -> float | None:
    return x if x == x and x not in (float("inf"), float("-inf")) else None


def run_case(case: Case, device: str, dtype: str = "float32") -> dict[str, Any]:
    import torch

    import im2col_fallback

    if im2col_fallback.requested():  # normally done already by sitecustomize on import
        im2col_fallback.install()
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    gen = torch.Generator().manual_seed(zlib.crc32(case.id.encode()))
    fn, inputs = _tensors(case, gen)
    grad_out = None
    if case.backward:
        with torch.no_grad():
            shape = fn(*inputs).shape
        grad_out = torch.randn(*shape, generator=gen)

    ref_dtype = torch.float64 if device == "cpu" else torch.float32
    with im2col_fallback.disabled():
        ref = _run(case, fn, [t.to(ref_dtype) for t in inputs], grad_out)

    fault = faults.fault_for(case.id)
    dev_inputs = [t.to(device=device, dtype=getattr(torch, dtype)) for t in inputs]
    calls_before = im2col_fallback.calls
    if fault:
        faults.trigger(fault)
    _sync(device)
    start = time.perf_counter()
    got = _run(case, fn, dev_inputs, grad_out)
    _sync(device)
    first = time.perf_counter() - start
    via_im2col = im2col_fallback.calls > calls_before
    if fault == "wrong":
        got[0] = got[0] + got[0].abs().max() * 0.5 + 1.0
    ok, max_abs, max_rel, notes = _compare(got, ref, dtype)

    reps, timed = 0, 0.0
    while timed < MIN_TIMED_SECONDS and reps < MAX_REPS:
        start = time.perf_counter()
        _run(case, fn, dev_inputs, grad_out)
        _sync(device)
        timed += time.perf_counter() - start
        reps += 1
    per_call = timed / reps
    total_flops = flops(case)
    detail = [f"{per_call * 1e3:.3g} ms/call, first {first * 1e3:.3g} ms"]
    if via_im2col:
        detail.append("via im2col")
    if notes:
        detail.append(notes)
    return {
        "status": "ok" if ok else "wrong-result",
        "gflops": total_flops / per_call / 1e9 if total_flops and per_call > 0 else None,
        "max_abs_err": _finite(max_abs),
        "max_rel_err": _finite(max_rel),
        "via_im2col": via_im2col,
        "detail": "; ".join(detail),
    }


def probe(device: str) -> dict[str, Any]:
    """What the run's header and JSON report: torch, HIP, the GPU and its ISA."""
    import torch

    info: dict[str, Any] = {"torch": torch.__version__,
                            "hip": getattr(torch.version, "hip", None),
                            "gpu": None, "arch": None, "available": True}
    if device == "cuda":
        info["available"] = bool(torch.cuda.is_available())
        if info["available"]:
            props = torch.cuda.get_device_properties(0)
            info["gpu"] = props.name
            info["arch"] = getattr(props, "gcnArchName", None)
    return info


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(RESULT_MARK + json.dumps(payload) + "\n")
    sys.stdout.flush()
