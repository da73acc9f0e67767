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
def cpu_image(docker_client, project: Project, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The real `cpu` variant image, built (or found up to date) once per session through
    imagefactory's builder; the tag moves only when the build succeeds."""
    from imagefactory.build.builder import Builder, BuildOptions
    from imagefactory.build.progress import PlainView, failure_lines
    from imagefactory.render.renderer import Renderer

    variant = project.matrix.get("cpu")
    ctx = Renderer(project).render(variant)
    options = BuildOptions(log_dir=tmp_path_factory.mktemp("cpu-build-logs"))
    builder = Builder(project.matrix, {variant.name: ctx}, {"engine": docker_client}, options,
                      PlainView([variant.name], quiet=True))
    result = builder.run(variant, "engine", None)
    if not result.ok:
        pytest.fail("cpu image build failed:\n" + "\n".join(failure_lines(result)))
    assert result.tag is not None
    return result.tag
