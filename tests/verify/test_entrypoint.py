"""The image entrypoint (dockerfiles/files/entrypoint.sh), for real in the cpu image.

A plain `docker run` of a ROCm image without the GPU flags must say, in one line, what is
missing and the exact fix, then run the command anyway with its exit code. The GPU devices
are stand-ins: character devices made with mknod as copies of /dev/null (1:3), owned by a
group the image's user is not in, passed with --device like the real /dev/kfd and renderD128.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

LABEL = "io.imagefactory.test=entrypoint"
PREFIX = "imagefactory: GPU not usable, running on CPU only: "
COMMAND = ["sh", "-c", "echo ran as $(id -u); exit 3"]


def node(path: Path, gid: int, mode: int = 0o660) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, stat.S_IFCHR | mode, os.makedev(1, 3))
    os.chown(path, 0, gid)
    os.chmod(path, mode)  # mknod's mode went through the umask
    return path


def devices(tmp_path: Path, kfd_gid: int = 4242, render_gid: int = 4242,
            render: bool = True) -> list[str]:
    flags = [f"--device={node(tmp_path / 'kfd', kfd_gid)}:/dev/kfd"]
    if render:
        flags.append(f"--device={node(tmp_path / 'dri' / 'renderD128', render_gid)}"
                     ":/dev/dri/renderD128")
    return flags


def run(image: str, *flags: str, env_gpu: str | None = "rocm") -> subprocess.CompletedProcess:
    env = ["-e", f"IMAGEFACTORY_GPU={env_gpu}"] if env_gpu else []
    return subprocess.run(["docker", "run", "--rm", "--label", LABEL, "--network=none", *env,
                           *flags, image,
                           *COMMAND], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_no_devices_names_kfd_and_the_fix(cpu_image: str) -> None:
    r = run(cpu_image)
    assert r.stderr == PREFIX + ("/dev/kfd is missing: run with --device=/dev/kfd "
                                 "--device=/dev/dri\n")
    assert (r.returncode, r.stdout) == (3, "ran as 1000\n")  # the command still ran


def test_devices_without_group_add_name_the_gid(cpu_image: str, tmp_path: Path) -> None:
    r = run(cpu_image, *devices(tmp_path))
    assert r.stderr == PREFIX + "/dev/kfd cannot be opened by uid 1000: add --group-add 4242\n"
    assert (r.returncode, r.stdout) == (3, "ran as 1000\n")


def test_render_node_in_another_group(cpu_image: str, tmp_path: Path) -> None:
    r = run(cpu_image, *devices(tmp_path, render_gid=4343), "--group-add=4242")
    assert r.stderr == PREFIX + ("/dev/dri/renderD128 cannot be opened by uid 1000: "
                                 "add --group-add 4343\n")
    assert r.returncode == 3


def test_kfd_without_a_render_node(cpu_image: str, tmp_path: Path) -> None:
    r = run(cpu_image, *devices(tmp_path, render=False), "--group-add=4242")
    assert r.stderr == PREFIX + ("no /dev/dri/renderD* node: run with --device=/dev/dri "
                                 "(or --device=/dev/dri/renderD128)\n")


def test_with_group_add_it_is_silent(cpu_image: str, tmp_path: Path) -> None:
    r = run(cpu_image, *devices(tmp_path), "--group-add=4242")
    assert (r.returncode, r.stdout, r.stderr) == (3, "ran as 1000\n", "")


def test_quiet_and_cpu_images_are_silent(cpu_image: str) -> None:
    assert run(cpu_image, "-e", "IMAGEFACTORY_QUIET=1").stderr == ""
    r = run(cpu_image, env_gpu=None)  # the cpu image's own IMAGEFACTORY_GPU=none
    assert (r.returncode, r.stdout, r.stderr) == (3, "ran as 1000\n", "")


def test_command_replaces_the_entrypoint_shell(cpu_image: str) -> None:
    """exec: the command is PID 1, so `docker stop` signals reach it."""
    r = subprocess.run(["docker", "run", "--rm", "--label", LABEL, "--network=none", cpu_image,
                        "cat", "/proc/1/cmdline"], capture_output=True, text=True, timeout=120)
    assert r.stdout.split("\0")[0] == "cat"


def test_flags_from_run_print_make_the_devices_usable(cpu_image: str, tmp_path: Path) -> None:
    """The device and --group-add flags `imagefactory run --print` generates for a ROCm
    variant, applied to the cpu image told it is a ROCm one: the entrypoint is satisfied."""
    import shlex
    import sys

    node(tmp_path / "dev" / "kfd", 4242)
    node(tmp_path / "dev" / "dri" / "renderD128", 4343)
    line = subprocess.run([sys.executable, "-m", "imagefactory", "run", "rocm62-native",
                           "--print", "--no-workdir", f"--dev-root={tmp_path / 'dev'}"],
                          capture_output=True, text=True, check=True).stdout
    flags = [a for a in shlex.split(line) if a.startswith(("--device=", "--group-add="))]
    assert "--group-add=4242" in flags and "--group-add=4343" in flags
    r = run(cpu_image, *flags)
    assert (r.returncode, r.stdout, r.stderr) == (3, "ran as 1000\n", "")
