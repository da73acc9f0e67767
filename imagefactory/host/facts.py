"""Host facts for a result bundle: what identifies the hardware and its stack, never the person.

Read from sysfs and procfs under roots that tests point at fixture trees. Only fields with a
fixed shape are kept (ids, versions, sizes, flags); anything that could name a machine or a
person (hostname, serial numbers, KFD `unique_id`, MAC addresses, paths, user names) is never
read at all, so it cannot leak through a field added later by mistake: the allow-list is the
code below. The marketing name comes from Debian's pci.ids (package pci.ids) where present,
else from the small table in host/gpuinfo.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..safety import read_bytes
from .gpuinfo import (
    AMD_VENDOR_ID,
    KFD_NODES,
    SysfsError,
    decode_gfx,
    model_for,
    parse_properties,
    read_sysfs,
)

PCI_IDS = Path("/usr/share/misc/pci.ids")
_MAX_PCI_IDS = 8 << 20  # Debian's is ~1.4 MB
# KFD io_links flags (kfd_crat.h CRAT_IOLINK_FLAGS_NO_ATOMICS_32_BIT / _64_BIT): set on a
# PCIe link that cannot do the atomics ROCm's queues need.
_NO_ATOMICS = (1 << 2) | (1 << 3)
_IOLINK_PCIE = 2
# KFD properties that are firmware versions (the rest of the file is topology).
_KFD_FW = ("fw_version", "sdma_fw_version")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~:-]{0,63}")
_VBIOS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_FW_FILE = re.compile(r"[a-z0-9_]{1,40}_fw_version")
_PRINTABLE = re.compile(r"[\x20-\x7e]{1,120}")


@dataclass(frozen=True)
class Roots:
    """Where facts are read from: the real system, or fixture trees in tests."""

    sysfs: Path = Path("/sys")
    proc: Path = Path("/proc")
    pci_ids: Path = PCI_IDS


SYSTEM = Roots()


def _text(path: Path, pattern: re.Pattern[str]) -> str | None:
    """A one-line sysfs/procfs value when it has the expected shape, else None."""
    try:
        value = read_sysfs(path).strip()
    except SysfsError:
        return None
    return value if pattern.fullmatch(value) else None


def _hex(path: Path, bits: int = 16) -> str | None:
    value = _text(path, re.compile(r"(0x)?[0-9a-fA-F]{1,8}"))
    if value is None:
        return None
    number = int(value, 16)
    return f"0x{number:0{bits // 4}x}" if number < (1 << bits) else None


def _int(path: Path) -> int | None:
    value = _text(path, re.compile(r"[0-9]{1,20}"))
    return int(value) if value is not None and int(value) < (1 << 63) else None


def pci_names(pci_ids: Path, vendor: int, device: int, subvendor: int | None,
              subdevice: int | None) -> tuple[str | None, str | None]:
    """(device name, subsystem name) from a pci.ids file; None where it has none, the file
    is missing or it cannot be read (a bundle is made anyway)."""
    try:
        data = read_bytes(pci_ids, _MAX_PCI_IDS)
    except Exception:
        return None, None
    text = data.decode("utf-8", errors="replace")
    want_vendor, want_device = f"{vendor:04x}", f"{device:04x}"
    want_sub = (f"{subvendor:04x} {subdevice:04x}" if subvendor is not None
                and subdevice is not None else None)
    in_vendor = in_device = False
    name = sub = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line[0] != "\t":
            if in_vendor:
                break  # the vendor's block is over
            in_vendor = line[:4].lower() == want_vendor and line[4:6] == "  "
            continue
        if not in_vendor:
            continue
        if line.startswith("\t\t"):
            if in_device and want_sub and line[2:11].lower() == want_sub:
                sub = line[11:].strip()
            continue
        if in_device:
            break  # the device's subsystems are over
        in_device = line[1:5].lower() == want_device
        if in_device:
            name = line[5:].strip()
    return _clean_name(name), _clean_name(sub)


def _clean_name(name: str | None) -> str | None:
    return name if name and _PRINTABLE.fullmatch(name) else None


def pcie_atomics(node: Path) -> bool | None:
    """True/False from the node's PCIe io_link flags; None when KFD lists no PCIe link."""
    seen = None
    for link in sorted((node / "io_links").glob("*")):
        try:
            text = read_sysfs(link / "properties")
        except SysfsError:
            continue
        props: dict[str, int] = {}
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if re.fullmatch(r"[0-9]{1,12}", value):
                props[key] = int(value)
        if props.get("type") != _IOLINK_PCIE or "flags" not in props:
            continue
        ok = not props["flags"] & _NO_ATOMICS
        seen = ok if seen is None else seen and ok
    return seen


def _card_for(sysfs: Path, render_minor: int | None) -> Path | None:
    """The PCI device directory of the DRM card with this render node."""
    if render_minor is None:
        return None
    for card in sorted((sysfs / "class" / "drm").glob("card*")):
        if re.fullmatch(r"card\d+", card.name) and \
                (card / "device" / "drm" / f"renderD{render_minor}").exists():
            return card / "device"
    return None


def _firmware_blocks(device: Path | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if device is not None:  # amdgpu's fw_version/<block>_fw_version files (hex)
        for path in sorted((device / "fw_version").glob("*_fw_version"))[:64]:
            if _FW_FILE.fullmatch(path.name):
                value = _hex(path, 32)
                if value is not None:
                    out[path.name] = value
    return out


def gpus(roots: Roots) -> list[dict[str, Any]]:
    """One entry per AMD GPU that KFD lists, in node order."""
    out = []
    nodes_dir = roots.sysfs / KFD_NODES
    nodes = sorted((p for p in nodes_dir.glob("*") if re.fullmatch(r"[0-9]{1,6}", p.name)),
                   key=lambda p: int(p.name))
    for node in nodes:
        try:
            props = parse_properties(read_sysfs(node / "properties"), str(node))
        except SysfsError:
            continue
        version = props.get("gfx_target_version", 0)
        if props["vendor_id"] != AMD_VENDOR_ID or (version == 0 and
                                                   props.get("simd_count", 0) == 0):
            continue
        device = _card_for(roots.sysfs, props.get("drm_render_minor"))
        pci: dict[str, str | None] = {"vendor": f"0x{props['vendor_id']:04x}",
                                      "device": f"0x{props['device_id']:04x}",
                                      "subsystem_vendor": None, "subsystem_device": None,
                                      "revision": None}
        if device is not None:
            pci["subsystem_vendor"] = _hex(device / "subsystem_vendor")
            pci["subsystem_device"] = _hex(device / "subsystem_device")
            pci["revision"] = _hex(device / "revision", 8)
        sv, sd = pci["subsystem_vendor"], pci["subsystem_device"]
        name, sub = pci_names(roots.pci_ids, props["vendor_id"], props["device_id"],
                              int(sv, 16) if sv else None, int(sd, 16) if sd else None)
        source = "pci.ids" if name else None
        if name is None and (model := model_for(props["device_id"])) is not None:
            name, source = model.name, "imagefactory"
        out.append({
            "gfx": decode_gfx(version),
            "gfx_target_version": version if 0 < version <= 999999 else None,
            "pci": pci,
            "name": name,
            "subsystem_name": sub,
            "name_source": source,
            "vram_bytes": _int(device / "mem_info_vram_total") if device else None,
            "vbios": _text(device / "vbios_version", _VBIOS) if device else None,
            "firmware": {f"kfd_{k}": props[k] for k in _KFD_FW
                         if 0 <= props.get(k, -1) < (1 << 32)},
            "firmware_blocks": _firmware_blocks(device),
            "pcie_atomics": pcie_atomics(node),
        })
    return out


def cpu_model(proc: Path) -> str | None:
    try:
        text = read_bytes(proc / "cpuinfo", 1 << 20).decode("utf-8", errors="replace")
    except Exception:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return _clean_name(" ".join(value.split()))
    return None


def collect(roots: Roots = SYSTEM) -> dict[str, Any]:
    """The host's facts, as they go into a bundle (plain JSON values)."""
    return {
        "kernel": _text(roots.proc / "sys" / "kernel" / "osrelease", _VERSION),
        "cpu": cpu_model(roots.proc),
        "amdgpu_module": _text(roots.sysfs / "module" / "amdgpu" / "version", _VERSION),
        "kfd": (roots.sysfs / KFD_NODES).is_dir(),
        "gpus": gpus(roots),
    }
