"""Registry cache: a build exports its cache to a real registry (Debian's docker-registry on
127.0.0.1), and an engine that has never seen the image rebuilds it from that cache.

This engine's BuildKit (the buildx `docker` driver of dockerd 20.10) exports only the inline
cache (the pushed image carries it); `type=registry` export needs a docker-container, remote
or kubernetes builder, whose BuildKit image (moby/buildkit) Docker Hub would serve and no
Debian package provides. The empty engine is a second dockerd of our own (own data root, so
its own BuildKit cache): nothing local can serve the rebuild, only the registry.
"""

from __future__ import annotations

import io
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_fixture import Registry  # tests/ is on sys.path (rootdir conftest)
from second_engine import second_dockerd

from imagefactory.engine import buildx

pytestmark = [pytest.mark.docker, pytest.mark.buildx]


def _context(text: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def empty_engine(docker_client) -> Iterator[str]:
    """A dockerd of our own with nothing but the base image (as in tests/build's multi-engine
    test: own socket, data and exec roots, own bridge, no iptables)."""
    with second_dockerd(docker_client, "buildx", 214) as address:
        yield address


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "registry").start()
    yield reg
    reg.cleanup()


@pytest.mark.root  # a second dockerd (and its bridge)
def test_rebuild_on_an_empty_engine_reuses_the_registry_cache(
        registry: Registry, empty_engine: str, docker_client) -> None:
    import docker

    token = uuid.uuid4().hex[:12]
    # Random bytes: a step that ran again could never give the same layer.
    dockerfile = (f"FROM debian:bookworm-slim\n"
                  f"RUN echo compiling {token} && head -c 1000000 /dev/urandom > /artifact\n"
                  f"RUN echo packaging {token} && sha256sum /artifact > /artifact.sha256\n")
    ref = f"{registry.host}/iftest-buildx-cache-{token}:v1"

    lines: list[str] = []
    first = buildx.build(buildx.BuildxRequest(_context(dockerfile), tags=(ref,), push=True,
                                              cache_to=("type=inline",)), lines.append)
    assert first.error is None, "\n".join(lines[-20:])
    assert f"compiling {token}" in lines
    assert f"iftest-buildx-cache-{token}" in registry.repositories()
    pushed = docker_client.images.get(ref)
    pushed_layers = pushed.attrs["RootFS"]["Layers"]
    docker_client.images.remove(ref)  # the first engine keeps nothing of it

    other = docker.DockerClient(base_url=empty_engine)
    try:
        from docker.errors import ImageNotFound

        with pytest.raises(ImageNotFound):
            other.images.get(ref)
        lines = []
        again = buildx.build(buildx.BuildxRequest(
            _context(dockerfile), address=empty_engine,
            cache_from=(f"type=registry,ref={ref}",)), lines.append)
        assert again.error is None, "\n".join(lines[-20:])
        text = "\n".join(lines)
        assert f"importing cache manifest from {ref}" in text
        # Both RUN steps came from the registry: neither ran, and the layers are the same.
        assert f"compiling {token}" not in lines and f"packaging {token}" not in lines
        cached = [line for line in lines if line.endswith(" CACHED")]
        assert len(cached) >= 2, text
        assert again.image_id is not None
        rebuilt = other.images.get(again.image_id)
        assert rebuilt.attrs["RootFS"]["Layers"] == pushed_layers

        # The control: without the cache the same Dockerfile runs its steps again.
        lines = []
        cold = buildx.build(buildx.BuildxRequest(
            _context(dockerfile.replace("FROM debian:bookworm-slim",
                                        "FROM debian:bookworm-slim AS control")),
            address=empty_engine, no_cache=True), lines.append)
        assert cold.error is None and f"compiling {token}" in lines
        assert other.images.get(cold.image_id).attrs["RootFS"]["Layers"] != pushed_layers
    finally:
        other.close()


def test_registry_cache_export_on_the_docker_driver_is_refused_in_one_line(
        registry: Registry) -> None:
    """`type=registry` cache export needs another builder driver: the error says so."""
    outcome = buildx.build(buildx.BuildxRequest(
        _context("FROM debian:bookworm-slim\nRUN true\n"),
        cache_to=(f"type=registry,ref={registry.host}/iftest-buildx-nocache:c,mode=max",)))
    if outcome.error is None:  # a newer engine (containerd image store) can export it
        pytest.skip("this engine's BuildKit exports registry caches")
    assert "cache export" in outcome.error.lower() and "docker driver" in outcome.error
