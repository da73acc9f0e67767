"""DockerEngine: how the client is made (DOCKER_HOST, docker contexts, TLS) without an
engine, and its image records against docker-py's own. What the interface promises is
tests/engine/test_contract.py's, on this engine and the fake alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagefactory.engine import docker_engine
from imagefactory.engine.base import ContainerSpec, EngineUnreachable
from imagefactory.engine.docker_engine import DockerEngine
from imagefactory.identity import HASH_LABEL


def test_an_unknown_context_name_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    with pytest.raises(EngineUnreachable, match="no such docker context"):
        docker_engine.open_engine("nosuchcontext", timeout=5)


def _default_address(env: dict[str, str]) -> tuple[str, bool]:
    """default_address() in a fresh interpreter: (the address, whether docker got imported)."""
    code = ("import sys; from imagefactory.engine.docker_engine import default_address; "
            "print(default_address()); print('docker' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    return out[0], out[1] == "True"


def test_default_address_reads_docker_host_and_the_cli_config(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT")}
    env["HOME"] = str(tmp_path)  # no ~/.docker/config.json: the default context
    assert _default_address(env) == (docker_engine.DEFAULT_SOCKET, False)
    assert _default_address({**env, "DOCKER_HOST": "tcp://h:2375"}) == ("tcp://h:2375", False)
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"currentContext": "default"}))
    assert _default_address({**env, "DOCKER_CONFIG": str(config)}) == (
        docker_engine.DEFAULT_SOCKET, False)
    (config / "config.json").write_text(json.dumps({"currentContext": "elsewhere"}))
    assert _default_address({**env, "DOCKER_CONFIG": str(config)}) == ("elsewhere", False)
    assert _default_address({**env, "DOCKER_CONTEXT": "other"}) == ("other", False)


def test_a_docker_context_gives_its_host_and_tls_material(tmp_path: Path, monkeypatch) -> None:
    """A context made as `docker context create` makes it: host and TLS files from its
    store, as docker-py's ContextAPI reads them."""
    from docker.context import Context
    from docker.tls import TLSConfig

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    # docker-py keeps contexts next to the config file it finds: make one first.
    (tmp_path / "config.json").write_text("{}")
    certs = tmp_path / "src"
    certs.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (certs / name).write_text("x")
    ctx = Context("remote", host="tcp://10.9.8.7:2376")
    ctx.set_endpoint("docker", host="tcp://10.9.8.7:2376", tls_cfg=TLSConfig(
        client_cert=(str(certs / "cert.pem"), str(certs / "key.pem")),
        ca_cert=str(certs / "ca.pem"), verify=True))
    ctx.save()
    kwargs = docker_engine.client_kwargs("remote")
    assert kwargs["base_url"].endswith("://10.9.8.7:2376")  # docker-py: https:// with TLS
    tls = kwargs["tls"]
    assert tls.verify and tls.cert and Path(tls.cert[0]).name == "cert.pem"
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "remote"}))
    assert docker_engine.client_kwargs(None)["base_url"] == kwargs["base_url"]


def test_tls_environment_applies_to_tcp_addresses(tmp_path: Path, monkeypatch) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path))
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    kwargs = docker_engine.client_kwargs(None)
    assert kwargs["base_url"] == "tcp://127.0.0.1:1" and kwargs["tls"].verify
    assert "tls" not in docker_engine.client_kwargs("unix:///var/run/docker.sock")


@pytest.mark.docker
def test_inspect_agrees_with_docker_py(engine: DockerEngine, docker_client,
                                       cpu_image: str) -> None:
    info = engine.inspect_image(cpu_image)
    raw = docker_client.api.inspect_image(cpu_image)
    assert info is not None and info.id == raw["Id"]
    assert dict(info.labels) == raw["Config"]["Labels"] and HASH_LABEL in info.labels
    assert cpu_image in info.tags and info.size == raw["Size"]


@pytest.mark.docker
def test_exec_keeps_stderr_apart_when_asked(engine: DockerEngine) -> None:
    """on_stderr (what testinfra's results need) gets stderr alone; without it both streams
    come to on_output, as `docker exec` shows them."""
    spec = ContainerSpec("debian:bookworm-slim", command=["sleep", "infinity"],
                         network_mode="none")
    cmd = ["sh", "-c", "echo out; echo err >&2; echo out2; exit 4"]
    with engine.run_container(spec, role="test-engine") as c:
        so: list[bytes] = []
        se: list[bytes] = []
        assert engine.exec(c.id, cmd, so.append, on_stderr=se.append) == 4
        assert (b"".join(so), b"".join(se)) == (b"out\nout2\n", b"err\n")
        both: list[bytes] = []
        assert engine.exec(c.id, cmd, both.append) == 4
        assert sorted(b"".join(both).splitlines()) == [b"err", b"out", b"out2"]

