"""imagefactory doctor on fixture sysfs trees and device nodes made at test time.

Device roots: real character device nodes made with mknod (these tests run as root, as the
test environment does), with the major/minor numbers of the real ones (226:128 is what the
kernel gives renderD128); doctor only stats them, never opens them.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from imagefactory.cli import main
from imagefactory.doctor.run import Identity, Options, check_node, diagnose, format_text
from imagefactory.verify.results import ConvCase, TestResult

SYSFS = Path(__file__).parent.parent / "fixtures" / "sysfs"
ALICE = Identity(uid=1000, name="alice", session_gids=frozenset({1000}),
                 member_gids=frozenset({1000}))


def make_dev(root: Path, minors: tuple[int, ...] = (128,), gid: int = 0, mode: int = 0o666,
             char: bool = True) -> Path:
    """/dev/kfd and /dev/dri/renderD<minor> under `root`: char devices, or plain files."""
    (root / "dri").mkdir(parents=True)
    nodes = [(root / "kfd", (238, 0))] + [(root / "dri" / f"renderD{m}", (226, m))
                                          for m in minors]
    for path, (major, minor) in nodes:
        if char:
            os.mknod(path, stat.S_IFCHR | mode, os.makedev(major, minor))
        else:
            path.write_text("")
        os.chown(path, 0, gid)
        os.chmod(path, mode)
    return root


def doctor(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(["doctor", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def machine(name: str) -> str:
    return f"--sysfs-root={SYSFS / name}"


@pytest.mark.root
def test_rx5600xt_ready(tmp_path: Path, capsys) -> None:
    dev = make_dev(tmp_path / "dev")
    code, out, err = doctor(capsys, machine("rx5600xt"), f"--dev-root={dev}", "--no-docker")
    assert code == 0, out + err
    assert "AMD Radeon RX 5600 XT / 5700 / 5700 XT  [Navi10, 0x731f]  gfx1010  RDNA1" in out
    assert "Ready: yes" in out and err == ""
    recs = [line.split(":")[0].strip() for line in out.split("Recommended\n")[1].splitlines()
            if not line.startswith(("note", "Ready"))]
    # Native gfx1010 code first (TheRock's wheels, the newest ROCm - the 10.0 line, then
    # 7.14 - then the source builds), the override-based wheels last.
    assert recs == ["therock10-gfx1010", "therock-gfx1010", "debian-rocm64", "rocm62-native",
                    "rocm54-source",
                    "rocm52-torch20", "rocm62-patched", "rocm52-torch113"]


@pytest.mark.root
def test_rx5500xt_gets_therock_gfx1012_then_the_override_wheels(tmp_path: Path,
                                                                project) -> None:
    d = diagnose(project.matrix, Options(sysfs_root=SYSFS / "rx5500xt",
                                         dev_root=make_dev(tmp_path / "dev"), docker=False))
    assert d.ready
    assert [r.variant for r in d.recommendations] == ["therock10-gfx1012", "therock-gfx1012",
                                                      "rocm62-patched", "rocm52-torch113"]
    first, *others = d.recommendations
    assert first.arch == "gfx1012" and first.reason.startswith("carries gfx1012 code, no "
                                                               "override: ")
    native, *override = others  # the 7.14 line, then the override wheels
    assert native.variant == "therock-gfx1012" and native.reason.startswith("carries gfx1012")
    assert all(r.arch == "gfx1012" and r.reason.startswith("an alternative; ")
               and "runs it as gfx1030" in r.reason for r in override)


@pytest.mark.root
def test_rdna2_needs_no_workaround(tmp_path: Path, capsys) -> None:
    dev = make_dev(tmp_path / "dev")
    code, out, _ = doctor(capsys, machine("rx6800xt"), f"--dev-root={dev}", "--no-docker")
    assert code == 0
    assert "(none needed): gfx1030 (RDNA2) needs none of these RDNA1 workarounds" in out


@pytest.mark.root
def test_two_gpus(tmp_path: Path, capsys) -> None:
    dev = make_dev(tmp_path / "dev", minors=(128, 129, 130))
    code, out, _ = doctor(capsys, machine("two-gpus"), f"--dev-root={dev}", "--no-docker",
                          "--json")
    assert code == 0
    data = json.loads(out)
    assert [(g["arch"], g["render_node"]) for g in data["gpus"]] == [
        ("gfx1010", "renderD129"), ("gfx1012", "renderD130")]
    by_arch = {r["arch"] for r in data["recommendations"]}
    assert by_arch == {"gfx1010", "gfx1012"}
    assert data["ready"] is True and data["problems"] == 0


def test_no_amd_gpu_gets_cpu(tmp_path: Path, capsys) -> None:
    code, out, _ = doctor(capsys, machine("no-amd-gpu"), f"--dev-root={tmp_path}", "--no-docker")
    assert code == 0
    assert "none (no AMD GPU)" in out
    assert "  cpu: no AMD GPU found" in out


@pytest.mark.root
@pytest.mark.parametrize(("name", "what"), [
    ("truncated-node", "properties:17: expected `name value`, got 'simd_per'"),
    ("garbage-node", "properties: binary data where `name value` lines were expected"),
])
def test_broken_node_file(tmp_path: Path, capsys, name: str, what: str) -> None:
    dev = make_dev(tmp_path / "dev")
    code, out, err = doctor(capsys, machine(name), f"--dev-root={dev}", "--no-docker")
    assert code == 1
    assert what in out and "fix: reload the driver" in out
    assert "Traceback" not in out + err
    assert err == ("imagefactory: error: this host is not ready: 1 problem, each listed "
                   "with its fix\n")


def test_driver_not_loaded(tmp_path: Path, capsys) -> None:
    code, out, _ = doctor(capsys, machine("amdgpu-not-loaded"), f"--dev-root={tmp_path}",
                          "--no-docker")
    assert code == 1
    fix = "\n        fix: sudo modprobe amdgpu"
    assert "FAIL  the amdgpu kernel module is not loaded" + fix in out
    assert f"FAIL  {tmp_path}/kfd (ROCm compute) is missing" + fix in out
    assert "gfx1010 (from PCI id)" in out


@pytest.mark.root
def test_missing_render_node(tmp_path: Path, capsys) -> None:
    dev = make_dev(tmp_path / "dev", minors=(129,))
    code, out, _ = doctor(capsys, machine("rx5600xt"), f"--dev-root={dev}", "--no-docker")
    assert code == 1
    assert f"FAIL  {dev}/dri/renderD128 (AMD Radeon RX 5600 XT / 5700 / 5700 XT) is missing" in out


@pytest.mark.root
def test_user_not_in_the_group(tmp_path: Path) -> None:
    dev = make_dev(tmp_path / "dev", gid=4242, mode=0o660)
    c = check_node(dev / "kfd", ALICE, "kfd")
    assert c.ok is False
    assert "alice cannot open it (group 4242, mode crw-rw----)" in c.detail
    assert c.fix == "sudo usermod -aG 4242 \"$USER\"  # then log out and back in (group changes " \
                    "apply to new logins)"


@pytest.mark.root
def test_user_added_but_not_logged_in_again(tmp_path: Path) -> None:
    dev = make_dev(tmp_path / "dev", gid=4242, mode=0o660)
    added = Identity(1000, "alice", frozenset({1000}), frozenset({1000, 4242}))
    c = check_node(dev / "dri" / "renderD128", added, "render node")
    assert c.ok is False and "log out and back in (or run `newgrp 4242`" in c.fix


@pytest.mark.root
def test_user_in_the_group_can_open(tmp_path: Path) -> None:
    dev = make_dev(tmp_path / "dev", gid=4242, mode=0o660)
    member = Identity(1000, "alice", frozenset({1000, 4242}), frozenset({1000, 4242}))
    assert check_node(dev / "kfd", member, "kfd").ok is True


@pytest.mark.root
def test_group_without_rw_bits(tmp_path: Path) -> None:
    dev = make_dev(tmp_path / "dev", gid=4242, mode=0o600)
    c = check_node(dev / "kfd", ALICE, "kfd")
    assert c.ok is False and c.fix.startswith(f"sudo chmod g+rw {dev}/kfd")


@pytest.mark.root
def test_stand_in_files_are_flagged(tmp_path: Path) -> None:
    dev = make_dev(tmp_path / "dev", char=False)
    c = check_node(dev / "kfd", Identity.of_process(), "kfd")
    assert c.ok is True and "not a character device: a stand-in?" in c.detail


@pytest.mark.root
def test_group_problem_in_the_full_report(tmp_path: Path, project) -> None:
    dev = make_dev(tmp_path / "dev", gid=4242, mode=0o660)
    d = diagnose(project.matrix, Options(sysfs_root=SYSFS / "rx5600xt", dev_root=dev,
                                         docker=False, identity=ALICE))
    assert not d.ready and len(d.problems) == 2  # kfd and renderD128
    text = format_text(d)
    assert text.count("fix: sudo usermod -aG 4242 \"$USER\"") == 2
    assert text.endswith("Ready: no (2 problems)")


def test_docker_not_answering_is_quick_and_has_a_fix(tmp_path: Path, capsys) -> None:
    start = time.monotonic()
    code, out, _ = doctor(capsys, machine("no-amd-gpu"), f"--dev-root={tmp_path}",
                          f"--engine=unix://{tmp_path}/no.sock")
    assert time.monotonic() - start < 5
    assert code == 1
    assert f"FAIL  cannot reach the Docker engine at unix://{tmp_path}/no.sock" in out
    assert "fix: sudo systemctl start docker" in out


@pytest.mark.docker
def test_docker_answers(tmp_path: Path, capsys, docker_client) -> None:
    code, out, _ = doctor(capsys, machine("no-amd-gpu"), f"--dev-root={tmp_path}")
    assert code == 0 and "ok    Docker engine " in out


@pytest.mark.root
def test_results_rank_recommendations(tmp_path: Path, project) -> None:
    """A variant that passed its tests on this arch comes first, with its score."""
    conv = tuple(ConvCase(f"case{i}", "ok", 0.1) for i in range(3))
    TestResult("rocm62-patched", "sha256:" + "a" * 64, True, (), conv, "gfx1010",
               "override").save(tmp_path / "results")
    TestResult("rocm62-native", "sha256:" + "b" * 64, True, (), conv, "gfx1030",
               None).save(tmp_path / "results")  # another arch: ignored
    (tmp_path / "results" / "broken.json").write_text("{not json")  # skipped, not fatal
    d = diagnose(project.matrix, Options(sysfs_root=SYSFS / "rx5600xt",
                                         dev_root=make_dev(tmp_path / "dev"), docker=False,
                                         results_dir=tmp_path / "results"))
    first = d.recommendations[0]
    assert first.variant == "rocm62-patched"
    assert first.reason.endswith("; tested on gfx1010: 3/3 conv cases ok")
    assert "tested" not in d.recommendations[1].reason


def test_docker_not_installed(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {"PATH": str(Path(sys.executable).parent), "DOCKER_HOST": f"unix://{tmp_path}/no.sock",
           "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "imagefactory", "doctor",
                        f"--sysfs-root={SYSFS / 'no-amd-gpu'}", f"--dev-root={tmp_path}"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "fix: install Docker: sudo apt install docker.io (Debian/Ubuntu)" in r.stdout
