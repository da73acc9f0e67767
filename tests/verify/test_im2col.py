"""The im2col convolution fallback (dockerfiles/files/python/im2col_fallback.py and the
sitecustomize that switches it on), checked inside the real `cpu` image."""

from __future__ import annotations

import json

import pytest
from test_convcheck import convcheck_in_image, run_in_image

pytestmark = [pytest.mark.docker]

# Runs in the image: for every conv2d case shape of the conv check (and a few shapes the
# cases lack: rectangular kernels, tuples, "same"/"valid", unbatched, no bias), native
# F.conv2d against im2col_fallback.conv2d, forward and backward (input, weight, bias grads).
COMPARE = r"""
import json, torch, torch.nn.functional as F
import im2col_fallback as im
from convcheck.cases import CASES

assert not im.installed()  # the variable is unset: F.conv2d is the native kernel here
gen = torch.Generator().manual_seed(0)

def rnd(*shape):
    return torch.randn(*shape, generator=gen)

def run(conv, x, w, b, g, kw):
    leaves = [t.clone().requires_grad_(True) for t in (x, w, b) if t is not None]
    out = conv(*leaves, **kw) if b is not None else conv(*leaves, None, **kw)
    return [out.detach(), *torch.autograd.grad(out, leaves, g)]

def compare(name, x, w, b=None, **kw):
    with torch.no_grad():
        g = rnd(*F.conv2d(x, w, b, **kw).shape)
    ref, got = run(F.conv2d, x, w, b, g, kw), run(im.conv2d, x, w, b, g, kw)
    err = max(float((a - r).abs().max() / r.abs().max()) for a, r in zip(got, ref))
    shapes = [list(t.shape) for t in got] == [list(t.shape) for t in ref]
    return {"name": name, "rel_err": err, "same_shapes": shapes, "tensors": len(got)}

rows, seen = [], set()
for case in CASES:
    a = case.args
    if case.op != "conv2d" or case.id[:-4] in seen:
        continue
    seen.add(case.id[:-4])
    w = rnd(a["cout"], a["cin"] // a["groups"], a["kernel"], a["kernel"]) * 0.1
    rows.append(compare(case.id[:-4], rnd(a["batch"], a["cin"], *a["size"]), w, rnd(a["cout"]),
                        stride=a["stride"], padding=a["padding"], dilation=a["dilation"],
                        groups=a["groups"]))
x, w = rnd(2, 8, 17, 20), rnd(12, 4, 3, 5)
rows.append(compare("tuples", x, w, rnd(12), stride=(2, 1), padding=(1, 2),
                    dilation=(1, 2), groups=2))
rows.append(compare("same-even-kernel", x, rnd(6, 8, 4, 4), rnd(6), padding="same",
                    dilation=(2, 1)))
rows.append(compare("valid-no-bias", x, rnd(6, 8, 3, 3), padding="valid"))
rows.append(compare("unbatched", rnd(8, 9, 9), rnd(6, 8, 3, 3), rnd(6), padding=1))
print(json.dumps(rows))
"""


def test_im2col_matches_native_conv2d_forward_and_backward(cpu_image: str) -> None:
    proc = run_in_image(cpu_image, 'python3 -c "$COMPARE"', {"COMPARE": COMPARE})
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(rows) >= 22  # 18 conv2d case shapes + 4 extra
    for row in rows:
        assert row["same_shapes"], row
        assert row["tensors"] >= 3, row  # output and gradients were compared
        assert row["rel_err"] < 1e-4, row


# Runs in a fresh process of the image: an ordinary nn.Conv2d, no imagefactory code.
PLAIN_USER = r"""
import json, sys
torch_at_startup = "torch" in sys.modules
import torch
conv = torch.nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect")
y = conv(torch.randn(2, 3, 16, 16))
y.sum().backward()
fallback = sys.modules.get("im2col_fallback")
print(json.dumps({
    "torch_at_startup": torch_at_startup,
    "calls": fallback.calls if fallback else 0,
    "marker": getattr(torch.nn.functional.conv2d, "__imagefactory_im2col__", False),
    "grad": conv.weight.grad is not None and bool(conv.weight.grad.abs().sum() > 0),
    "shape": list(y.shape),
    "system_sitecustomize_ran": "_imagefactory_shadowed_sitecustomize" in sys.modules,
}))
"""


def plain_user(image: str, env: dict[str, str]) -> dict:
    proc = run_in_image(image, 'python3 -c "$PLAIN_USER"', {"PLAIN_USER": PLAIN_USER, **env})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_env_var_routes_an_ordinary_conv2d_through_the_fallback(cpu_image: str) -> None:
    on = plain_user(cpu_image, {"IMAGEFACTORY_CONV_IM2COL": "1"})
    assert on == {"torch_at_startup": False, "calls": 1, "marker": True, "grad": True,
                  "shape": [2, 8, 16, 16], "system_sitecustomize_ran": True}
    off = plain_user(cpu_image, {})
    assert (off["calls"], off["marker"], off["torch_at_startup"]) == (0, False, False)
    assert off["system_sitecustomize_ran"]  # Debian's sitecustomize is chained, not lost


@pytest.mark.slow
@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_profile_im2col_in_the_conv_check(cpu_image: str, isolation: str) -> None:
    # fork: the profile's env is in the zygote's env before it imports torch, so the
    # sitecustomize hook patches torch there and every forked case inherits the fallback
    rc, out, report = convcheck_in_image(
        cpu_image, f"--device cpu --profile im2col --isolation {isolation} --cases "
        "'conv2d-k3-c64-64x64-fwd,conv2d-k3-c64-64x64-bwd,conv2d-k3-c64-64x64-g4-fwd,"
        "conv2d-k3-c64-64x64-d2-fwd,conv1d-k3-c64-1024-fwd'")
    assert rc == 0, out
    assert report["profile"] == "im2col"
    assert {c["isolation"] for c in report["cases"]} == {isolation}, out
    details = {c["case"]: c["detail"] for c in report["cases"]}
    assert all(c["status"] == "ok" for c in report["cases"]), out
    assert all("via im2col" in d for case, d in details.items() if case.startswith("conv2d"))
    assert "via im2col" not in details["conv1d-k3-c64-1024-fwd"]
