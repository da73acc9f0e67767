"""Hostile sysfs trees against `imagefactory doctor` (issue 12): whatever the files hold
(garbage, huge or out-of-range numbers, binary, FIFOs, /dev/zero, shell metacharacters in
uevent), doctor exits 0 or 1 with no traceback, never hangs, never names a GPU from an
out-of-range number, prints no terminal control characters, and every suggested command
still parses as the words it means."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from fuzzing import NASTY, examples
from hypothesis import given
from hypothesis import strategies as st

from imagefactory.cli import main
from imagefactory.host import gpuinfo

REPO = Path(__file__).resolve().parents[2]

number = st.one_of(st.integers(-(1 << 70), 1 << 70), st.sampled_from(
    [0, 100100, 100102, 109999, 999999, 1000000, 90010, 65535, 65536, -1, 4098, 0x731F]))
garbage = st.lists(st.one_of(st.sampled_from([*NASTY, "٣", "1_000", "0x10", "\x00", "1e3"]),
                             st.text(max_size=6)), max_size=5).map("".join)
value = st.one_of(number.map(str), garbage)
special = st.sampled_from(["regular", "regular", "regular", "fifo", "dev-zero", "dir",
                           "missing", "huge"])


def _place(path: Path, content: str, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "dir":
        path.mkdir()
    elif kind == "huge":
        path.write_text(content + "x" * 100_000)
    elif kind == "regular":
        path.write_bytes(content.encode("utf-8", "surrogateescape"))


@st.composite
def sysfs_tree(draw: st.DrawFn) -> dict[str, tuple[str, str]]:
    files: dict[str, tuple[str, str]] = {}
    for node in range(draw(st.integers(0, 3))):
        keys = ["vendor_id", "device_id", "gfx_target_version", "simd_count",
                "drm_render_minor"]
        lines = [f"{k} {draw(value)}" for k in keys if draw(st.booleans()) or k.endswith("_id")]
        if draw(st.booleans()):
            lines.append(draw(garbage))
        files[f"class/kfd/kfd/topology/nodes/{node}/properties"] = ("\n".join(lines),
                                                                    draw(special))
    for card in range(draw(st.integers(0, 2))):
        base = f"class/drm/card{card}/device"
        files[f"{base}/vendor"] = (draw(st.sampled_from(["0x1002", "0x10de"]) | garbage),
                                   draw(special))
        files[f"{base}/device"] = (draw(st.sampled_from(["0x731f", "0x7340"]) | garbage),
                                   draw(special))
        files[f"{base}/uevent"] = (f"DRIVER={draw(garbage)}\nPCI_SLOT_NAME={draw(garbage)}",
                                   draw(special))
        files[f"{base}/drm/renderD{draw(st.sampled_from(['128', '١٢٨', '99999999']))}/x"] = (
            "", "regular")
    if draw(st.booleans()):
        files["module/amdgpu/x"] = ("", "regular")
    return files


@examples(30)
@given(tree=sysfs_tree())
def test_fuzz_sysfs_never_breaks_doctor(tmp_path_factory: pytest.TempPathFactory,
                                        capsys: pytest.CaptureFixture[str],
                                        tree: dict[str, tuple[str, str]]) -> None:
    root = tmp_path_factory.mktemp("sysfs")
    for rel, (content, kind) in tree.items():
        _place(root / rel, content, kind)
    scan = gpuinfo.scan(root)  # never raises, never blocks
    for g in scan.gpus:
        assert g.arch is None or re.fullmatch(r"gfx[0-9]{1,2}[0-9][0-9a-f]", g.arch), g.arch
        assert 0 <= g.device_id <= 0xFFFF
    try:
        main(["--config", str(REPO / "variants.yaml"), "doctor", "--sysfs-root", str(root),
              "--dev-root", str(root / "dev"), "--no-docker", "--results",
              str(root / "none")])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert code in (0, 1), (code, err)
    assert "Traceback" not in out + err
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]", out + err)
    assert err.count("\n") <= 1
    for line in out.splitlines():
        if line.strip().startswith("fix: echo "):
            words = shlex.split(line.split("fix: ", 1)[1])  # quoted: parses, no injection
            assert words[:2] == ["echo", words[1]] and "|" in words and "&&" in words


@pytest.mark.parametrize("version", [109999, 101000, 100116, 1000000, 50000, -100100])
def test_out_of_range_versions_name_no_gpu(version: int) -> None:
    assert gpuinfo.decode_gfx(version) is None


def test_uevent_values_that_are_not_kernel_names_are_dropped(tmp_path: Path) -> None:
    dev = tmp_path / "class" / "drm" / "card0" / "device"
    dev.mkdir(parents=True)
    (dev / "vendor").write_text("0x1002\n")
    (dev / "device").write_text("0x731f\n")
    (dev / "uevent").write_text("DRIVER=x;rm -rf ~\nPCI_SLOT_NAME=0000:03:00.0 $(id)\n")
    (gpu,) = gpuinfo.scan(tmp_path).gpus
    assert gpu.driver is None and gpu.pci_slot is None
    (dev / "uevent").write_text("DRIVER=vfio-pci\nPCI_SLOT_NAME=0000:03:00.0\n")
    (gpu,) = gpuinfo.scan(tmp_path).gpus
    assert (gpu.driver, gpu.pci_slot) == ("vfio-pci", "0000:03:00.0")
