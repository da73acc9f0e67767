"""Shared fixtures. Integration tests drive the real Docker engine (scripts/setup-test-env.sh
starts one); nothing here is mocked.

Markers say what a test needs and skip it cleanly without: `docker` (an engine answers;
added by itself to every test using an engine fixture), `buildx` (the docker buildx plugin),
`root` (mknod, chown, a second dockerd), `network` (PyPI or the Debian archive answer).
scripts/test.sh (what CI runs) sets IMAGEFACTORY_REQUIRE_DOCKER=1: a missing engine, buildx
plugin or socat (tests/needs.py) then fails the run instead of skipping half of it.

What the suite leaves in the engine: nothing of its own but the shared cache tags below.
Every other image tag a test makes is named by suite_session.unique (iftest-<session>-...),
every container and MIOpen cache volume made on its behalf carries the session label, and
each test removes what it made; `no_leftovers` asserts that at the end of the session.
The shared cache tags are kept on purpose, the same in every session, and rebuilt only when
missing or out of date: each costs minutes and gigabytes of downloads, and keeping them is
what makes the next run affordable on a 2-core machine.
- debian:bookworm-slim, debian:trixie-slim, debian:sid-slim: the debootstrap bases
  (scripts/setup-test-env.sh).
- imagefactory:debian-rocm64-rocm-runtime, imagefactory:debian-rocm64-toolchain: exactly
  what `imagefactory build debian-rocm64 --target STAGE` tags (tests/verify/
  test_debian_rocm_image.py builds them that way); the toolchain stage can also stand in
  for the GPU code audit's `libs` image (IMAGEFACTORY_GPUCODE_LIBS_IMAGE).
- imagefactory-test/gpucode:kernels, imagefactory-test/gpucode:libs: the GPU code audit's
  fixture images (tests/verify/test_gpucode_image.py).
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from needs import missing
from suite_session import CPU_CONFIG, SESSION

from imagefactory.project import Project

REPO = Path(__file__).resolve().parent.parent
ENGINE_FIXTURES = {"docker_client", "engine", "cpu_image", "session_volumes"}
# Labels every container and cache volume this session makes, in this process and in the
# CLIs it runs (engine/containers.py session_labels).
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


def pytest_sessionstart(session: pytest.Session) -> None:
    """The test families (tiny, mounts) are a plugin distribution, not part of the package
    (tests/fixtures/familyplugin): without it, every test of the build fixture matrix would
    fail on its own with "family 'tiny' has no recipe schema". Say once what to run."""
    import importlib.metadata

    try:
        importlib.metadata.distribution("imagefactory-testfamilies")
    except importlib.metadata.PackageNotFoundError:
        raise pytest.UsageError(
            "the test families' plugin (tests/fixtures/familyplugin) is not installed: run "
            "bash scripts/setup-test-env.sh, or pip install --no-build-isolation --no-deps "
            "-e tests/fixtures/familyplugin") from None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.docker)


@functools.cache
def buildx_answers() -> bool:
    from imagefactory.engine.buildx import buildx_version

    return shutil.which("docker") is not None and buildx_version() is not None


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Runs before the item's fixtures are set up: a skipped test makes nothing.
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.skip("needs root (device nodes, chown, a second dockerd)")
    if item.get_closest_marker("docker"):
        why = engine_answers()
        if why is not None:
            missing(f"no Docker engine answers ({why})")
    if item.get_closest_marker("buildx") and not buildx_answers():
        missing("no docker buildx plugin")
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


def _suite_made(client) -> tuple[set[str], set[str], set[str]]:
    """Tags with this session's id in their name (tests name repositories with
    suite_session.unique), containers and volumes labelled with it."""
    from imagefactory.engine.containers import SESSION_LABEL
    from imagefactory.engine.docker_engine import DockerEngine

    # The low-level list: no per-image inspect that another session's removal could fail.
    tags = {t for row in client.api.images() for t in (row.get("RepoTags") or ())
            if f"iftest-{SESSION}-" in t}
    label = f"{SESSION_LABEL}={SESSION}"
    containers = {c.id for c in client.containers.list(all=True, filters={"label": label})}
    volumes = set(DockerEngine(client.api.base_url, client=client).list_volumes(label=label))
    return tags, containers, volumes


@pytest.fixture(scope="session", autouse=True)
def no_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    """At the end of the session: no image tag, container or volume the suite created is
    left in the engine (each test removes what it made; this holds them to it)."""
    if engine_answers() is not None:
        yield
        return
    import docker

    client = docker.from_env()
    before = _suite_made(client)
    yield
    deadline = time.monotonic() + 30  # a container's removal may still be under way
    while True:
        now = _suite_made(client)
        tags, containers, volumes = (n - b for n, b in zip(now, before, strict=True))
        if not containers or time.monotonic() > deadline:
            break
        time.sleep(1)
    client.close()
    assert not tags, f"the suite left image tags behind: {sorted(tags)}"
    assert not containers, f"the suite left containers behind: {sorted(containers)}"
    assert not volumes, f"the suite left volumes behind: {sorted(volumes)}"


@pytest.fixture(scope="session")
def engine(docker_client):
    """imagefactory's engine interface on the same Docker engine."""
    from imagefactory.engine.docker_engine import DockerEngine

    return DockerEngine(docker_client.api.base_url, client=docker_client)


@pytest.fixture
def session_volumes(engine) -> Iterator[None]:
    """For a test whose Tester (or `imagefactory test`) makes MIOpen cache volumes: removes
    the ones this session made during the test (labelled with its id; a volume that was there
    before, e.g. a real run's cache, is not this test's)."""
    from imagefactory.engine.containers import SESSION_LABEL

    label = f"{SESSION_LABEL}={SESSION}"
    before = set(engine.list_volumes(label=label))
    yield
    for name in sorted(set(engine.list_volumes(label=label)) - before):
        engine.remove_volume(name)


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
    from imagefactory.commands._render import failure_lines
    from imagefactory.events import discard
    from imagefactory.render.renderer import Renderer

    variant = project.matrix.get("cpu")
    ctx = Renderer(project).render(variant)
    options = BuildOptions(log_dir=tmp_path_factory.mktemp("cpu-build-logs"))
    builder = Builder(project.matrix, {variant.name: ctx}, {"engine": engine}, options,
                      discard)
    result = builder.run(variant, "engine", None)
    if not result.ok:
        pytest.fail("cpu image build failed:\n" + "\n".join(failure_lines(result)))
    assert result.tag is not None
    yield result.tag
    engine.remove_image(result.tag, prune=False)


@pytest.fixture(scope="session", autouse=True)
def written_documents_meet_their_schemas() -> Iterator[None]:
    """Every test result (TestResult.save) and publish record (Publisher.write_record) a
    test writes in this process meets its published schema (schemas/test-result.v1.json,
    schemas/publish-record.v1.json; issue #26). Checked after the write and reported at the
    end of the session, so no product code sees the check."""
    import json

    import jsonschema

    from imagefactory.publish.publisher import Publisher
    from imagefactory.verify.results import TestResult

    root = Path(__file__).resolve().parents[1] / "schemas"
    validators = {name: jsonschema.Draft202012Validator(json.loads((root / name).read_text()))
                  for name in ("test-result.v1.json", "publish-record.v1.json")}
    bad: list[str] = []

    def checked(write, name):  # type: ignore[no-untyped-def]
        @functools.wraps(write)
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            path = write(*args, **kwargs)
            try:
                data = json.loads(Path(path).read_text())
            except (OSError, ValueError):
                return path
            bad.extend(f"{path}: {e.json_path}: {e.message}"
                       for e in validators[name].iter_errors(data))
            return path
        return wrapper

    save, write_record = TestResult.save, Publisher.write_record
    TestResult.save = checked(save, "test-result.v1.json")  # type: ignore[method-assign]
    Publisher.write_record = checked(  # type: ignore[method-assign]
        write_record, "publish-record.v1.json")
    try:
        yield
    finally:
        TestResult.save, Publisher.write_record = save, write_record  # type: ignore[method-assign]
    assert not bad, "written documents that do not meet their published schema:\n" + \
        "\n".join(bad[:20])
