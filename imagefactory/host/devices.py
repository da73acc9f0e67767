"""Which host devices and group ids give a container the AMD GPU.

ROCm needs /dev/kfd (compute) and a /dev/dri/renderD* node per GPU. The container user
opens them through the host's numeric GIDs (video, render, or whatever group owns the
node): the image's own group numbers differ from host to host.
"""

from __future__ import annotations

import contextlib
import grp
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

HOST_GROUPS = ("video", "render")


@dataclass(frozen=True)
class DeviceMapping:
    host: str
    container: str

    @classmethod
    def parse(cls, spec: str) -> DeviceMapping:
        """HOST[:CONTAINER], as docker's --device takes it (permissions suffix not supported)."""
        host, _, container = spec.partition(":")
        if not host.startswith("/") or (container and not container.startswith("/")):
            raise UsageError(f"--device {spec!r}: expected HOST[:CONTAINER] absolute paths")
        return cls(host, container or host)

    @property
    def docker_spec(self) -> str:
        return f"{self.host}:{self.container}:rwm"


@dataclass(frozen=True)
class GpuAccess:
    devices: tuple[DeviceMapping, ...]
    group_ids: tuple[int, ...]

    @property
    def found(self) -> bool:
        return bool(self.devices)


def render_nodes(dev_root: Path = Path("/dev")) -> list[Path]:
    return sorted((dev_root / "dri").glob("renderD*"), key=lambda p: int(p.name[7:] or 0))


def gpu_access(dev_root: Path = Path("/dev"), gpu: int | None = None,
               explicit: tuple[str, ...] = ()) -> GpuAccess:
    """The devices to pass and the GIDs to add: `explicit` --device specs if given, else
    /dev/kfd plus all render nodes (or only render node number `gpu`) that exist."""
    if explicit:
        devices = tuple(DeviceMapping.parse(s) for s in explicit)
    else:
        found: list[DeviceMapping] = []
        kfd = dev_root / "kfd"
        if kfd.exists():
            found.append(DeviceMapping(str(kfd), "/dev/kfd"))
        nodes = render_nodes(dev_root)
        if gpu is not None:
            if gpu < 0 or gpu >= len(nodes):
                raise UsageError(f"--gpu {gpu}: this host has {len(nodes)} render node(s) "
                                 f"under {dev_root / 'dri'}")
            nodes = [nodes[gpu]]
        found += [DeviceMapping(str(n), f"/dev/dri/{n.name}") for n in nodes]
        devices = tuple(found)
    return GpuAccess(devices, group_ids(devices))


def group_ids(devices: tuple[DeviceMapping, ...]) -> tuple[int, ...]:
    """Host GIDs of video and render, plus the group owning each passed device node."""
    gids: set[int] = set()
    for name in HOST_GROUPS:
        with contextlib.suppress(KeyError):
            gids.add(grp.getgrnam(name).gr_gid)
    for d in devices:
        with contextlib.suppress(OSError):
            gids.add(os.stat(d.host).st_gid)
    gids.discard(0)  # root's group grants nothing the user lacks and reads as a mistake
    return tuple(sorted(gids))
