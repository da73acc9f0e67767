"""The `docker run` argv for a variant's image: what `imagefactory run` execs and --print
shows, and the line the compatibility site offers to copy (one function, so they agree)."""

from __future__ import annotations

from pathlib import Path

SHM_SIZE = "8g"
WORKDIR = "/work"


def docker_run_argv(image: str, env: dict[str, str], devices: list[tuple[str, str]],
                    group_ids: tuple[int, ...], command: tuple[str, ...], *,
                    engine: str | None = None, tty: bool = False,
                    workdir: Path | None = None, network: str | None = None,
                    user: str | None = None) -> list[str]:
    """The docker CLI argv (design.md "Running": devices, host GIDs, seccomp, ipc, shm)."""
    argv = ["docker"] + (["--host", engine] if engine else []) + ["run", "--rm"]
    if user is not None:
        # The device groups still come from --group-add below: they are supplementary groups
        # of whatever user the container runs as.
        argv.append(f"--user={user}")
    # -i always, so piped input reaches the command (`... | imagefactory run V -- python3 -`);
    # -t only on a terminal, or the output gets \r\n line ends.
    argv.append("-it" if tty else "-i")
    for host, container in devices:
        argv.append(f"--device={host}" if host == container else f"--device={host}:{container}")
    argv += [f"--group-add={gid}" for gid in group_ids]
    if devices:
        # ROCm's runtime needs these; --shm-size still matters if a user drops --ipc=host.
        argv += ["--security-opt=seccomp=unconfined", "--ipc=host", f"--shm-size={SHM_SIZE}"]
    else:
        argv += ["--ipc=host", f"--shm-size={SHM_SIZE}"]  # DataLoader workers share memory
    if network:
        argv.append(f"--network={network}")
    if workdir is not None:
        # --mount, not --volume: a ':' in the folder's path must not split the spec.
        argv += [f"--mount=type=bind,source={workdir},target={WORKDIR}", f"--workdir={WORKDIR}"]
    for key, value in env.items():
        argv += ["-e", f"{key}={value}"]
    return [*argv, image, *command]
