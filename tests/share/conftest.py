"""The `host` fixture: a copy of the RX 5600 XT sysfs fixture with the facts a bundle reads
added, and what a bundle must never carry planted in it and in the environment."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from share_host import (
    FIXTURES,
    HOME,
    HOSTNAME,
    MAC,
    PCI_IDS,
    SERIAL,
    UNIQUE_ID,
    USER,
    Host,
    Roots,
)
from share_host import write as _write


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    sysfs = tmp_path / "sys"
    shutil.copytree(FIXTURES / "sysfs" / "rx5600xt", sysfs, symlinks=True)
    dev = sysfs / "class/drm/card0/device"
    for name, value in (("subsystem_vendor", "0x1da2"), ("subsystem_device", "0xe411"),
                        ("revision", "0xca"), ("mem_info_vram_total", "6425673728"),
                        ("vbios_version", "113-5E4111U-X4G"),
                        ("fw_version/mec_fw_version", "0x0000009c"),
                        ("fw_version/smc_fw_version", "0x002a3e00"),
                        # planted: a serial, a MAC, a product string with the user's name
                        ("serial_number", SERIAL), ("unique_id", UNIQUE_ID),
                        ("product_name", f"{USER}'s card")):
        _write(dev / name, value + "\n")
    node = sysfs / "class/kfd/kfd/topology/nodes/1"
    props = (node / "properties").read_text().replace("unique_id 0", f"unique_id {UNIQUE_ID}")
    (node / "properties").write_text(props)
    _write(node / "io_links/0/properties", "type 2\nversion_major 0\nnode_from 1\nnode_to 0\n"
                                           "weight 20\nflags 1\n")
    _write(sysfs / "class/net/enp5s0/address", MAC + "\n")
    _write(sysfs / "module/amdgpu/version", "6.8.5\n")
    proc = tmp_path / "proc"
    _write(proc / "sys/kernel/osrelease", "6.1.0-28-amd64\n")
    _write(proc / "sys/kernel/hostname", HOSTNAME + "\n")
    _write(proc / "cpuinfo", "processor\t: 0\nvendor_id\t: AuthenticAMD\n"
                             "model name\t: AMD Ryzen 5 3600 6-Core Processor\n"
                             f"serial\t: {SERIAL}\n")
    pci_ids = tmp_path / "pci.ids"
    pci_ids.write_text(PCI_IDS)
    monkeypatch.setenv("HOSTNAME", HOSTNAME)
    monkeypatch.setenv("USER", USER)
    monkeypatch.setenv("LOGNAME", USER)
    monkeypatch.setenv("HOME", HOME)
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    return Host(Roots(sysfs, proc, pci_ids), state / "imagefactory",
                (HOSTNAME, USER, HOME, MAC, SERIAL, UNIQUE_ID))
