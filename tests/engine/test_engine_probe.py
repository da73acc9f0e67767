"""The unix-socket engine probe against the real engine (it must see what docker-py sees),
default_address without docker-py, and a no-change build that never imports docker-py."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from imagefactory.engine import docker_engine as engine
from imagefactory.engine.probe import EngineProbe, ProbeError, supports
from imagefactory.errors import JobError
from imagefactory.render.renderer import HASH_LABEL

REPO = Path(__file__).resolve().parents[2]


def missing_socket() -> str:
    return f"unix:///tmp/iftest-probe-{uuid.uuid4().hex[:6]}-missing.sock"


@pytest.fixture
def probe() -> EngineProbe:
    address = engine.default_address()
    if not supports(address):
        pytest.fail(f"the probe tests need a unix-socket engine, not {address}")
    p = EngineProbe(address)
    p.ping()
    return p


@pytest.mark.docker
def test_probe_agrees_with_docker_py_on_the_cpu_image(probe: EngineProbe, docker_client,
                                                      cpu_image: str) -> None:
    ours = probe.inspect_image(cpu_image)
    theirs = docker_client.api.inspect_image(cpu_image)
    assert ours is not None
    assert ours["Id"] == theirs["Id"]
    assert ours["Config"]["Labels"] == theirs["Config"]["Labels"]
    assert HASH_LABEL in ours["Config"]["Labels"]
    base = "debian:bookworm-slim"
    assert probe.inspect_image(base)["Id"] == docker_client.api.inspect_image(base)["Id"]


@pytest.mark.docker
def test_probe_and_docker_py_agree_on_a_missing_tag(probe: EngineProbe, docker_client) -> None:
    from docker.errors import ImageNotFound

    tag = f"iftest-probe-{uuid.uuid4().hex[:8]}:missing"
    assert probe.inspect_image(tag) is None
    with pytest.raises(ImageNotFound):
        docker_client.api.inspect_image(tag)
    assert engine.Engine(tag, client=docker_client).inspect_image(tag) is None


@pytest.mark.docker
def test_probe_reports_an_engine_error_as_an_oserror(probe: EngineProbe,
                                                     docker_client) -> None:
    from docker.errors import APIError

    with pytest.raises(ProbeError, match=r"inspect UPPER:tag: 400 .*must be lowercase"):
        probe.inspect_image("UPPER:tag")
    with pytest.raises(APIError, match="400"):
        docker_client.api.inspect_image("UPPER:tag")


def test_unreachable_engine_gives_connects_message() -> None:
    address = missing_socket()
    with pytest.raises(ProbeError):
        EngineProbe(address).ping()
    with pytest.raises(JobError) as via_docker_py:
        engine.connect(address, timeout=5)
    with pytest.raises(JobError) as via_probe:
        engine.open_engine(address, timeout=5)
    assert str(via_probe.value) == str(via_docker_py.value)
    assert str(via_probe.value).startswith(f"cannot reach the Docker engine at {address}: ")


def test_engine_errors_are_recognised_without_importing_docker() -> None:
    assert engine.is_engine_error(ProbeError("x"))
    assert engine.is_engine_error(ConnectionRefusedError())
    assert not engine.is_engine_error(KeyError("x"))


def _default_address(env: dict[str, str]) -> tuple[str, bool]:
    """default_address() in a fresh interpreter: (the address, whether docker got imported)."""
    code = ("import sys; from imagefactory.engine.docker_engine import default_address; "
            "print(default_address()); print('docker' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    return out[0], out[1] == "True"


def test_default_address_reads_docker_host_and_the_cli_config_without_docker_py(
        tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONFIG")}
    env["HOME"] = str(tmp_path)  # no ~/.docker/config.json: the default context
    assert _default_address(env) == (engine.DEFAULT_SOCKET, False)
    assert _default_address({**env, "DOCKER_HOST": "tcp://h:2375"}) == ("tcp://h:2375", False)

    config = tmp_path / "cfg"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"currentContext": "default"}))
    assert _default_address({**env, "DOCKER_CONFIG": str(config)}) == (
        engine.DEFAULT_SOCKET, False)
    # Another context: docker-py resolves it (here: one that does not exist, so the socket).
    (config / "config.json").write_text(json.dumps({"currentContext": "elsewhere"}))
    assert _default_address({**env, "DOCKER_CONFIG": str(config)}) == (
        engine.DEFAULT_SOCKET, True)


@pytest.mark.docker
def test_a_no_change_build_imports_neither_docker_py_nor_jinja2(cpu_image: str,
                                                                tmp_path: Path) -> None:
    code = ("import atexit, sys; from imagefactory.cli import main; atexit.register(lambda: "
            "print('loaded', *sorted(m for m in ('docker', 'jinja2', 'requests', 'rich') "
            "if m in sys.modules), file=sys.stderr)); main()")
    argv = [sys.executable, "-c", code, "build", "cpu", "--progress", "plain", "--log-dir",
            str(tmp_path)]
    first = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr  # may render (and so import jinja2)
    run = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "skipped (up to date)" in run.stdout
    assert run.stderr.splitlines()[-1] == "loaded"
