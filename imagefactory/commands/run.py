"""imagefactory run: `docker run` a variant's image with the flags ROCm needs.

It execs the docker CLI with exactly the argv that --print shows, so what users copy from
--print behaves the same as what imagefactory runs (TTY, signals and exit code included).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import JobError, UsageError
from ..host.dockerrun import WORKDIR, docker_run_argv

__all__ = ["WORKDIR", "command", "container_user", "docker_run_argv"]

if TYPE_CHECKING:
    from ..appstate import AppState
    from ..matrix.loader import Matrix, Variant


@click.command("run", context_settings={"ignore_unknown_options": False})
@click.argument("variant")
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD...]")
@click.option("--profile", default=None, metavar="NAME",
              help="Env profile (default: the variant's default profile).")
@click.option("--gpu", type=click.IntRange(min=0), default=None, metavar="N",
              help="Pass only GPU N (numbered as `imagefactory doctor` lists them) and /dev/kfd.")
@click.option("--device", "devices", multiple=True, metavar="HOST[:CONTAINER]",
              help="Pass this device instead of the ones found (repeatable).")
@click.option("--print", "print_only", is_flag=True,
              help="Print the equivalent `docker run` command line instead of running it.")
@click.option("--workdir/--no-workdir", default=True, show_default=True,
              help=f"Mount the current directory at {WORKDIR} and start there.")
@click.option("--user", "user", default="auto", show_default=True, metavar="UID:GID|auto|image",
              help=f"Who the container runs as. auto: the invoking user (the one behind sudo, "
                   f"if any) when the current directory is mounted, so files written to "
                   f"{WORKDIR} belong to you; image: the image's own user (uid 1000).")
@click.option("--network", default=None, metavar="NAME",
              help="Docker network (e.g. host, none). Default: docker's default bridge.")
@click.option("--engine", default=None, metavar="URL",
              help="Docker engine (default: DOCKER_HOST or the current docker context).")
@click.option("--dev-root", type=click.Path(path_type=Path, file_okay=False), default="/dev",
              show_default=True, help="Where to look for the GPU device nodes.")
@click.option("--sysfs-root", type=click.Path(path_type=Path, file_okay=False), default="/sys",
              show_default=True, help="Where sysfs is (to number the AMD GPUs for --gpu).")
@click.pass_obj
def command(state: AppState, variant: str, cmd: tuple[str, ...], profile: str | None,
            gpu: int | None, devices: tuple[str, ...], print_only: bool, workdir: bool,
            user: str,
            network: str | None, engine: str | None, dev_root: Path, sysfs_root: Path) -> None:
    """Run VARIANT's image with the GPU passed through: /dev/kfd and the render nodes, the
    host's video/render group ids, seccomp unconfined, host IPC. Standard input is passed on;
    a terminal gets a TTY; the container is always removed afterwards. Example:

        imagefactory run rocm62-native -- python3 train.py
    """
    from ..host.devices import gpu_access
    from ..host.gpuinfo import scan
    from ..host.pick import isa_mismatch, resolve
    from ..identity import local_tag

    matrix = state.project.matrix
    # A family name (therock) picks the variant built for this card; a variant built for
    # another ISA says so. Notes go to stderr: stdout is the container's.
    isas = [g.arch for g in scan(sysfs_root).gpus if g.arch]
    if gpu is not None and gpu < len(isas):
        isas = [isas[gpu]]
    pick = resolve(matrix, variant, isas)
    v = pick.variant
    v.profile(profile)  # an unknown profile is a usage error before any note
    for note in (pick.note, isa_mismatch(matrix, v, isas, profile)):
        if note:
            click.echo(f"imagefactory: {note}", err=True)
    env = v.runtime_env(profile)  # ConfigError naming the choices for an unknown profile
    if v.rocm:
        if gpu is not None and not devices:
            devices = _amd_gpu_devices(sysfs_root, dev_root, gpu)
        access = gpu_access(dev_root, None if devices else gpu, devices)
        pairs = [(d.host, d.container) for d in access.devices]
        gids = access.group_ids
        if not access.found and not print_only:
            click.echo(f"imagefactory: warning: no {dev_root / 'kfd'} or render node: the "
                       "container runs without a GPU (`imagefactory doctor` says why)", err=True)
    else:
        if gpu is not None or devices:
            raise UsageError(f"variant '{v.name}' is CPU-only: --gpu and --device do not apply")
        pairs, gids = [], ()
    image = local_tag(matrix, v)
    argv = docker_run_argv(image, env, pairs, gids, cmd, engine=engine,
                           tty=sys.stdin.isatty() and sys.stdout.isatty(),
                           workdir=Path.cwd() if workdir else None, network=network,
                           user=container_user(user, mounted=workdir))
    if print_only:
        click.echo(shlex.join(argv))
        return
    docker = shutil.which("docker")
    if docker is None:
        raise JobError("the docker command is not installed; install the Docker CLI "
                       "(docker-ce-cli or docker.io), or run the line `--print` shows elsewhere")
    _require_image(matrix, v, engine)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(docker, argv)


def container_user(choice: str, *, mounted: bool,
                   environ: Mapping[str, str] | None = None) -> str | None:
    """The `--user` for docker run, or None for the image's own user.

    auto: the invoking user when the working directory is mounted (under sudo, the user who
    ran sudo: SUDO_UID/SUDO_GID), so what a script writes next to its code stays the user's.
    """
    environ = os.environ if environ is None else environ
    if choice == "image":
        return None
    if choice != "auto":
        if not _USER_RE.fullmatch(choice):
            raise UsageError(f"--user {choice!r}: expected UID:GID (numbers), auto or image")
        return choice if ":" in choice else f"{choice}:{choice}"
    if not mounted:
        return None
    uid, gid = os.getuid(), os.getgid()
    sudo_uid, sudo_gid = environ.get("SUDO_UID", ""), environ.get("SUDO_GID", "")
    if uid == 0 and sudo_uid.isdigit() and sudo_gid.isdigit():
        uid, gid = int(sudo_uid), int(sudo_gid)
    return f"{uid}:{gid}"


_USER_RE = re.compile(r"[0-9]{1,10}(:[0-9]{1,10})?")


def _amd_gpu_devices(sysfs_root: Path, dev_root: Path, gpu: int) -> tuple[str, ...]:
    """/dev/kfd and the render node of AMD GPU number `gpu` in KFD order (HIP's numbering,
    and doctor's); other vendors' render nodes (an Intel iGPU's renderD128) do not count.
    Empty when sysfs names no AMD GPU: then N counts the render nodes as they are."""
    from ..host.gpuinfo import scan

    gpus = [g for g in scan(sysfs_root).gpus if g.render_node]
    if not gpus:
        return ()
    if gpu >= len(gpus):
        raise UsageError(f"--gpu {gpu}: this host has {len(gpus)} AMD GPU(s) "
                         "(`imagefactory doctor` lists them)")
    node = gpus[gpu].render_node
    assert node is not None  # only GPUs with a render node were kept
    if not (dev_root / "dri" / node).exists():
        raise JobError(f"GPU {gpu} ({gpus[gpu].name}) has no {dev_root / 'dri' / node}: "
                       "`imagefactory doctor` says why")
    return (f"{dev_root / 'kfd'}:/dev/kfd", f"{dev_root / 'dri' / node}:/dev/dri/{node}")


def _require_image(matrix: Matrix, v: Variant, engine: str | None) -> None:
    """Say `imagefactory build` instead of docker's "pull access denied" for a local tag."""
    from ..engine.docker_engine import open_engine
    from ..engine.images import find_built

    client = open_engine(engine, timeout=30)
    try:
        if find_built(client, matrix, v) is None:
            raise JobError(f"no image {matrix.repository}:{v.name} in the engine: run "
                           f"`imagefactory build {v.name}` first")
    finally:
        client.close()
