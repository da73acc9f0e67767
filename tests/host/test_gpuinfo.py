"""sysfs parsing and the PCI id table, on the fixture machines in tests/fixtures/sysfs."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagefactory.host import gpuinfo
from imagefactory.host.gpuinfo import (
    SysfsError,
    decode_gfx,
    generation,
    model_for,
    parse_properties,
)

SYSFS = Path(__file__).parent.parent / "fixtures" / "sysfs"


@pytest.mark.parametrize(("version", "arch"), [
    (100100, "gfx1010"), (100101, "gfx1011"), (100102, "gfx1012"), (100300, "gfx1030"),
    (100302, "gfx1032"), (110000, "gfx1100"), (90010, "gfx90a"), (90006, "gfx906"),
    (80003, "gfx803"), (0, None),
])
def test_decode_gfx(version: int, arch: str | None) -> None:
    assert decode_gfx(version) == arch


@pytest.mark.parametrize(("arch", "gen"), [
    ("gfx1010", "RDNA1"), ("gfx1012", "RDNA1"), ("gfx1030", "RDNA2"), ("gfx1034", "RDNA2"),
    ("gfx1100", "RDNA3"), ("gfx1151", "RDNA3.5"), ("gfx1201", "RDNA4"), ("gfx90a", "CDNA"),
    ("gfx900", "GCN5"), ("gfx803", "GCN4"), (None, "unknown"), ("nonsense", "unknown"),
])
def test_generation(arch: str | None, gen: str) -> None:
    assert generation(arch) == gen


def test_pci_table() -> None:
    assert model_for(0x731F).name == "Radeon RX 5600 XT / 5700 / 5700 XT"
    assert model_for(0x731F).arch == "gfx1010"
    for navi14 in (0x7340, 0x7341, 0x7347, 0x734F):
        assert model_for(navi14).arch == "gfx1012"
    assert model_for(0x7315).chip == "Navi10"  # anywhere in 0x7310-0x731F is Navi10
    assert model_for(0x73BF).arch == "gfx1030"
    assert model_for(0x1234) is None


def test_parse_properties() -> None:
    props = parse_properties("gfx_target_version 100100\nvendor_id 4098\ndevice_id 29471\n", "p")
    assert props == {"gfx_target_version": 100100, "vendor_id": 4098, "device_id": 29471}


@pytest.mark.parametrize(("text", "message"), [
    ("\x7fELF\x00\x01", "binary data"),
    ("simd_count 72\nlds_si", "p:2: expected `name value`, got 'lds_si'"),
    ("simd_count 72\nvendor_id 4098\n", "no `device_id` line (the file looks truncated)"),
    ("vendor_id 0x1002\ndevice_id 1\n", "vendor_id is not a number"),
])
def test_parse_properties_rejects(text: str, message: str) -> None:
    with pytest.raises(SysfsError, match=r"^p") as info:
        parse_properties(text, "p")
    assert message in str(info.value)


def test_rx5600xt() -> None:
    s = gpuinfo.scan(SYSFS / "rx5600xt")
    assert s.kfd_present and s.amdgpu_loaded and s.cpu_nodes == 1 and not s.errors
    (g,) = s.gpus
    assert (g.node, g.arch, g.device_id, g.render_node) == (1, "gfx1010", 0x731F, "renderD128")
    assert (g.pci_slot, g.driver, g.arch_source) == ("0000:03:00.0", "amdgpu", "kfd")
    assert g.name == "AMD Radeon RX 5600 XT / 5700 / 5700 XT" and g.generation == "RDNA1"


def test_rx5500xt() -> None:
    (g,) = gpuinfo.scan(SYSFS / "rx5500xt").gpus
    assert (g.arch, g.chip, g.device_id) == ("gfx1012", "Navi14", 0x7340)


def test_rdna2() -> None:
    (g,) = gpuinfo.scan(SYSFS / "rx6800xt").gpus
    assert (g.arch, g.generation) == ("gfx1030", "RDNA2")


def test_two_gpus_skip_the_intel_card() -> None:
    s = gpuinfo.scan(SYSFS / "two-gpus")
    assert [(g.arch, g.render_node, g.pci_slot) for g in s.gpus] == [
        ("gfx1010", "renderD129", "0000:03:00.0"), ("gfx1012", "renderD130", "0000:08:00.0")]


def test_no_amd_gpu() -> None:
    s = gpuinfo.scan(SYSFS / "no-amd-gpu")
    assert s.gpus == () and not s.kfd_present and not s.amdgpu_loaded


def test_card_without_driver_is_named_from_its_pci_id() -> None:
    s = gpuinfo.scan(SYSFS / "amdgpu-not-loaded")
    (g,) = s.gpus
    assert not s.amdgpu_loaded and not s.kfd_present
    assert (g.node, g.driver, g.arch, g.arch_source) == (None, None, "gfx1010", "pci-id")


@pytest.mark.parametrize("machine", ["truncated-node", "garbage-node"])
def test_broken_node_is_reported_not_raised(machine: str) -> None:
    s = gpuinfo.scan(SYSFS / machine)
    (err,) = s.errors
    assert err.startswith(str(SYSFS / machine / "class/kfd/kfd/topology/nodes/1/properties"))
    # The card is still known through DRM, named from its PCI id.
    (g,) = s.gpus
    assert (g.arch, g.arch_source, g.render_node) == ("gfx1010", "pci-id", "renderD128")


def test_old_kernel_without_gfx_target_version() -> None:
    (g,) = gpuinfo.scan(SYSFS / "old-kernel").gpus
    assert (g.node, g.arch, g.arch_source) == (1, "gfx1010", "pci-id")


def test_missing_sysfs_root(tmp_path: Path) -> None:
    s = gpuinfo.scan(tmp_path / "nothing")
    assert s.gpus == () and s.errors == ()
