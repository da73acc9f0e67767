"""Shared fixtures. Integration tests drive the real Docker engine (scripts/setup-test-env.sh
starts one); nothing here is mocked."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagefactory.project import Project

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def project() -> Project:
    return Project.locate(REPO / "variants.yaml")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # a missing engine must fail the run, never skip it
        pytest.fail(f"no Docker engine answers ({exc}); run scripts/setup-test-env.sh")
    yield client
    client.close()


def context_tar(ctx) -> bytes:
    """A build context as the tar stream the engine takes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = ctx.dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for rel, src in ctx.files:
            tar.add(str(src), arcname=rel)
    return buf.getvalue()


@pytest.fixture(scope="session")
def cpu_image(docker_client, project: Project) -> str:
    """The real `cpu` variant image, built once per session from the rendered templates."""
    from imagefactory.render import Renderer

    ctx = Renderer(project).render(project.matrix.get("cpu"))
    tag = f"{project.matrix.repository}:cpu"
    stream = docker_client.api.build(fileobj=io.BytesIO(context_tar(ctx)), custom_context=True,
                                     tag=tag, rm=True, forcerm=True, decode=True)
    log = []
    for chunk in stream:
        if "error" in chunk:
            pytest.fail(f"cpu image build failed: {chunk['error']}\n{''.join(log[-20:])}")
        log.append(chunk.get("stream", ""))
    return tag
