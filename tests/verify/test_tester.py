"""`imagefactory test` end to end against the real cpu image, through the CLI in a subprocess
(as users run it), plus the pieces that need no engine."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from suite_session import CPU_CONFIG, SESSION

from imagefactory.commands._render import collect
from imagefactory.engine.base import ContainerSpec
from imagefactory.engine.containers import RUN_LABEL, new_run_id
from imagefactory.host.devices import DeviceMapping, GpuAccess
from imagefactory.host.gpuinfo import decode_gfx
from imagefactory.verify.results import TestResult
from imagefactory.verify.tester import Tester, TestOptions, host_gpu_archs

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from imagefactory.cli import main; main()"]
FAST_CASES = "matmul-512-fwd"  # one case: the conv check path without its minutes


# -- no engine --------------------------------------------------------------------------

@pytest.mark.parametrize("version, arch", [(100100, "gfx1010"), (100102, "gfx1012"),
                                           (100300, "gfx1030"), (90006, "gfx906"),
                                           (90010, "gfx90a"), (0, None)])
def test_decode_gfx(version: int, arch: str | None) -> None:
    assert decode_gfx(version) == arch


def test_host_gpu_archs_reads_kfd_topology(tmp_path) -> None:
    for node, gfx in (("0", 0), ("1", 100100), ("10", 100102)):
        (tmp_path / node).mkdir()
        (tmp_path / node / "properties").write_text(
            f"cpu_cores_count 0\ngfx_target_version {gfx}\nvendor_id 4098\n")
    (tmp_path / "2").mkdir()  # a node without properties is skipped
    assert host_gpu_archs(tmp_path) == ["gfx1010", "gfx1012"]
    assert host_gpu_archs(tmp_path / "missing") == []


def test_conv_command_uses_the_gpu_only_for_rocm_variants(project) -> None:
    gpu = GpuAccess((DeviceMapping("/dev/kfd", "/dev/kfd"),), (44,))
    opts = TestOptions(quick=True, timeout=30, cases="conv2d-*")
    rocm = Tester(None, project.matrix, gpu, opts)  # type: ignore[arg-type]
    v = project.matrix.get("rocm62-patched")
    cmd = rocm.conv_command(v, v.default_profile.name)
    assert cmd[:3] == ["python3", "-m", "convcheck"]
    assert cmd[cmd.index("--device") + 1] == "cuda"
    assert cmd[cmd.index("--profile") + 1] == "override"
    assert cmd[cmd.index("--timeout") + 1] == "30"
    assert cmd[cmd.index("--cases") + 1] == "conv2d-*"
    assert "--quick" in cmd and "--json" in cmd
    assert "cuda" not in rocm.conv_command(project.matrix.get("cpu"), None)
    no_gpu = Tester(None, project.matrix, GpuAccess((), ()), TestOptions())  # type: ignore[arg-type]
    assert no_gpu.conv_command(v, None)[-1] == "cpu"


# -- the real engine ---------------------------------------------------------------------

def _imagefactory(args: list[str], cwd: Path, run_id: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "IMAGEFACTORY_RUN_ID": run_id}
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, **kw)


def _ours(client, run_id: str) -> list:
    return client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})


def _config_copy(tmp_path: Path, old: str, new: str) -> Path:
    text = CPU_CONFIG.read_text()
    assert old in text
    path = tmp_path / "variants.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.docker
@pytest.mark.slow
def test_cpu_passes_and_writes_the_result(docker_client, cpu_image, tmp_path) -> None:
    run_id = new_run_id()
    proc = _imagefactory(["--config", str(CPU_CONFIG), "test", "cpu", "--quick",
                          "--results", str(tmp_path / "res")], tmp_path, run_id)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cpu: PASSED" in proc.stdout
    assert _ours(docker_client, run_id) == []

    assert not (tmp_path / "res" / "cpu.json").exists()  # a quick run is kept apart
    data = json.loads((tmp_path / "res" / "cpu.quick.json").read_text())
    image = docker_client.images.get(cpu_image)
    assert data["variant"] == "cpu"
    assert data["image_id"] == image.id
    assert data["inputs_hash"] == image.labels["io.imagefactory.inputs-hash"]
    assert data["passed"] is True
    assert data["profile"] is None and data["device"] == "cpu" and data["quick"] is True
    assert ("host" in data and data["host"] is None) or data["host"].startswith("gfx")
    names = {c["name"] for c in data["checks"]}
    assert {"container starts", "runs as non root", "labels", "entrypoint", "python version",
            "torch version", "hip version", "conv check",
            "expected file /usr/local/bin/imagefactory-entrypoint",
            "expected env IMAGEFACTORY_VARIANT"} <= names
    assert all(c["passed"] and set(c) == {"name", "passed", "detail"} for c in data["checks"])
    assert data["conv"], "the conv check reported no cases"
    # trixie's torch 2.6 runs every quick case (fp16, SDPA, torch.compile, int8): none skipped
    for case in data["conv"]:
        assert case["status"] == "ok" and case["seconds"] > 0, case
        assert case["max_abs_err"] is not None and case["max_rel_err"] is not None
    assert data["conv_summary"] == {"ok": len(data["conv"])}
    assert data["conv_works"]["convolutions"]["verdict"] == "yes"
    assert data["torch"].startswith("2.6")
    # Versions as the image reports them; the declared one that differs is shown.
    # The manifest is scoped as its result: a quick run's beside cpu.quick.json.
    assert not (tmp_path / "res" / "manifests" / "cpu.json").exists()
    manifest = json.loads((tmp_path / "res" / "manifests" / "cpu.quick.json").read_text())
    assert manifest["torch"] == data["torch"] and manifest["image_id"] == image.id
    assert manifest["python"].startswith("3.13")
    # A CPU image, none declared, no GPU code audited; but trixie's torch brings Debian's HIP
    # runtime (python3-torch -> libtorch2.6 -> openmpi -> libucx0 -> libamdhip64-5), and the
    # manifest reports what the image has.
    assert manifest["rocm"] == data["rocm"] == "5.7.1"
    assert manifest["rocm_source"].startswith("Debian package libamdhip64-5 5.7.1")
    assert manifest["declared_rocm"] is None
    assert manifest["gpu_code"] is None and data["gpu_code"] is None
    assert "  manifest: python 3.13" in proc.stdout
    assert any(p.lower().startswith("torch==") for p in manifest["pip"])
    assert any(line.startswith("python3-torch\t2.6.0") for line in manifest["dpkg"])
    assert data["declared_torch"] == manifest["declared_torch"] == "2.6.0"
    if data["torch"] != "2.6.0":  # Debian's build reports 2.6.0+debian
        note = f"declared torch 2.6.0, the image reports {data['torch']}"
        assert manifest["note"] == note and f"  note: {note}" in proc.stdout
    assert data["started_at"] <= data["finished_at"]
    assert 0 < data["suite_seconds"] < data["seconds"] and data["conv_seconds"] > 0
    assert TestResult.load(tmp_path / "res", "cpu", "quick").passed
    print(f"suite {data['suite_seconds']:.2f} s, conv {data['conv_seconds']:.2f} s, "
          f"total {data['seconds']:.2f} s")


@pytest.mark.docker
def test_a_failing_expectation_exits_1_naming_the_check(docker_client, cpu_image,
                                                        tmp_path) -> None:
    config = _config_copy(tmp_path, 'torch: "2.6"\n', 'torch: "9.9"\n')
    run_id = new_run_id()
    proc = _imagefactory(["--config", str(config), "test", "cpu", "--cases", FAST_CASES,
                          "--results", "res"], tmp_path, run_id)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "cpu (torch version)" in err[0], proc.stderr
    assert "FAIL  torch version: torch is 2.6" in proc.stdout
    assert _ours(docker_client, run_id) == []
    result = TestResult.load(tmp_path / "res", "cpu", "subset")
    assert result is not None and not result.passed
    assert [c.name for c in result.failed_checks] == ["torch version"]
    assert "expected 9.9" in result.failed_checks[0].detail
    assert [c.status for c in result.conv] == ["ok"]  # the conv check still ran

    # The same failure, the suite run by hand: pytest's own lines as it runs, only the
    # selected checks, the result kept apart from the variant's.
    by_hand = _imagefactory(["--config", str(config), "test", "cpu", "--cases", FAST_CASES,
                             "--results", "hand", "--suite-args", "-v -k 'torch and version'"],
                            tmp_path, run_id)
    assert by_hand.returncode == 1, by_hand.stdout + by_hand.stderr
    assert "test_torch_version FAILED" in by_hand.stdout, by_hand.stdout
    assert "test_labels" not in by_hand.stdout
    assert _ours(docker_client, run_id) == []
    assert TestResult.load(tmp_path / "hand", "cpu", "subset") is None
    kept = TestResult.load(tmp_path / "hand" / "debug", "cpu", "subset")
    assert kept is not None and [c.name for c in kept.failed_checks] == ["torch version"]


@pytest.mark.docker
def test_missing_image_names_the_build_command(docker_client, tmp_path) -> None:
    config = _config_copy(tmp_path, f"repository: iftest-{SESSION}-cpu\n",
                          f"repository: imagefactory-missing-{new_run_id()}\n")
    proc = _imagefactory(["--config", str(config), "test", "cpu"], tmp_path, new_run_id())
    assert proc.returncode == 1
    assert "run `imagefactory build cpu` first" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_missing_device_is_a_usage_error(tmp_path) -> None:
    proc = _imagefactory(["--config", str(CPU_CONFIG), "test", "cpu",
                          "--device", f"{tmp_path}/nothing:/dev/kfd"], tmp_path, new_run_id())
    assert proc.returncode == 2
    assert f"--device {tmp_path}/nothing: no such device" in proc.stderr


def _stand_in_device(path: Path, gid: int) -> str:
    """A copy of /dev/null (char 1:3) owned by group `gid`, mode 0660: like /dev/kfd."""
    os.mknod(path, 0o660 | stat.S_IFCHR, os.makedev(1, 3))
    os.chown(path, 0, gid)
    path.chmod(0o660)
    return str(path)


@pytest.mark.root
@pytest.mark.docker
def test_devices_pass_through_and_open_through_the_added_group(docker_client, engine, cpu_image,
                                                               tmp_path) -> None:
    gid = 4242  # no group of the image: only --group-add can give it to the user
    kfd = _stand_in_device(tmp_path / "kfd", gid)
    render = _stand_in_device(tmp_path / "renderD128", gid)
    run_id = new_run_id()
    proc = _imagefactory(["--config", str(CPU_CONFIG), "test", "cpu",
                          "--device", f"{kfd}:/dev/kfd",
                          "--device", f"{render}:/dev/dri/renderD128",
                          "--cases", FAST_CASES, "--results", "res"], tmp_path, run_id)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _ours(docker_client, run_id) == []
    result = TestResult.load(tmp_path / "res", "cpu", "subset")
    checks = {c.name: c for c in result.checks}
    for dev in ("/dev/kfd", "/dev/dri/renderD128"):
        assert checks[f"device present {dev}"].passed
        assert checks[f"device opens {dev}"].passed
    assert checks["device groups"].passed
    assert set(result.devices) == {f"{kfd}:/dev/kfd", f"{render}:/dev/dri/renderD128"}
    assert result.device == "cpu"  # a cpu variant never runs the conv check on the GPU

    # The control: without the added group the same user cannot open the node, so the
    # "device opens" check above really tested the group.
    output: list[bytes] = []
    spec = ContainerSpec(cpu_image, network_mode="none", command=["sleep", "infinity"],
                         devices=[f"{kfd}:/dev/kfd:rwm"])
    with engine.run_container(spec, role="test") as c:
        rc = engine.exec(c.id, ["python3", "-c", "import os; os.open('/dev/kfd', os.O_RDWR)"],
                         output.append)
    assert rc != 0 and b"Permission denied" in b"".join(output)


@pytest.mark.docker
@pytest.mark.parametrize("sig, phase", [(signal.SIGINT, "suite"), (signal.SIGINT, "conv"),
                                        (signal.SIGTERM, "conv")],
                         ids=["SIGINT-suite", "SIGINT-conv", "SIGTERM-conv"])
def test_interrupted_run_removes_its_container(docker_client, cpu_image, tmp_path, sig,
                                               phase) -> None:
    run_id = new_run_id()
    proc = subprocess.Popen(
        [*CLI, "--config", str(CPU_CONFIG), "test", "cpu", "--results", "res"],
        cwd=tmp_path, env={**os.environ, "IMAGEFACTORY_RUN_ID": run_id, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        # "suite": the container is up and the testinfra suite (pytest in-process) runs;
        # "conv": convcheck has printed its first line, so its exec is streaming.
        marker = "cpu: testing " if phase == "suite" else "  | "
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(marker):
                break
        assert seen and seen[-1].startswith(marker), "".join(seen) + proc.stderr.read()
        if phase == "suite":
            deadline = time.monotonic() + 60
            while not any(c.status == "running" for c in _ours(docker_client, run_id)):
                assert time.monotonic() < deadline, "the test container never started"
                time.sleep(0.05)
            time.sleep(0.3)
        assert proc.poll() is None
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    out = "".join(seen) + out
    if phase == "suite":
        assert "suite:" not in out  # it really stopped inside the suite
    # click turns KeyboardInterrupt into Abort: cli.main says "aborted" and exits 1.
    assert proc.returncode in (1, 130), out + err
    assert "imagefactory: aborted" in err or "imagefactory: interrupted" in err
    assert "PASSED" not in out and "FAILED" not in out
    assert _ours(docker_client, run_id) == []
    assert not list((tmp_path / "res").glob("cpu*.json"))


@pytest.mark.docker
def test_the_suite_s_host_execs_through_the_engine(engine, cpu_image) -> None:
    """testinfra's Host over EngineBackend, on the real engine: the two streams apart, the
    exit code, and testinfra's modules (which run their own commands) work."""
    from imagefactory.verify.suite.backend import engine_host

    spec = ContainerSpec(cpu_image, network_mode="none", command=["sleep", "infinity"])
    with engine.run_container(spec, role="test") as c:
        host = engine_host(engine, c.id)
        cmd = host.run("echo %s; echo err >&2; exit 3", "it's quoted; not run")
        assert (cmd.rc, cmd.stdout, cmd.stderr) == (3, "it's quoted; not run\n", "err\n")
        assert host.file("/usr/local/bin/imagefactory-entrypoint").is_file
        assert not host.file("/nonexistent").exists
        assert host.check_output("printf 'h\\303\\251'") == "hé"  # not ASCII: decoded


@pytest.mark.docker
def test_no_docker_cli_is_needed(docker_client, cpu_image, tmp_path) -> None:
    """The suite reaches the container through the engine, not `docker exec`: a PATH
    without the docker CLI tests the image the same."""
    import shutil

    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python3").symlink_to(sys.executable)
    assert shutil.which("docker", path=str(bare)) is None
    run_id = new_run_id()
    env = {**os.environ, "IMAGEFACTORY_RUN_ID": run_id, "PATH": str(bare)}
    proc = subprocess.run([*CLI, "--config", str(CPU_CONFIG), "test", "cpu", "--cases",
                           FAST_CASES, "--results", "res"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = TestResult.load(tmp_path / "res", "cpu", "subset")
    assert result is not None and result.passed
    assert {"labels", "entrypoint runs command", "torch version"} <= {
        c.name for c in result.checks}
    assert _ours(docker_client, run_id) == []


def test_container_output_is_escaped_and_redacted_before_it_is_shown(project) -> None:
    # What the image prints during the conv check is shown as it streams (issue #25): OSC
    # and CSI sequences, bidi overrides and credentials must not reach the terminal raw.
    from fake_engine import FakeEngine

    from imagefactory.engine.base import ContainerInfo

    engine = FakeEngine(exec_output=b"\x1b]0;owned\x07 \x1b[2J \xe2\x80\xae x "
                                    b"https://bob:pa/ss w0rd@ghcr.io/x\nlast \x1b[31m")
    shown: list[str] = []
    tester = Tester(engine, project.matrix, GpuAccess((), ()), TestOptions(quick=True),
                    emit=collect(shown.append))
    container = ContainerInfo("c" * 64, "n", "img", "running")
    engine.containers[container.id] = container  # exec needs a running container, as Docker
    tester._run_conv(container, project.matrix.get("cpu"), None)
    text = "\n".join(shown)
    assert "  | \\x1b]0;owned\\x07 \\x1b[2J \\u202e x https://***@ghcr.io/x" in text
    for raw in ("\x1b", "\x07", "\u202e", "pa/ss", "w0rd"):
        assert raw not in text, repr(raw)
