"""One description of a GPU container run, two renderings of it.

`GpuRunSpec` is what `imagefactory test` starts (through `ContainerEngine.create_container`,
via `container_spec()`) and what `imagefactory run` execs and `run --print` shows (the
`docker run` argv, via `docker_argv()`). The flags ROCm needs are decided here, once
(`rocm_flags`), so the two cannot drift apart.

Mount fields go through docker's `--mount` parser, which reads the value as one CSV record
(Go's encoding/csv) of key=value fields: a path with a comma or a quote would otherwise start
a field of its own (`proj,source=/etc` would mount the host's /etc). `mount_arg` quotes such
a field the way that parser unquotes it, and refuses what it cannot carry (CR, LF, NUL).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import UsageError
from .base import ContainerSpec

SHM_SIZE = "8g"  # DataLoader workers share memory; still matters if a user drops --ipc=host
# ROCm's runtime needs these with a GPU passed in (the KFD's memory mapping calls).
ROCM_SECURITY_OPT = ("seccomp=unconfined",)
IPC_MODE = "host"


@dataclass(frozen=True)
class Mount:
    """A bind mount of a host path, or a named volume (`volume=True`), at `target`."""

    source: str
    target: str
    readonly: bool = False
    volume: bool = False

    @property
    def type(self) -> str:
        return "volume" if self.volume else "bind"


@dataclass(frozen=True)
class GpuRunSpec:
    """A container of `image` with the GPU devices, the host's device group ids and the
    flags ROCm needs; everything `docker run` and the engine's create call take from it."""

    image: str
    command: tuple[str, ...] = ()
    devices: tuple[tuple[str, str], ...] = ()  # (host path, container path)
    group_ids: tuple[int, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    user: str | None = None  # "uid:gid"; None: the image's own user
    workdir: str | None = None
    network: str | None = None  # None: the engine's default bridge
    name: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def security_opt(self) -> tuple[str, ...]:
        return rocm_flags(self.devices)

    def container_spec(self) -> ContainerSpec:
        """What `ContainerEngine.create_container` / `run_container` start."""
        return ContainerSpec(
            self.image, command=list(self.command) or None, name=self.name,
            environment=dict(self.env),
            devices=[f"{host}:{container}:rwm" for host, container in self.devices],
            group_add=[str(g) for g in self.group_ids],
            security_opt=list(self.security_opt), ipc_mode=IPC_MODE, shm_size=SHM_SIZE,
            network_mode=self.network, labels=dict(self.labels), mounts=self.mounts,
            user=self.user, working_dir=self.workdir)

    def docker_argv(self, *, engine: str | None = None, tty: bool = False) -> list[str]:
        """The docker CLI argv that starts the same container, removed afterwards."""
        argv = ["docker"] + (["--host", engine] if engine else []) + ["run", "--rm"]
        if self.name:
            argv.append(f"--name={self.name}")
        if self.user is not None:
            # The device groups still come from --group-add below: they are supplementary
            # groups of whatever user the container runs as.
            argv.append(f"--user={self.user}")
        # -i always, so piped input reaches the command (`... | imagefactory run V -- python3
        # -`); -t only on a terminal, or the output gets \r\n line ends.
        argv.append("-it" if tty else "-i")
        for host, container in self.devices:
            argv.append(f"--device={host}" if host == container
                        else f"--device={host}:{container}")
        argv += [f"--group-add={gid}" for gid in self.group_ids]
        argv += [f"--security-opt={opt}" for opt in self.security_opt]
        argv += [f"--ipc={IPC_MODE}", f"--shm-size={SHM_SIZE}"]
        if self.network:
            argv.append(f"--network={self.network}")
        for key, value in sorted(self.labels.items()):
            argv.append(f"--label={key}={value}")
        # --mount, not --volume: a ':' in the folder's path must not split the spec.
        argv += [f"--mount={mount_arg(m)}" for m in self.mounts]
        if self.workdir is not None:
            argv.append(f"--workdir={self.workdir}")
        for key, value in self.env.items():
            argv += ["-e", f"{key}={value}"]
        return [*argv, self.image, *self.command]


def rocm_flags(devices: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """The security options a container needs for the GPU devices it is given."""
    return ROCM_SECURITY_OPT if devices else ()


def mount_arg(mount: Mount) -> str:
    """The value of `--mount=` for `mount`, each field quoted as docker's CSV reader needs."""
    fields = [("type", mount.type), ("source", mount.source), ("target", mount.target)]
    out = [csv_field(f"{key}={value}") for key, value in fields]
    if mount.readonly:
        out.append("readonly")
    return ",".join(out)


def csv_field(text: str) -> str:
    """One field of an encoding/csv record: quoted (with " doubled) when it holds a comma or
    a quote or starts with a space, as Go's csv.Writer does. CR and LF are refused: inside a
    quoted field the reader turns CR LF into LF, so the path would not survive the trip."""
    if any(c in text for c in "\r\n\0"):
        raise UsageError(f"cannot mount {text!r}: a path with a line break or NUL cannot be "
                         "passed to docker --mount")
    if any(c in text for c in ',"') or text[:1] in (" ", "\t"):
        return '"' + text.replace('"', '""') + '"'
    return text
