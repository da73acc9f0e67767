"""DockerEngine: the engine interface on docker-py, against the real engine, and how the
client is made (DOCKER_HOST, docker contexts) without one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from suite_session import unique

from imagefactory.engine import docker_engine
from imagefactory.engine.base import IMAGE, ContainerSpec, EngineError, EngineUnreachable
from imagefactory.engine.docker_engine import DockerEngine
from imagefactory.identity import HASH_LABEL


def missing_socket() -> str:
    return f"unix:///tmp/iftest-engine-{uuid.uuid4().hex[:8]}.sock"


def test_unreachable_engine_is_one_line_naming_the_address() -> None:
    address = missing_socket()
    with pytest.raises(EngineUnreachable) as info:
        docker_engine.open_engine(address, timeout=5)
    text = str(info.value)
    assert text.startswith(f"cannot reach the Docker engine at {address}: ")
    assert "\n" not in text


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
    assert engine.inspect_image(f"iftest-engine-{uuid.uuid4().hex[:8]}:missing") is None
    with pytest.raises(EngineError, match="must be lowercase"):
        engine.inspect_image("UPPER:tag")


@pytest.mark.docker
def test_build_tag_exec_copy_out_and_remove(engine: DockerEngine, project) -> None:
    """A tiny context through build(), then tag, a tracked container, exec and read_file."""
    import io
    import tarfile

    repository = unique("engine")
    dockerfile = (b"FROM debian:bookworm-slim\nARG GREETING=none\nARG LATER\n"
                  b"FROM debian:bookworm-slim AS first\nARG GREETING\n"
                  b"RUN echo \"$GREETING\" > /greeting\n"
                  b"FROM first AS second\nRUN echo second > /second\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    events = list(engine.build(buf.getvalue(), target="first", build_args={"GREETING": "hi"},
                               labels={"io.imagefactory.test": repository},
                               network_mode="none"))
    assert events[-1].kind == IMAGE, events
    image_id = events[-1].text
    try:
        engine.tag(image_id, repository, "first")
        found = engine.inspect_image(f"{repository}:first")
        assert found is not None and found.id == image_id
        assert found.labels["io.imagefactory.test"] == repository
        listed = engine.list_images(label=f"io.imagefactory.test={repository}")
        assert [i.id for i in listed] == [image_id]
        spec = ContainerSpec(image_id, command=["sleep", "infinity"], network_mode="none")
        out: list[bytes] = []
        with engine.run_container(spec, role="test-engine") as c:
            assert engine.exec(c.id, ["cat", "/greeting"], out.append) == 0
            assert engine.read_file(c.id, "/greeting") == b"hi\n"
            assert engine.read_file(c.id, "/second") is None  # --target stopped before it
            assert engine.exec(c.id, ["sh", "-c", "exit 3"]) == 3
            # stderr apart (on_stderr, what testinfra's results need), else with stdout
            cmd = ["sh", "-c", "echo out; echo err >&2; echo out2; exit 4"]
            so: list[bytes] = []
            se: list[bytes] = []
            assert engine.exec(c.id, cmd, so.append, on_stderr=se.append) == 4
            assert (b"".join(so), b"".join(se)) == (b"out\nout2\n", b"err\n")
            both: list[bytes] = []
            assert engine.exec(c.id, cmd, both.append) == 4
            assert sorted(b"".join(both).splitlines()) == [b"err", b"out", b"out2"]
        assert b"".join(out) == b"hi\n"
        run_label = f"io.imagefactory.run={c.labels['io.imagefactory.run']}"
        assert engine.list_containers(label=run_label) == []
    finally:
        assert engine.remove_image(f"{repository}:first")
        engine.remove_image(image_id)
    assert engine.inspect_image(f"{repository}:first") is None
    assert not engine.remove_image(f"{repository}:first")

