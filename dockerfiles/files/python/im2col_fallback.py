"""im2col fallback: run 2-D convolutions as unfold + matmul, never through MIOpen/cuDNN.

On RDNA1 the convolution kernels (MIOpen) are what faults or hangs, while unfold (a plain
ATen kernel) and matmul (rocBLAS) work; so routing Conv2d through them trades speed and
memory (the unfolded input is kernel_h*kernel_w times the input) for a convolution that runs.

Switched on for any Python process in the image by IMAGEFACTORY_CONV_IM2COL=1 (see
sitecustomize.py, which installs it the moment torch is imported); or by hand:
    import im2col_fallback; im2col_fallback.install()
It replaces torch.nn.functional.conv2d, which nn.Conv2d (all padding modes) and functional
code call. Not covered: direct torch.conv2d / torch.ops.aten calls, TorchScript, quantized
and non-floating tensors (these go to the native kernel). Backward is autograd through unfold
and matmul. Stride, padding (int, tuple, "same", "valid"), dilation, groups and bias are
supported, batched (N, C, H, W) and unbatched (C, H, W) input alike.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Iterator

ENV = "IMAGEFACTORY_CONV_IM2COL"
MARK = "__imagefactory_im2col__"

calls = 0  # convolutions run through the fallback in this process (tests read it)
_native: Any = None  # the replaced torch.nn.functional.conv2d
_state = threading.local()


def requested(environ: Any = None) -> bool:
    value = (os.environ if environ is None else environ).get(ENV, "")
    return value.strip().lower() not in ("", "0", "false", "no", "off")


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = tuple(value)
    return int(first), int(second)


def _same_padding(x: Any, kernel: tuple[int, int], dilation: tuple[int, int]) -> Any:
    """Pad x so a stride-1 conv keeps H and W; extra odd padding goes right/bottom, as in
    ATen's own "same" handling."""
    import torch.nn.functional as F

    pads = []  # F.pad order: last dim first
    for k, d in zip(reversed(kernel), reversed(dilation)):
        total = d * (k - 1)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


def conv2d(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Any:
    """torch.nn.functional.conv2d computed as unfold + batched matmul."""
    import torch
    import torch.nn.functional as F

    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    n, c, h, w = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    if c != c_per_group * groups or c_out % groups:
        raise RuntimeError(f"im2col conv2d: input has {c} channels, weight {tuple(weight.shape)} "
                           f"with groups={groups}")
    stride, dilation = _pair(stride), _pair(dilation)
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"invalid padding string {padding!r}")
        if padding == "same":
            if stride != (1, 1):
                raise ValueError("padding='same' is not supported for strided convolutions")
            x = _same_padding(x, (kh, kw), dilation)
            h, w = x.shape[-2:]
        padding = (0, 0)
    padding = _pair(padding)
    h_out = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    w_out = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)
    cols = cols.reshape(n, groups, c_per_group * kh * kw, h_out * w_out)
    # (groups, C_out/g, K) @ (N, groups, K, L) -> (N, groups, C_out/g, L)
    out = torch.matmul(weight.reshape(groups, c_out // groups, -1), cols)
    out = out.reshape(n, c_out, h_out, w_out)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out.squeeze(0) if unbatched else out


def _dispatch(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
              dilation: Any = 1, groups: int = 1) -> Any:
    global calls
    if (getattr(_state, "disabled", False) or not input.is_floating_point()
            or input.is_quantized or input.dim() not in (3, 4)):
        return _native(input, weight, bias, stride, padding, dilation, groups)
    calls += 1
    return conv2d(input, weight, bias, stride, padding, dilation, groups)


setattr(_dispatch, MARK, True)


def install() -> bool:
    """Route torch.nn.functional.conv2d through the fallback; idempotent. True if installed."""
    global _native
    import torch.nn.functional as F

    if getattr(F.conv2d, MARK, False):
        return True
    _native = F.conv2d
    _dispatch.__doc__ = (_native.__doc__ or "") + "\n(imagefactory: runs as im2col + matmul)"
    F.conv2d = _dispatch
    return True


def uninstall() -> None:
    import torch.nn.functional as F

    if _native is not None and getattr(F.conv2d, MARK, False):
        F.conv2d = _native


def installed() -> bool:
    import sys

    functional = sys.modules.get("torch.nn.functional")
    return bool(functional is not None and getattr(functional.conv2d, MARK, False))


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Native convolutions inside the block (this thread), e.g. for a reference result."""
    before = getattr(_state, "disabled", False)
    _state.disabled = True
    try:
        yield
    finally:
        _state.disabled = before
