"""What runs inside one case's child process (the only code here that imports torch).

The case's inputs are made on the CPU from a seed derived from the case id, run on the
device, and compared with a reference: on --device cuda the same computation on the CPU in
float32 (the GPU must agree with the CPU), on --device cpu in float64 (so the CPU check still
checks something). Inputs of a float16/bfloat16 case are rounded to that dtype before the
reference sees them, so only the computation's own error counts. TF32 is off. The verdict
goes to stdout as one `CONVCHECK-RESULT {json}` line; failures are left to surface as they
would for a user (exception, signal, hang), and the parent classifies them.

A feature this torch does not have (scaled_dot_product_attention before 2.0, an SDPA backend
the build lacks, fp16 kernels on the CPU of torch 1.13) is reported `skipped` with the reason,
never an error: the check judges the stack, not the age of its torch.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import sys
import time
import zlib
from typing import Any, Callable, Iterator

from convcheck import faults
from convcheck.cases import Case, flops
from convcheck.classify import RESULT_MARK

# Tolerance per dtype: pass iff max|dev - ref| <= ATOL + RTOL * max|ref|, per output tensor.
# Scaled by the tensor's largest value, not elementwise: a convolution's near-zero outputs
# carry rounding from terms of full magnitude. float32 RTOL 1e-3 admits Winograd/FFT/
# implicit-GEMM rounding on long reductions (up to 128*7*7 terms here) and still flags a
# wrong kernel, whose error is of the order of the output itself. Integer outputs (indices,
# counts) must be equal.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (1e-3, 1e-5),
    "float16": (1e-2, 1e-3),
    "bfloat16": (5e-2, 1e-2),
    # fp8 cases compare a float32 product of fp8-rounded inputs (accumulated in fp32 by
    # _scaled_mm) with the same product in float32/float64: a float32 tolerance.
    "float8_e4m3fn": (1e-3, 1e-5),
    "int8": (0.0, 0.0),  # int32 outputs: compared exactly
}
MIN_TIMED_SECONDS = 0.2  # timed repetitions after the checked call, until this much time...
MAX_REPS = 10  # ...or this many calls
MAX_NOTES = 3  # failing tensors named in the detail
# What torch says when a kernel lacks a dtype on a device ("addmm_impl_cpu_" not implemented
# for 'Half'); only on --device cpu is that a skip: on a GPU it is the stack's failure.
NOT_IMPLEMENTED = re.compile(r"not implemented for '(Half|BFloat16)'")
# SDPA with only one backend allowed and that one unusable here (torch 2.x wording).
NO_SDPA_KERNEL = re.compile(r"No available kernel")
# A low-precision op this torch has but not for this device or GPU (torch._scaled_mm on a GPU
# without fp8 units: "... only supported on ... compute capability >= 8.9 ... or ROCm MI300+";
# an op with no kernel registered for the CPU: "Could not run 'aten::_int_mm' with arguments
# from the 'CPU' backend"; "... not implemented ...").
UNSUPPORTED_OP = re.compile(r"only supported (on|for)|is not supported|not supported on"
                            r"|Could not run 'aten::|not implemented for|NotImplementedError")
# inductor's CPU backend compiles C++: no compiler in the image is the image's gap, not a
# broken stack (torch._inductor.cpp_builder; torch 2.x wording varies).
NO_COMPILER = re.compile(r"(?i)(no|cannot find|failed to find) (a )?(working )?c\+\+ compiler"
                         r"|InvalidCxxCompiler|'g\+\+'|\bc\+\+: not found")

_reference = False  # set while the CPU reference's runner is made (compile cases run eager)

Runner = Callable[[list[Any], bool], list[Any]]  # (inputs on the device, backward) -> outputs


class Skip(Exception):
    """The case needs something this torch or build does not have; the message says what."""


def _flat(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _flat(v)]
    return [] if value is None else [value]


def _weights_like(t: Any, seed: int) -> Any:
    """Fixed random weights for the loss sum(out * w): the same on every device."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(t.shape), generator=gen).to(t.device, t.dtype)


def autograd_runner(fn: Callable[..., Any], params: Callable[[], list[Any]] = list,
                    seed: int = 0) -> Runner:
    """Outputs of fn, plus (backward) the gradient of sum(out_i * w_i) with respect to every
    floating input and every tensor params() returns (a module's parameters)."""
    import torch

    def run(inputs: list[Any], backward: bool) -> list[Any]:
        if not backward:
            with torch.no_grad():
                return _flat(fn(*inputs))
        leaves = [t.detach().requires_grad_(True) if t.is_floating_point() else t
                  for t in inputs]
        outs = _flat(fn(*leaves))
        diff = [o for o in outs if o.is_floating_point() and o.requires_grad]
        loss = sum((o * _weights_like(o, seed + i)).sum() for i, o in enumerate(diff))
        wrt = [t for t in leaves if t.requires_grad] + list(params())
        grads = torch.autograd.grad(loss, wrt)
        return [o.detach() for o in outs] + list(grads)

    return run


# ------------------------------------------------------------------------------- problems
def _problem(case: Case, gen: Any) -> tuple[Callable[..., Runner], list[Any]]:
    """(make(device, dtype) -> runner, CPU float32/integer inputs) for the case's op."""
    import torch
    import torch.nn.functional as F

    a = case.args
    seed = zlib.crc32(case.id.encode())

    def randn(*shape: int, scale: float = 1.0) -> Any:
        return torch.randn(*shape, generator=gen) * scale

    def plain(fn: Callable[..., Any]) -> Callable[..., Runner]:
        return lambda dev, dt: autograd_runner(fn, seed=seed)

    if case.op in ("conv1d", "conv2d", "conv3d", "convtranspose2d"):
        dims = len(a["size"])
        x = randn(a["batch"], a["cin"], *a["size"])
        fan_in = a["cin"] // a["groups"] * a["kernel"] ** dims
        opts = {"stride": a["stride"], "padding": a["padding"], "groups": a["groups"],
                "dilation": a["dilation"]}
        if case.op == "convtranspose2d":
            w = randn(a["cin"], a["cout"] // a["groups"], *[a["kernel"]] * dims,
                      scale=fan_in ** -0.5)
            return plain(lambda x, w, b: F.conv_transpose2d(x, w, b, **opts)), [
                x, w, randn(a["cout"])]
        w = randn(a["cout"], a["cin"] // a["groups"], *[a["kernel"]] * dims, scale=fan_in ** -0.5)
        fn = getattr(F, case.op)
        return plain(lambda x, w, b: fn(x, w, b, **opts)), [x, w, randn(a["cout"])]
    if case.op == "matmul":
        return plain(torch.matmul), [randn(a["m"], a["k"]),
                                     randn(a["k"], a["n"], scale=a["k"] ** -0.5)]
    if case.op == "linear":
        w = randn(a["fout"], a["fin"], scale=a["fin"] ** -0.5)
        return plain(F.linear), [randn(a["batch"], a["fin"]), w, randn(a["fout"])]
    if case.op == "batchnorm2d":
        x = randn(a["batch"], a["c"], *a["size"]) * 3 + 1
        return plain(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True)), [
            x, randn(a["c"]), randn(a["c"])]
    if case.op in ("maxpool2d", "avgpool2d"):
        pool = F.max_pool2d if case.op == "maxpool2d" else F.avg_pool2d
        return plain(lambda x: pool(x, a["kernel"])), [randn(a["batch"], a["c"], *a["size"])]
    if case.op == "groupnorm":
        return plain(lambda x, w, b: F.group_norm(x, a["groups"], w, b)), [
            randn(a["batch"], a["c"], *a["size"]) * 2 + 0.5, randn(a["c"]), randn(a["c"])]
    if case.op == "layernorm":
        return plain(lambda x, w, b: F.layer_norm(x, (a["dim"],), w, b)), [
            randn(a["batch"], a["seq"], a["dim"]) * 2 + 0.5, randn(a["dim"]), randn(a["dim"])]
    if case.op in ("batchnorm2d_train", "lstm", "gru", "unet_block"):
        return _module_problem(case, gen, seed)
    if case.op == "compile":
        return _compile_problem(case, gen, seed)
    if case.op in ("int_mm", "scaled_mm"):
        return _low_precision_problem(case, gen, seed)
    return _tensor_op_problem(case, gen, seed)


def _module_problem(case: Case, gen: Any, seed: int) -> tuple[Callable[..., Runner], list[Any]]:
    """Modules made once on the CPU from the case's seed, copied to each device: outputs
    (and running statistics) plus the gradients of the input and of every parameter."""
    import torch

    a = case.args
    torch.manual_seed(seed)  # parameter init draws from the global generator
    if case.op == "batchnorm2d_train":
        module: Any = torch.nn.BatchNorm2d(a["c"])
        with torch.no_grad():
            module.weight.normal_(generator=gen)
            module.bias.normal_(generator=gen)
        x = torch.randn(a["batch"], a["c"], *a["size"], generator=gen) * 3 + 1
    elif case.op in ("lstm", "gru"):
        cls = torch.nn.LSTM if case.op == "lstm" else torch.nn.GRU
        module = cls(a["input"], a["hidden"], num_layers=a["layers"], batch_first=True)
        x = torch.randn(a["batch"], a["seq"], a["input"], generator=gen)
    else:
        module = unet_block(a["c"], a["heads"])
        x = torch.randn(a["batch"], a["c"], a["size"], a["size"], generator=gen)

    def make(device: str, dtype: Any) -> Runner:
        mod = copy.deepcopy(module).to(device=device, dtype=dtype)
        mod.train()  # BatchNorm with batch statistics, updating its running stats

        def fn(x: Any) -> Any:
            out = _flat(mod(x))
            if case.op == "batchnorm2d_train":  # the running stats are results too
                out += [mod.running_mean.detach().clone(), mod.running_var.detach().clone()]
            return out

        return autograd_runner(fn, lambda: list(mod.parameters()), seed)

    return make, [x]


def _tensor_op_problem(case: Case, gen: Any, seed: int
                       ) -> tuple[Callable[..., Runner], list[Any]]:
    """The hipcub/atomics ops: exact integer results where the op has them (values made
    tie-free, so sort/topk indices are unique), float sums otherwise."""
    import torch

    a = case.args

    def make_plain(fn: Callable[..., Any]) -> Callable[..., Runner]:
        return lambda dev, dt: autograd_runner(fn, seed=seed)

    if case.op == "nonzero":
        x = torch.randn(a["n"], generator=gen)
        return make_plain(lambda x: torch.nonzero(torch.where(x > 0, x, torch.zeros_like(x)))
                          ), [x]
    if case.op == "unique":
        x = torch.randint(0, a["values"], (a["n"],), generator=gen)
        return make_plain(lambda x: torch.unique(x, sorted=True, return_inverse=True,
                                                 return_counts=True)), [x]
    if case.op == "cumsum":
        return make_plain(lambda x: torch.cumsum(x, dim=1)), [
            torch.randn(a["rows"], a["cols"], generator=gen)]
    if case.op in ("scatter_add", "index_put"):
        src = torch.randn(a["n"], generator=gen)
        index = torch.randint(0, a["out"], (a["n"],), generator=gen)
        base = torch.randn(a["out"], generator=gen)
        if case.op == "scatter_add":
            return make_plain(lambda b, i, s: b.scatter_add(0, i, s)), [base, index, src]
        return make_plain(lambda b, i, s: b.index_put((i,), s, accumulate=True)), [
            base, index, src]
    if case.op in ("sort", "topk"):
        x = torch.randperm(a["n"], generator=gen).float()  # distinct values: one right answer
        if case.op == "sort":
            return make_plain(lambda x: torch.sort(x, descending=True)), [x]
        return make_plain(lambda x: torch.topk(x, a["k"], sorted=True)), [x]
    if case.op == "sdpa":
        shape = (a["batch"], a["heads"], a["seq"], a["dim"])
        return _sdpa_make(case, seed), [torch.randn(*shape, generator=gen) for _ in range(3)]
    raise ValueError(f"unknown op {case.op!r}")


@contextlib.contextmanager
def _sdpa_backend(backend: str, device: str) -> Iterator[None]:
    """Only `backend` allowed (math, efficient, flash): torch >= 2.3's sdpa_kernel, else
    2.0's torch.backends.cuda.sdp_kernel."""
    import torch

    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        sdpa_kernel = None
    if sdpa_kernel is not None:
        names = {"math": "MATH", "efficient": "EFFICIENT_ATTENTION", "flash": "FLASH_ATTENTION"}
        with sdpa_kernel(getattr(SDPBackend, names[backend])):
            yield
        return
    if device == "cpu":  # 2.0-2.2 pick the math path on the CPU
        yield
        return
    flags = {"enable_math": backend == "math", "enable_mem_efficient": backend == "efficient",
             "enable_flash": backend == "flash"}
    with torch.backends.cuda.sdp_kernel(**flags):
        yield


def _sdpa_make(case: Case, seed: int) -> Callable[..., Runner]:
    import torch.nn.functional as F

    sdpa = getattr(F, "scaled_dot_product_attention", None)
    if sdpa is None:
        import torch

        raise Skip(f"torch {torch.__version__} has no scaled_dot_product_attention (2.0+)")
    backend = case.args["backend"]

    def make(device: str, dtype: Any) -> Runner:
        # The reference is always the math backend, on the CPU.
        chosen = "math" if device == "cpu" else backend
        inner = autograd_runner(sdpa, seed=seed)

        def run(inputs: list[Any], backward: bool) -> list[Any]:
            with _sdpa_backend(chosen, device):
                return inner(inputs, backward)

        return run

    return make


# ------------------------------------------------------------- torch.compile, int8, fp8
def _compile_problem(case: Case, gen: Any, seed: int) -> tuple[Callable[..., Runner],
                                                                list[Any]]:
    """A small fused graph: the reference runs it eager on the CPU, the device under test
    through torch.compile (inductor: Triton kernels on a GPU, C++ on the CPU), so a compiled
    kernel that writes nothing or garbage is a wrong-result."""
    import torch
    import torch.nn.functional as F

    if not hasattr(torch, "compile"):
        raise Skip(f"torch {torch.__version__} has no torch.compile (2.0+)")
    a = case.args

    def randn(*shape: int, scale: float = 1.0) -> Any:
        return torch.randn(*shape, generator=gen) * scale

    model = a["model"]
    fn: Callable[..., Any]
    if model == "elementwise":
        def fn(x: Any, y: Any) -> Any:
            return torch.sigmoid(x) * x + torch.tanh(y) * 0.5 - (x * y).clamp(-1, 1)
        inputs = [randn(a["n"]), randn(a["n"])]
    elif model == "matmul_epilogue":
        def fn(x: Any, w: Any, b: Any) -> Any:
            return F.gelu(x @ w + b) * 2.0
        inputs = [randn(a["m"], a["k"]), randn(a["k"], a["n"], scale=a["k"] ** -0.5),
                  randn(a["n"])]
    elif model == "conv_relu":
        def fn(x: Any, w: Any, b: Any) -> Any:
            return torch.relu(F.conv2d(x, w, b, padding=1)) + x
        c = a["c"]
        inputs = [randn(a["batch"], c, a["size"], a["size"]),
                  randn(c, c, 3, 3, scale=(c * 9) ** -0.5), randn(c)]
    elif model == "attention":
        def fn(q: Any, k: Any, v: Any) -> Any:
            scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
            return torch.softmax(scores, dim=-1) @ v
        shape = (a["batch"], a["heads"], a["seq"], a["dim"])
        inputs = [randn(*shape) for _ in range(3)]
    else:
        raise ValueError(f"unknown compile model {model!r}")

    def make(device: str, dtype: Any) -> Runner:
        if _reference:
            return autograd_runner(fn, seed=seed)
        if device == "cpu" and not _have_cxx():
            raise Skip("inductor's CPU backend compiles C++ and this image has no C++ "
                       "compiler (g++/c++); on a GPU it generates Triton kernels instead")
        import torch._inductor.config as inductor_config

        inductor_config.compile_threads = 1  # no worker pool per case (2-core CI machines)
        compiled = torch.compile(fn, backend="inductor", dynamic=False)
        return autograd_runner(compiled, seed=seed)

    return make, inputs


def _have_cxx() -> bool:
    import shutil

    return any(shutil.which(c) for c in (os.environ.get("CXX") or "", "g++", "c++", "clang++")
               if c)


def _low_precision_problem(case: Case, gen: Any, seed: int
                           ) -> tuple[Callable[..., Runner], list[Any]]:
    """int8 x int8 -> int32 (torch._int_mm; hipBLASLt on ROCm) against an exact int64 CPU
    product; fp8 e4m3 x e4m3 -> float32 (torch._scaled_mm, unit scales) against the float
    product of the fp8-rounded inputs."""
    import torch

    a = case.args
    m, k, n = a["m"], a["k"], a["n"]
    if case.op == "int_mm":
        if not hasattr(torch, "_int_mm"):
            raise Skip(f"torch {torch.__version__} has no torch._int_mm (2.1+)")
        x = torch.randint(-128, 128, (m, k), generator=gen, dtype=torch.int8)
        w = torch.randint(-128, 128, (k, n), generator=gen, dtype=torch.int8)

        def make_int(device: str, dtype: Any) -> Runner:
            if _reference:
                return lambda inp, bwd: [inp[0].long() @ inp[1].long()]
            return lambda inp, bwd: [torch._int_mm(inp[0], inp[1])]

        return make_int, [x, w]
    fp8 = getattr(torch, case.dtype, None)
    if fp8 is None or not hasattr(torch, "_scaled_mm"):
        raise Skip(f"torch {torch.__version__} has no {case.dtype} / torch._scaled_mm (2.1+)")
    # Values fp8 holds exactly after rounding; the inputs stay float32 until the device
    # casts them (the reference sees the same rounding through _round_trip).
    x = torch.randn(m, k, generator=gen)
    w = torch.randn(n, k, generator=gen) * k ** -0.5  # row-major (n, k): its .t() is col-major

    def make_fp8(device: str, dtype: Any) -> Runner:
        if _reference:
            return lambda inp, bwd: [inp[0] @ inp[1].t()]

        def run(inp: list[Any], bwd: bool) -> list[Any]:
            one = torch.ones((), device=inp[0].device, dtype=torch.float32)
            out = torch._scaled_mm(inp[0], inp[1].t(), scale_a=one, scale_b=one,
                                   out_dtype=torch.float32)
            return [out[0] if isinstance(out, tuple) else out]  # 2.1-2.3 return (out, amax)

        return run

    return make_fp8, [x, w]


# ------------------------------------------------------------------------- whole models
def _unet_block_class() -> Any:
    import torch
    import torch.nn.functional as F

    class Block(torch.nn.Module):
        """An SD 1.5 down-block at 320 channels: ResBlock (GroupNorm 32, SiLU, 3x3 convs,
        timestep embedding) then a transformer block (GroupNorm, 1x1 proj, self-attention
        over the pixels, GEGLU feed-forward, 1x1 proj, residuals)."""

        def __init__(self, c: int, heads: int) -> None:
            super().__init__()
            nn = torch.nn
            self.heads = heads
            self.norm1, self.conv1 = nn.GroupNorm(32, c), nn.Conv2d(c, c, 3, padding=1)
            self.emb = nn.Linear(1280, c)
            self.norm2, self.conv2 = nn.GroupNorm(32, c), nn.Conv2d(c, c, 3, padding=1)
            self.norm3, self.proj_in = nn.GroupNorm(32, c), nn.Conv2d(c, c, 1)
            self.ln1, self.qkv, self.out = nn.LayerNorm(c), nn.Linear(c, 3 * c), nn.Linear(c, c)
            self.ln2, self.ff1, self.ff2 = nn.LayerNorm(c), nn.Linear(c, 8 * c), nn.Linear(4 * c, c)
            self.proj_out = nn.Conv2d(c, c, 1)
            self.register_buffer("t", torch.ones(1, 1280))

        def forward(self, x: Any) -> Any:
            h = self.conv1(F.silu(self.norm1(x))) + self.emb(F.silu(self.t))[:, :, None, None]
            x = x + self.conv2(F.silu(self.norm2(h)))
            b, c, hh, ww = x.shape
            h = self.proj_in(self.norm3(x)).flatten(2).transpose(1, 2)  # (b, hw, c)
            q, k, v = self.qkv(self.ln1(h)).chunk(3, dim=-1)
            q, k, v = (t.reshape(b, -1, self.heads, c // self.heads).transpose(1, 2)
                       for t in (q, k, v))
            sdpa = getattr(F, "scaled_dot_product_attention", None)
            if sdpa is not None:  # what SD runs on torch 2.x
                att = sdpa(q, k, v)
            else:
                att = torch.softmax(q @ k.transpose(-1, -2) * (c // self.heads) ** -0.5, -1) @ v
            h = h + self.out(att.transpose(1, 2).reshape(b, -1, c))
            a, gate = self.ff1(self.ln2(h)).chunk(2, dim=-1)
            h = h + self.ff2(a * F.gelu(gate))
            return x + self.proj_out(h.transpose(1, 2).reshape(b, c, hh, ww))

    return Block


def unet_block(c: int, heads: int) -> Any:
    return _unet_block_class()(c, heads)


def _resnet18(classes: int) -> tuple[Any, str]:
    """torchvision's ResNet-18 when the image has torchvision, else the same architecture
    defined here (BasicBlock x [2, 2, 2, 2])."""
    try:
        import torchvision

        return torchvision.models.resnet18(num_classes=classes), "torchvision"
    except Exception:  # absent, or a build that fails to load its ops
        pass
    import torch

    nn = torch.nn

    class Basic(torch.nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

        def forward(self, x: Any) -> Any:
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + (x if self.down is None else self.down(x)))

    layers: list[Any] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Basic(cin, cout, stride), Basic(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes)]
    return nn.Sequential(*layers), "defined in convcheck"


def _resnet_problem(case: Case, gen: Any, seed: int) -> tuple[Callable[..., Runner], list[Any],
                                                               str]:
    """One SGD (momentum) step: logits, loss, every parameter's gradient, and the logits of
    a second forward after the step (so the optimizer's update is checked too)."""
    import torch
    import torch.nn.functional as F

    a = case.args
    torch.manual_seed(seed)
    model, source = _resnet18(a["classes"])
    x = torch.randn(a["batch"], 3, a["size"], a["size"], generator=gen)
    y = torch.randint(0, a["classes"], (a["batch"],), generator=gen)

    def make(device: str, dtype: Any) -> Runner:
        def run(inputs: list[Any], backward: bool) -> list[Any]:
            net = copy.deepcopy(model).to(device=device, dtype=dtype).train()
            opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
            x, y = inputs
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            grads = [p.grad.detach().clone() for p in net.parameters()]
            opt.step()
            with torch.no_grad():
                after = net(x)
            return [logits.detach(), loss.detach().reshape(1), *grads, after]

        return run

    return make, [x, y], source


# ------------------------------------------------------------------------- compare, run
def _compare(got: list[Any], ref: list[Any], dtype: str) -> tuple[bool, float, float, str]:
    rtol, atol = TOLERANCES[dtype]
    ok, max_abs, max_rel, notes = True, 0.0, 0.0, []
    if len(got) != len(ref):
        return False, float("inf"), float("inf"), f"{len(got)} outputs, expected {len(ref)}"
    for i, (g, r) in enumerate(zip(got, ref)):
        name = "out" if i == 0 else f"t{i}"
        if tuple(g.shape) != tuple(r.shape):
            ok = False
            notes.append(f"{name} shape {tuple(g.shape)} != {tuple(r.shape)}")
            max_abs = max_rel = float("inf")
            continue
        if not r.is_floating_point():  # indices, counts: exact
            if g.numel() and not bool((g.detach().cpu().long() == r.cpu().long()).all()):
                ok = False
                wrong = int((g.detach().cpu().long() != r.cpu().long()).sum())
                notes.append(f"{name}: {wrong} of {r.numel()} integer values differ")
                max_abs = max_rel = float("inf")
            continue
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
    if len(notes) > MAX_NOTES:
        notes = [*notes[:MAX_NOTES], f"{len(notes) - MAX_NOTES} more"]
    return ok, max_abs, max_rel, "; ".join(notes)


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _finite(x: float) -> float | None:
    return x if x == x and x not in (float("inf"), float("-inf")) else None


def _round_trip(t: Any, dtype: Any, ref_dtype: Any) -> Any:
    """A floating input as the device sees it (rounded to the case's dtype), in ref_dtype."""
    return t.to(dtype).to(ref_dtype) if t.is_floating_point() else t


def _to(t: Any, device: str, dtype: Any) -> Any:
    return t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device)


def _miopen_cache_bytes() -> int | None:
    """Bytes in MIOpen's kernel cache and user find-db (None without either): growth during
    a case means it compiled or tuned kernels (a cache miss)."""
    home = os.path.expanduser("~")
    dirs = [os.environ.get("MIOPEN_CUSTOM_CACHE_DIR") or os.path.join(home, ".cache", "miopen"),
            os.environ.get("MIOPEN_USER_DB_PATH") or os.path.join(home, ".config", "miopen")]
    total, seen = 0, False
    for top in dirs:
        for root, _, files in os.walk(top):
            seen = True
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.path.getsize(os.path.join(root, name))
    return total if seen else None


def run_case(case: Case, device: str) -> dict[str, Any]:
    try:
        return _run_case(case, device)
    except Skip as exc:
        return {"status": "skipped", "detail": str(exc)}


def _run_case(case: Case, device: str) -> dict[str, Any]:
    import torch

    import im2col_fallback

    if im2col_fallback.requested():  # normally done already by sitecustomize on import
        im2col_fallback.install()
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if case.op == "alloc":
        return _alloc_sweep(case, device)
    if case.op == "sdpa" and device == "cpu" and case.args["backend"] != "math":
        raise Skip(f"the {case.args['backend']} SDPA backend is a GPU kernel; on the CPU "
                   "only math is checked")
    seed = zlib.crc32(case.id.encode())
    gen = torch.Generator().manual_seed(seed)
    source = ""
    if case.op == "resnet18_step":
        make, inputs, source = _resnet_problem(case, gen, seed)
    else:
        make, inputs = _problem(case, gen)

    dtype = getattr(torch, case.dtype)
    ref_dtype = torch.float64 if device == "cpu" else torch.float32
    global _reference
    _reference = True
    try:
        with im2col_fallback.disabled():
            ref = make("cpu", ref_dtype)([_round_trip(t, dtype, ref_dtype) for t in inputs],
                                         case.backward)
    finally:
        _reference = False
    fault = faults.fault_for(case.id)
    dev_inputs = [_to(t, device, dtype) for t in inputs]
    calls_before = im2col_fallback.calls
    cache_before = _miopen_cache_bytes()
    _sync(device)
    start = time.perf_counter()
    if fault:  # inside the first call's time: a "compile" fault is compile time
        faults.trigger(fault)
    try:
        runner = make(device, dtype)
        got = runner(dev_inputs, case.backward)
        _sync(device)
    except RuntimeError as exc:
        missing = NOT_IMPLEMENTED.search(str(exc))
        if device == "cpu" and missing:
            raise Skip(f"torch {torch.__version__} has no {case.dtype} kernel for it on the "
                       f"CPU ({missing.group(0)})") from exc
        if case.op == "sdpa" and NO_SDPA_KERNEL.search(str(exc)):
            raise Skip(f"this build has no usable {case.args['backend']} SDPA kernel for "
                       f"this GPU/shape ({str(exc).splitlines()[0][:120]})") from exc
        _skip_if_unsupported(case, device, exc)
        raise
    except NotImplementedError as exc:
        _skip_if_unsupported(case, device, exc)
        raise
    first = time.perf_counter() - start
    cache_after = _miopen_cache_bytes()
    via_im2col = im2col_fallback.calls > calls_before
    if fault == "wrong":
        got[0] = got[0] + got[0].abs().max() * 0.5 + 1.0
    ok, max_abs, max_rel, notes = _compare(got, ref, case.dtype)

    reps, timed = 0, 0.0
    while timed < MIN_TIMED_SECONDS and reps < MAX_REPS:
        start = time.perf_counter()
        runner(dev_inputs, case.backward)
        _sync(device)
        timed += time.perf_counter() - start
        reps += 1
    per_call = timed / reps
    total_flops = flops(case)
    detail = [f"{per_call * 1e3:.3g} ms/call, first {first * 1e3:.3g} ms"]
    cache_added = (cache_after - cache_before
                   if cache_before is not None and cache_after is not None else None)
    if cache_added:
        detail.append(f"MIOpen cache +{cache_added / 1024:.0f} KiB (compiled)")
    if source:
        detail.append(f"ResNet-18 {source}")
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
        # The first call pays for kernel compilation, MIOpen Find/tuning and lazy loading;
        # the timed calls after it are the steady state.
        "first_call_seconds": round(first, 6),
        "run_seconds": round(per_call, 6),
        "compile_seconds": round(max(first - per_call, 0.0), 6),
        "miopen_cache_added": cache_added,
        "detail": "; ".join(detail),
    }


def _skip_if_unsupported(case: Case, device: str, exc: BaseException) -> None:
    """Skip where the torch or the image lacks the feature, not where the stack fails:
    fp8 on a GPU without fp8 support (any device); int8 and compiled kernels only on the CPU,
    where the reference's own machine is not what is under test. On a GPU an int8 or
    compile failure stays a failure (hipBLASLt without the ISA, a Triton crash)."""
    import torch

    text = str(exc)
    first = (text.splitlines() or [type(exc).__name__])[0][:160]
    if case.op == "compile" and device == "cpu" and NO_COMPILER.search(text):
        raise Skip(f"inductor needs a C++ compiler on the CPU: {first}") from exc
    if (case.op in ("int_mm", "scaled_mm", "compile")
            and UNSUPPORTED_OP.search(f"{type(exc).__name__}: {text}")
            and (case.op == "scaled_mm" or device == "cpu")):
        raise Skip(f"torch {torch.__version__} does not support it here: {first}") from exc


def _memory_total(device: str) -> int:
    if device == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(0).total_memory)
    with open("/proc/meminfo", encoding="ascii") as fh:  # MemAvailable, in kB
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 1 << 30


CPU_ALLOC_CAP = 1 << 29  # the CPU "device" is the host's memory: a sweep, not a stress test


def _alloc_sweep(case: Case, device: str) -> dict[str, Any]:
    """Allocate, fill and read back buffers of 1/16, 1/8, 1/4 and 1/2 of `fraction` of the
    device's memory, each held while the next is made (so the last step holds ~fraction):
    an allocator or a VRAM aperture that fails part-way shows up as out-of-memory, a fault
    or wrong data, not as a model that dies mysteriously at its largest layer."""
    import torch

    total = _memory_total(device)
    target = int(total * case.args["fraction"])
    if device == "cpu":
        target = min(target, CPU_ALLOC_CAP)
    fault = faults.fault_for(case.id)
    if fault:
        faults.trigger(fault)
    held, steps, start, bad = [], [], time.perf_counter(), []
    for share in (16, 8, 4, 2):
        n = max(target // share // 4, 1)  # int32 elements
        buf = torch.empty(n, dtype=torch.int32, device=device)
        buf.fill_(share)
        stride = max(n // 4096, 1)
        marks = torch.arange(0, n, stride, dtype=torch.int32, device=device)
        buf[::stride] = marks  # distinct values across the buffer catch aliased pages
        marks_ok = bool((buf[::stride] == marks).all())
        buf[::stride] = share
        if not (marks_ok and bool((buf == share).all())):
            bad.append(f"{n * 4 / 2**30:.2f} GiB buffer read back wrong")
        steps.append(n * 4)
        held.append(buf)
    seconds = time.perf_counter() - start
    gib = sum(steps) / 2**30
    detail = (f"held {gib:.2f} GiB in {len(steps)} buffers (target {target / 2**30:.2f} GiB of "
              f"{total / 2**30:.1f} GiB) in {seconds:.2f} s")
    return {"status": "wrong-result" if bad else "ok", "gflops": None, "max_abs_err": None,
            "max_rel_err": None, "via_im2col": False, "first_call_seconds": round(seconds, 6),
            "run_seconds": round(seconds, 6), "compile_seconds": 0.0,
            "miopen_cache_added": None,
            "detail": "; ".join([detail, *bad])}


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
