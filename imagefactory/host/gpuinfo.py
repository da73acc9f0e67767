"""AMD GPUs as the kernel describes them in sysfs, read without ROCm installed.

Sources: the KFD topology (/sys/class/kfd/kfd/topology/nodes/N/properties: one `name value`
pair a line; the GPU arch is `gfx_target_version`, the same on every kernel since 5.x and
unchanged by HSA_OVERRIDE_GFX_VERSION), the DRM cards (/sys/class/drm/cardN/device: PCI
vendor, device, driver) and the PCI bus (an AMD display device with no driver bound means
amdgpu is not loaded). Everything takes a sysfs root, so tests run on fixture trees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ImagefactoryError
from ..safety import MAX_SYSFS_BYTES, read_bytes

AMD_VENDOR_ID = 0x1002  # 4098 in KFD properties (decimal there)
KFD_NODES = Path("class/kfd/kfd/topology/nodes")


@dataclass(frozen=True)
class PciModel:
    name: str  # marketing name
    chip: str  # code name
    arch: str  # gfx target the chip reports


# A small table, enough to name the cards imagefactory is for and tell them from newer ones.
# Names as in the PCI ID repository (pci-ids.ucw.cz, vendor 1002).
PCI_MODELS: dict[int, PciModel] = {
    # Navi10 (RDNA1, gfx1010)
    0x7310: PciModel("Radeon Pro W5700X", "Navi10", "gfx1010"),
    0x7312: PciModel("Radeon Pro W5700", "Navi10", "gfx1010"),
    0x7318: PciModel("Radeon RX 5700 (Navi10 variant)", "Navi10", "gfx1010"),
    0x7319: PciModel("Radeon Pro 5700 XT", "Navi10", "gfx1010"),
    0x731A: PciModel("Radeon Pro 5700", "Navi10", "gfx1010"),
    0x731B: PciModel("Radeon Pro 5600M", "Navi10", "gfx1010"),
    0x731E: PciModel("Radeon TDC-150", "Navi10", "gfx1010"),
    0x731F: PciModel("Radeon RX 5600 XT / 5700 / 5700 XT", "Navi10", "gfx1010"),
    # Navi12 (RDNA1, gfx1011)
    0x7360: PciModel("Radeon Pro 5600M / V520", "Navi12", "gfx1011"),
    # Navi14 (RDNA1, gfx1012)
    0x7340: PciModel("Radeon RX 5500 / 5500 XT / 5500M", "Navi14", "gfx1012"),
    0x7341: PciModel("Radeon Pro W5500", "Navi14", "gfx1012"),
    0x7347: PciModel("Radeon Pro W5500M", "Navi14", "gfx1012"),
    0x734F: PciModel("Radeon Pro W5300M", "Navi14", "gfx1012"),
    # RDNA2
    0x73AF: PciModel("Radeon RX 6900 XT", "Navi21", "gfx1030"),
    0x73BF: PciModel("Radeon RX 6800 / 6800 XT / 6900 XT", "Navi21", "gfx1030"),
    0x73DF: PciModel("Radeon RX 6700 / 6700 XT / 6750 XT", "Navi22", "gfx1031"),
    0x73FF: PciModel("Radeon RX 6600 / 6600 XT / 6650 XT", "Navi23", "gfx1032"),
    0x743F: PciModel("Radeon RX 6400 / 6500 XT", "Navi24", "gfx1034"),
    # RDNA3
    0x744C: PciModel("Radeon RX 7900 XT / 7900 XTX / 7900 GRE", "Navi31", "gfx1100"),
    0x747E: PciModel("Radeon RX 7700 XT / 7800 XT", "Navi32", "gfx1101"),
    0x7480: PciModel("Radeon RX 7600 / 7600 XT", "Navi33", "gfx1102"),
    # Older cards people still ask about
    0x67DF: PciModel("Radeon RX 470 / 480 / 570 / 580 / 590", "Ellesmere", "gfx803"),
    0x687F: PciModel("Radeon RX Vega 56 / 64", "Vega10", "gfx900"),
    0x66AF: PciModel("Radeon VII", "Vega20", "gfx906"),
}
_NAVI10_IDS = range(0x7310, 0x7320)  # ids not in the table above are still Navi10


def model_for(device_id: int) -> PciModel | None:
    if device_id in PCI_MODELS:
        return PCI_MODELS[device_id]
    if device_id in _NAVI10_IDS:
        return PciModel(f"Navi10 card (PCI id 0x{device_id:04x})", "Navi10", "gfx1010")
    return None


def decode_gfx(version: int) -> str | None:
    """`gfx_target_version` -> `gfxNNNN` (100100 -> gfx1010, 90010 -> gfx90a); 0 -> None (CPU).

    KFD packs major*10000 + minor*100 + stepping (kfd_topology.c); a value outside what
    that can encode as a gfx name (minor > 9, stepping > 15, major not 6-99) is not a GPU
    name at all: None, never a wrong name."""
    if version <= 0 or version > 999999:
        return None
    major, minor, stepping = version // 10000, (version // 100) % 100, version % 100
    if not 6 <= major <= 99 or minor > 9 or stepping > 15:
        return None
    return f"gfx{major}{minor}{stepping:x}"


def generation(arch: str | None) -> str:
    """The architecture family of a gfx target, as users know it."""
    if not arch:
        return "unknown"
    m = re.fullmatch(r"gfx(\d+?)([0-9a-f])([0-9a-f])", arch)
    if not m:
        return "unknown"
    major, minor = int(m.group(1)), int(m.group(2), 16)
    if major == 10:
        return "RDNA1" if minor <= 1 else "RDNA2"
    if major == 11:
        return "RDNA3" if minor == 0 else "RDNA3.5"
    if major == 12:
        return "RDNA4"
    if major == 9:
        return "CDNA" if arch in ("gfx908", "gfx90a", "gfx940", "gfx941", "gfx942") else "GCN5"
    if major == 8:
        return "GCN4"
    return "older"


def is_rdna1(arch: str | None) -> bool:
    return generation(arch) == "RDNA1"


class SysfsError(Exception):
    """A sysfs file that exists but cannot be understood (truncated, garbage, unreadable)."""


@dataclass(frozen=True)
class Gpu:
    """One AMD GPU: what KFD reports, with the PCI naming added when the id is known."""

    node: int | None  # KFD topology node number (None: seen only on the PCI bus/DRM)
    arch: str | None  # gfx1010...; None when unknown
    device_id: int
    render_minor: int | None
    pci_slot: str | None = None
    driver: str | None = None  # the kernel driver bound to the PCI device
    arch_source: str = "kfd"  # kfd | pci-id | none

    @property
    def model(self) -> PciModel | None:
        return model_for(self.device_id)

    @property
    def name(self) -> str:
        m = self.model
        return f"AMD {m.name}" if m else f"AMD GPU (PCI id 0x{self.device_id:04x})"

    @property
    def chip(self) -> str | None:
        m = self.model
        return m.chip if m else None

    @property
    def generation(self) -> str:
        return generation(self.arch)

    @property
    def render_node(self) -> str | None:
        return None if self.render_minor is None else f"renderD{self.render_minor}"


@dataclass(frozen=True)
class Scan:
    """Everything read from sysfs, plus the files that could not be understood."""

    gpus: tuple[Gpu, ...]
    errors: tuple[str, ...]
    kfd_present: bool
    amdgpu_loaded: bool
    cpu_nodes: int = 0


def parse_properties(text: str, where: str) -> dict[str, int]:
    """A KFD `properties` file: `name value` lines, values decimal integers."""
    if "\x00" in text:
        raise SysfsError(f"{where}: binary data where `name value` lines were expected")
    props: dict[str, int] = {}
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not re.fullmatch(r"[a-z0-9_]{1,64}", parts[0]):
            raise SysfsError(f"{where}:{n}: expected `name value`, got {line[:40]!r}")
        # ASCII digits only (int() also takes other scripts' digits and underscores), and
        # within 64 bits, as the kernel prints them.
        if not re.fullmatch(r"-?[0-9]{1,20}", parts[1]) or not \
                -(1 << 63) <= int(parts[1]) < (1 << 64):
            raise SysfsError(f"{where}:{n}: {parts[0]} is not a number: "
                             f"{parts[1][:20]!r}")
        props[parts[0]] = int(parts[1])
    for key in ("vendor_id", "device_id"):
        if key not in props:
            raise SysfsError(f"{where}: no `{key}` line (the file looks truncated)")
        if not 0 <= props[key] <= 0xFFFF:
            raise SysfsError(f"{where}: {key} {props[key]} is not a PCI id (0-0xffff)")
    minor = props.get("drm_render_minor")
    if minor is not None and not 0 <= minor < (1 << 20):
        raise SysfsError(f"{where}: drm_render_minor {minor} is out of range")
    return props


class _Unreadable(ImagefactoryError):
    pass


def read_sysfs(path: Path) -> str:
    """A sysfs file: regular, small (a FIFO or /dev/zero planted in a tree is refused);
    SysfsError otherwise."""
    try:
        data = read_bytes(path, MAX_SYSFS_BYTES, error=_Unreadable)
    except _Unreadable as exc:
        raise SysfsError(str(exc)) from None
    return data.decode("ascii", errors="replace")


def _read_hex(path: Path) -> int | None:
    try:
        text = read_sysfs(path).strip()
    except SysfsError:
        return None
    if not re.fullmatch(r"(0x)?[0-9a-fA-F]{1,8}", text):
        return None
    return int(text, 16)


_UEVENT_VALUES = {"PCI_SLOT_NAME": re.compile(r"[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]"),
                  "DRIVER": re.compile(r"[A-Za-z0-9_-]{1,64}")}


def _uevent(device: Path) -> dict[str, str]:
    """The uevent keys this module uses, each only when it looks as the kernel writes it
    (doctor prints them into commands)."""
    try:
        text = read_sysfs(device / "uevent")
    except SysfsError:
        return {}
    out = {}
    for line in text.split("\n"):
        key, _, value = line.partition("=")
        pattern = _UEVENT_VALUES.get(key)
        if pattern and pattern.fullmatch(value):
            out[key] = value
    return out


@dataclass(frozen=True)
class _PciDevice:
    slot: str | None
    device_id: int
    driver: str | None
    render_minors: tuple[int, ...]


def _drm_cards(sysfs: Path) -> list[_PciDevice]:
    """AMD PCI devices that have a DRM card (a driver is bound)."""
    out = []
    drm = sysfs / "class" / "drm"
    for card in sorted(drm.glob("card*"), key=lambda p: p.name):
        if not re.fullmatch(r"card\d+", card.name):
            continue  # connectors: card0-DP-1 ...
        dev = card / "device"
        if _read_hex(dev / "vendor") != AMD_VENDOR_ID:
            continue
        ev = _uevent(dev)
        minors = tuple(sorted(int(p.name[7:]) for p in (dev / "drm").glob("renderD*")
                              if re.fullmatch(r"[0-9]{1,7}", p.name[7:])))
        out.append(_PciDevice(ev.get("PCI_SLOT_NAME"), _read_hex(dev / "device") or 0,
                              ev.get("DRIVER"), minors))
    return out


def _unbound_pci(sysfs: Path, known_slots: set[str]) -> list[_PciDevice]:
    """AMD display controllers on the PCI bus with no DRM card: no driver is bound."""
    out = []
    for dev in sorted((sysfs / "bus" / "pci" / "devices").glob("*")):
        if dev.name in known_slots or _read_hex(dev / "vendor") != AMD_VENDOR_ID:
            continue
        cls = _read_hex(dev / "class")
        if cls is None or cls >> 16 != 0x03:  # 0x03xxxx: display controller
            continue
        out.append(_PciDevice(dev.name, _read_hex(dev / "device") or 0,
                              _uevent(dev).get("DRIVER"), ()))
    return out


def scan(sysfs: Path = Path("/sys")) -> Scan:
    """Every AMD GPU under `sysfs`; unreadable node files are reported, never raised."""
    errors: list[str] = []
    cards = _drm_cards(sysfs)
    by_minor = {m: c for c in cards for m in c.render_minors}
    gpus: list[Gpu] = []
    cpu_nodes = 0
    used: set[int] = set()
    nodes_dir = sysfs / KFD_NODES
    nodes = sorted((p for p in nodes_dir.glob("*") if re.fullmatch(r"[0-9]{1,6}", p.name)),
                   key=lambda p: int(p.name))
    for node in nodes:
        try:
            props = parse_properties(read_sysfs(node / "properties"), str(node / "properties"))
        except SysfsError as exc:
            errors.append(str(exc))
            continue
        version = props.get("gfx_target_version", 0)
        if version == 0 and props.get("simd_count", 0) == 0:
            cpu_nodes += 1
            continue
        if props["vendor_id"] != AMD_VENDOR_ID:
            continue
        minor = props.get("drm_render_minor")
        card = by_minor.get(minor) if minor is not None else None
        if card:
            used.add(id(card))
        arch, source = decode_gfx(version), "kfd"
        if arch is None:  # kernels before gfx_target_version: name it from the PCI id
            model = model_for(props["device_id"])
            arch, source = (model.arch, "pci-id") if model else (None, "none")
        gpus.append(Gpu(int(node.name), arch, props["device_id"], minor,
                        card.slot if card else None, card.driver if card else None, source))
    # Cards KFD does not list (amdgpu without KFD, or a driver other than amdgpu), then
    # devices with no driver at all: named from the PCI id so doctor can say what to load.
    unlisted = [c for c in cards if id(c) not in used]
    known = {c.slot for c in cards if c.slot}
    for dev in unlisted + _unbound_pci(sysfs, known):
        model = model_for(dev.device_id)
        gpus.append(Gpu(None, model.arch if model else None, dev.device_id,
                        dev.render_minors[0] if dev.render_minors else None, dev.slot,
                        dev.driver, "pci-id" if model else "none"))
    return Scan(tuple(gpus), tuple(errors), nodes_dir.is_dir(),
                (sysfs / "module" / "amdgpu").is_dir(), cpu_nodes)
