"""Shared fixtures. Integration tests drive the real Docker engine (scripts/setup-test-env.sh
starts one); nothing here is mocked.

Markers say what a test needs and skip it cleanly without: `docker` (an engine answers;
added by itself to every test using an engine fixture), `root`, `network` (PyPI or the
Debian archive answer). CI sets IMAGEFACTORY_REQUIRE_DOCKER=1 so that a missing engine
fails the run instead of skipping half of it.
"""

from __future__ import annotations

import functools
import io
import os
import socket
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from suite_session import CPU_CONFIG, SESSION

from imagefactory.project import Project

REPO = Path(__file__).resolve().parent.parent
ENGINE_FIXTURES = {"docker_client", "engine", "cpu_image"}
# Labels every container this session makes, in this process and in the CLIs it runs.
os.environ["IMAGEFACTORY_TEST_SESSION"] = SESSION


@functools.cache
def engine_answers() -> str | None:
    """None when a Docker engine answers, else why not."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        client.close()
    except Exception as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


@functools.cache
def network_answers() -> bool:
    for host in ("deb.debian.org", "pypi.org"):
        try:
            socket.create_connection((host, 80 if host.startswith("deb") else 443), 5).close()
            return True
        except OSError:
            continue
    return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.docker)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.skip("needs root (device nodes, chown, a second dockerd)")
    if item.get_closest_marker("docker"):
        why = engine_answers()
        if why is not None:
            if os.environ.get("IMAGEFACTORY_REQUIRE_DOCKER") == "1":
                pytest.fail(f"no Docker engine answers ({why}); run scripts/setup-test-env.sh")
            pytest.skip(f"no Docker engine answers ({why})")
    if item.get_closest_marker("network") and not network_answers():
        pytest.skip("needs the network (PyPI or deb.debian.org)")


@pytest.fixture(scope="session")
def project() -> Project:
    return Project.locate(REPO / "variants.yaml")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    import docker

    client = docker.from_env()
    yield client
    client.close()


def _suite_made(client) -> tuple[set[str], set[str]]:
    """Tags with this session's id in their name (tests name repositories with
    suite_session.unique) and containers labelled with it."""
    from imagefactory.engine.containers import SESSION_LABEL

    # The low-level list: no per-image inspect that another session's removal could fail.
    tags = {t for row in client.api.images() for t in (row.get("RepoTags") or ())
            if f"iftest-{SESSION}-" in t}
    containers = {c.id for c in client.containers.list(
        all=True, filters={"label": f"{SESSION_LABEL}={SESSION}"})}
    return tags, containers


@pytest.fixture(scope="session", autouse=True)
def no_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    """At the end of the session: no image tag or container the suite created is left in
    the engine (each test removes what it made; this holds them to it)."""
    if engine_answers() is not None:
        yield
        return
    import docker

    client = docker.from_env()
    before_tags, before_containers = _suite_made(client)
    yield
    deadline = time.monotonic() + 30  # a container's removal may still be under way
    while True:
        tags, containers = _suite_made(client)
        tags -= before_tags
        containers -= before_containers
        if not containers or time.monotonic() > deadline:
            break
        time.sleep(1)
    client.close()
    assert not tags, f"the suite left image tags behind: {sorted(tags)}"
    assert not containers, f"the suite left containers behind: {sorted(containers)}"


@pytest.fixture(scope="session")
def engine(docker_client):
    """imagefactory's engine interface on the same Docker engine."""
    from imagefactory.engine.docker_engine import DockerEngine

    return DockerEngine(docker_client.api.base_url, client=docker_client)


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
def cpu_project() -> Project:
    """The repository's matrix under this session's repository name (suite_session)."""
    return Project.locate(CPU_CONFIG)


@pytest.fixture(scope="session")
def cpu_image(engine, cpu_project: Project, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[str]:
    """The real `cpu` variant image, built (or found up to date: the layers are the shared
    imagefactory:cpu's) once per session through imagefactory's builder, tagged
    iftest-<session>-cpu:cpu (CPU_CONFIG) and untagged at the end."""
    project = cpu_project
    from imagefactory.build.builder import Builder, BuildOptions
    from imagefactory.build.progress import PlainView, failure_lines
    from imagefactory.render.renderer import Renderer

    variant = project.matrix.get("cpu")
    ctx = Renderer(project).render(variant)
    options = BuildOptions(log_dir=tmp_path_factory.mktemp("cpu-build-logs"))
    builder = Builder(project.matrix, {variant.name: ctx}, {"engine": engine}, options,
                      PlainView([variant.name], quiet=True))
    result = builder.run(variant, "engine", None)
    if not result.ok:
        pytest.fail("cpu image build failed:\n" + "\n".join(failure_lines(result)))
    assert result.tag is not None
    yield result.tag
    engine.remove_image(result.tag, prune=False)
