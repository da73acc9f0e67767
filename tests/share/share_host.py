"""What the bundle tests' host is made of (the `host` fixture is in conftest.py): what is
planted, a small pci.ids, and the Host it gives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imagefactory.host.facts import Roots

FIXTURES = Path(__file__).parent.parent / "fixtures"
# Planted: none of these may appear in a bundle.
HOSTNAME = "zorblax-workstation"
USER = "quentinplanted"
HOME = f"/home/{USER}"
MAC = "3c:7c:3f:aa:bb:cc"
SERIAL = "SN0XK7Q2PLANTED"
UNIQUE_ID = "8842775300128812345"
# A small pci.ids in Debian's format (vendor, device, subsystem lines).
PCI_IDS = """\
# test list
1002  Advanced Micro Devices, Inc. [AMD/ATI]
\t7310  Navi 10 [Radeon Pro W5700X]
\t731f  Navi 10 [Radeon RX 5600 OEM/5600 XT / 5700/5700 XT]
\t\t1da2 e411  Test Vendor RX 5600 XT Pulse
\t7340  Navi 14 [Radeon RX 5500/5500M / Pro 5500M]
10de  NVIDIA Corporation
\t2330  GH100 [H100 SXM5 80GB]
"""


@dataclass(frozen=True)
class Host:
    roots: Roots
    state: Path
    planted: tuple[str, ...]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
