"""imagefactory run: real runs of the cpu image, and the printed `docker run` line for ROCm
variants on a fake device root (stand-ins: character devices made with mknod as copies of
/dev/null, 1:3, so a container can really open them)."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from suite_session import CPU_CONFIG

from imagefactory.cli import main

REPO = Path(__file__).resolve().parents[2]
SYSFS = Path(__file__).parent.parent / "fixtures" / "sysfs"
IMAGEFACTORY = [sys.executable, "-m", "imagefactory"]
ROCM_ENV = ["-e", "MIOPEN_USER_DB_PATH=/home/torch/.cache/miopen",
            "-e", "MIOPEN_CUSTOM_CACHE_DIR=/home/torch/.cache/miopen"]


def stand_in_dev(root: Path, minors: tuple[int, ...] = (128,), gid: int = 4242) -> Path:
    """kfd and dri/renderD* as /dev/null copies owned by group `gid`, mode 0660."""
    (root / "dri").mkdir(parents=True)
    for path in [root / "kfd", *(root / "dri" / f"renderD{m}" for m in minors)]:
        os.mknod(path, stat.S_IFCHR | 0o660, os.makedev(1, 3))
        os.chown(path, 0, gid)
        os.chmod(path, 0o660)  # mknod's mode went through the umask
    return root


def printed(capsys, *args: str) -> list[str]:
    try:
        main(["--config", str(REPO / "variants.yaml"), "run", "--print", *args])
    except SystemExit as exc:
        out, err = capsys.readouterr()
        assert exc.code == 0, err
    else:
        out, _ = capsys.readouterr()
    return shlex.split(out)


def video_gid() -> list[str]:
    import grp

    try:
        return [f"--group-add={grp.getgrnam('video').gr_gid}"]
    except KeyError:
        return []


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IMAGEFACTORY, "--config", str(CPU_CONFIG), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


@pytest.mark.root
def test_print_rocm_variant_with_stand_in_devices(tmp_path: Path, capsys) -> None:
    dev = stand_in_dev(tmp_path / "dev")
    gids = sorted({4242, *(int(g.split("=")[1]) for g in video_gid())})
    argv = printed(capsys, "rocm62-native", f"--dev-root={dev}", "--no-workdir",
                   "--", "python3", "-c", "print('a b')")
    assert argv == [
        "docker", "run", "--rm", "-i",
        f"--device={dev}/kfd:/dev/kfd", f"--device={dev}/dri/renderD128:/dev/dri/renderD128",
        *[f"--group-add={g}" for g in gids],
        "--security-opt=seccomp=unconfined", "--ipc=host", "--shm-size=8g",
        *ROCM_ENV[:4], "imagefactory:rocm62-native", "python3", "-c", "print('a b')"]


@pytest.mark.root
def test_print_profile_env_and_engine(tmp_path: Path, capsys) -> None:
    dev = stand_in_dev(tmp_path / "dev")
    argv = printed(capsys, "rocm62-patched", "--profile=find-fast", f"--dev-root={dev}",
                   "--engine=tcp://10.0.0.2:2375")
    assert argv[:4] == ["docker", "--host", "tcp://10.0.0.2:2375", "run"]
    env = [argv[i + 1] for i, a in enumerate(argv) if a == "-e"]
    assert env == ["MIOPEN_USER_DB_PATH=/home/torch/.cache/miopen",
                   "MIOPEN_CUSTOM_CACHE_DIR=/home/torch/.cache/miopen",
                   "MIOPEN_FIND_MODE=FAST"]
    assert f"--mount=type=bind,source={Path.cwd()},target=/work" in argv
    assert "--workdir=/work" in argv
    assert argv[5] == f"--user={os.getuid()}:{os.getgid()}"  # files in /work stay the user's
    assert argv[-1] == "imagefactory:rocm62-patched"


@pytest.mark.root
def test_print_gpu_n_counts_amd_gpus_only(tmp_path: Path, capsys) -> None:
    """On the two-GPU fixture renderD128 is an Intel iGPU: --gpu 1 is the RX 5500 XT."""
    dev = stand_in_dev(tmp_path / "dev", minors=(128, 129, 130))
    argv = printed(capsys, "rocm62-native", "--gpu=1", f"--dev-root={dev}",
                   f"--sysfs-root={SYSFS / 'two-gpus'}")
    assert [a for a in argv if a.startswith("--device")] == [
        f"--device={dev}/kfd:/dev/kfd", f"--device={dev}/dri/renderD130:/dev/dri/renderD130"]


@pytest.mark.root
def test_print_gpu_n_without_sysfs_counts_render_nodes(tmp_path: Path, capsys) -> None:
    dev = stand_in_dev(tmp_path / "dev", minors=(128, 129))
    argv = printed(capsys, "rocm62-native", "--gpu=1", f"--dev-root={dev}",
                   f"--sysfs-root={tmp_path / 'nosys'}")
    assert [a for a in argv if a.startswith("--device")] == [
        f"--device={dev}/kfd:/dev/kfd", f"--device={dev}/dri/renderD129:/dev/dri/renderD129"]


@pytest.mark.parametrize(("args", "message"), [
    (["rocm62-native", "--gpu=5", "--sysfs-root={sysfs}"],
     "--gpu 5: this host has 2 AMD GPU(s) (`imagefactory doctor` lists them)"),
    (["cpu", "--gpu=0"], "variant 'cpu' is CPU-only: --gpu and --device do not apply"),
    (["cpu", "--profile=override"], "variant 'cpu' has no profile 'override' (it offers: im2col)"),
    (["rocm62-nativ"], "unknown variant 'rocm62-nativ' (did you mean 'rocm62-native'?)"),
])
def test_usage_errors(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    args = [a.format(sysfs=SYSFS / "two-gpus") for a in args]
    with pytest.raises(SystemExit) as info:
        main(["--config", str(REPO / "variants.yaml"), "run", "--print", *args])
    assert info.value.code == 2
    _, err = capsys.readouterr()
    assert message in err and err.count("\n") == 1


def test_print_cpu_has_no_devices(capsys) -> None:
    argv = printed(capsys, "cpu", "--no-workdir")
    assert argv == ["docker", "run", "--rm", "-i", "--ipc=host", "--shm-size=8g",
                    "imagefactory:cpu"]


@pytest.mark.docker
def test_run_cpu_for_real(cpu_image: str) -> None:
    # --network=none: the tests need no network (and dodge a flaky shared bridge)
    r = run_cli("run", "cpu", "--network=none", "--", "python3", "-c", "print(1+1)")
    assert (r.returncode, r.stdout) == (0, "2\n"), r.stderr


@pytest.mark.docker
def test_run_keeps_the_exit_code_and_mounts_cwd(cpu_image: str, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)  # the image's user (uid 1000) reads it through the mount
    (tmp_path / "job.py").write_text("import torch, sys\nprint(torch.ones(2).sum().item())\n"
                                     "sys.exit(7)\n")
    (tmp_path / "job.py").chmod(0o644)
    r = run_cli("run", "cpu", "--network=none", "--", "python3", "job.py", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (7, "2.0\n"), r.stderr


@pytest.mark.docker
def test_printed_line_runs_the_same(cpu_image: str, tmp_path: Path) -> None:
    """What --print shows is what a user copies: run it through a shell."""
    line = run_cli("run", "cpu", "--print", "--network=none", "--", "python3", "-c",
                   "print('it works')").stdout
    r = subprocess.run(["sh", "-c", line], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert (r.returncode, r.stdout) == (0, "it works\n"), r.stderr


@pytest.mark.docker
def test_stdin_reaches_the_command(cpu_image: str) -> None:
    r = subprocess.run([*IMAGEFACTORY, "--config", str(CPU_CONFIG), "run", "cpu",
                        "--network=none", "--", "python3", "-"], input="print(6 * 7)\n",
                       capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout) == (0, "42\n"), r.stderr


@pytest.mark.docker
def test_image_not_built(tmp_path: Path, docker_client) -> None:
    config = tmp_path / "variants.yaml"
    config.write_text((REPO / "variants.yaml").read_text().replace(
        "repository: imagefactory\n", "repository: imagefactory-never-built\n"))
    r = subprocess.run([*IMAGEFACTORY, "--config", str(config), "run", "cpu"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert r.stderr == ("imagefactory: error: no image imagefactory-never-built:cpu in the "
                        "engine: run `imagefactory build cpu` first\n")


@pytest.mark.parametrize(("choice", "mounted", "environ", "expected"), [
    ("auto", False, {}, None),  # nothing mounted: the image's own user
    ("image", True, {}, None),
    ("4242", True, {}, "4242:4242"),
    ("4242:100", False, {}, "4242:100"),
])
def test_container_user_choices(choice: str, mounted: bool, environ: dict[str, str],
                                expected: str | None) -> None:
    from imagefactory.commands.run import container_user

    assert container_user(choice, mounted=mounted, environ=environ) == expected


def test_container_user_auto_is_the_invoking_user() -> None:
    from imagefactory.commands.run import container_user

    me = f"{os.getuid()}:{os.getgid()}"
    assert container_user("auto", mounted=True, environ={}) == me
    sudo = {"SUDO_UID": "4242", "SUDO_GID": "4343"}
    expected = "4242:4343" if os.getuid() == 0 else me  # only root is "behind sudo"
    assert container_user("auto", mounted=True, environ=sudo) == expected


@pytest.mark.parametrize("bad", ["root", "1000:", ":1000", "1 000", "1000:1000:1", "-1", ""])
def test_container_user_refuses_what_is_not_numbers(bad: str) -> None:
    from imagefactory.commands.run import container_user
    from imagefactory.errors import UsageError

    with pytest.raises(UsageError, match="--user"):
        container_user(bad, mounted=True, environ={})


def test_print_keeps_a_colon_in_the_mounted_path(tmp_path: Path, capsys,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    odd = tmp_path / "a:b"
    odd.mkdir()
    monkeypatch.chdir(odd)
    argv = printed(capsys, "cpu")
    assert f"--mount=type=bind,source={odd},target=/work" in argv


@pytest.mark.docker
@pytest.mark.root
@pytest.mark.parametrize("how", ["sudo", "explicit"])
def test_run_writes_to_the_mounted_folder_as_the_user(cpu_image: str, tmp_path: Path,
                                                      how: str) -> None:
    """A training script writes its checkpoints next to the code, owned by the user: here a
    folder owned by uid 4242 (not the image's 1000), reached as `sudo imagefactory run` or
    `--user`."""
    work = tmp_path / "work"
    work.mkdir(mode=0o755)
    os.chown(work, 4242, 4242)
    # ~ too: pip, torch hub and MIOpen write under it (the entrypoint gives another uid a
    # home of its own; the image's /home/torch is uid 1000's).
    args = ["run", "cpu", "--network=none", "--", "sh", "-c",
            "touch /work/checkpoint.pt && mkdir -p ~/.cache/torch && touch ~/.cache/torch/x "
            "&& id -u"]
    env = dict(os.environ)
    if how == "sudo":
        env.update(SUDO_UID="4242", SUDO_GID="4242")
    else:
        args.insert(2, "--user=4242:4242")
    r = subprocess.run([*IMAGEFACTORY, "--config", str(CPU_CONFIG), *args],
                       cwd=work, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL, env=env)
    assert (r.returncode, r.stdout) == (0, "4242\n"), r.stderr
    st = (work / "checkpoint.pt").stat()
    assert (st.st_uid, st.st_gid) == (4242, 4242)


def _hostile_cwd(tmp_path: Path) -> Path:
    """A working directory whose path, pasted into --mount unquoted, adds `source=/etc`."""
    odd = tmp_path / "proj,source=" / "etc"
    odd.mkdir(parents=True)
    return odd


def test_print_quotes_a_hostile_working_directory(tmp_path: Path, capsys,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import csv

    odd = _hostile_cwd(tmp_path)
    monkeypatch.chdir(odd)
    argv = printed(capsys, "cpu")
    (mount,) = [a.removeprefix("--mount=") for a in argv if a.startswith("--mount=")]
    (fields,) = list(csv.reader([mount], strict=True))  # docker reads it as one CSV record
    assert fields == ["type=bind", f"source={odd}", "target=/work"]


@pytest.mark.docker
def test_run_mounts_the_hostile_working_directory_not_etc(cpu_image: str,
                                                          tmp_path: Path) -> None:
    """Through docker's own --mount parser: /work is the folder, not the host's /etc."""
    odd = _hostile_cwd(tmp_path)
    tmp_path.chmod(0o755)
    (odd / "marker").write_text("ours\n")
    r = run_cli("run", "cpu", "--network=none", "--", "cat", "/work/marker", cwd=odd)
    assert (r.returncode, r.stdout) == (0, "ours\n"), r.stderr
