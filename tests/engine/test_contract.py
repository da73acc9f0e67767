"""The engine contract: what the stages rely on of ContainerEngine (engine/base.py), proved
on both engines the suite has, with the same test: the in-memory FakeEngine
(tests/fake_engine.py, the engine of the fast tier) and DockerEngine on the real engine
(the `docker` half: skipped without an engine, required under IMAGEFACTORY_REQUIRE_DOCKER=1,
tests/needs.py).

A case that the fake passes and Docker fails is a bug in the fake (it is fixed to do what
Docker does); one that both fail against base.py's words is a bug in base.py's docstring.
Each Docker case builds at most a few instructions on debian:bookworm-slim (which the
set-up pulls) with no network: seconds. Not here, as they need a registry: a pull that
succeeds, push, distribution_digest (tests/publish/test_publish.py).
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import uuid
from collections.abc import Iterator, Mapping

import pytest
from fake_engine import FakeEngine
from needs import missing
from suite_session import unique

from imagefactory.engine.base import (
    ERROR,
    IMAGE,
    OUTPUT,
    STEP,
    BuildEvent,
    BuildKit,
    ContainerEngine,
    ContainerSpec,
    EngineError,
    EngineUnreachable,
)
from imagefactory.engine.containers import RUN_LABEL, new_run_id, session_labels
from imagefactory.engine.docker_engine import DockerEngine

BASE = "debian:bookworm-slim"
TEST_LABEL = "io.imagefactory.test"
# Two stages: `first` copies a file and labels itself, `second` inherits from it and fails.
TWO_STAGES = (f"FROM {BASE} AS first\n"
              f"LABEL {TEST_LABEL}.stage=first\n"
              "COPY hello.txt /hello.txt\n"
              "FROM first AS second\n"
              f"LABEL {TEST_LABEL}.stage=second\n"
              "RUN exit 3\n")


def context(dockerfile: str, files: Mapping[str, bytes] | None = None) -> bytes:
    """An uncompressed build context: the Dockerfile at its root, then `files`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in {"Dockerfile": dockerfile.encode(), **(files or {})}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Made:
    """What a test made in the engine, removed at its end however it ends."""

    def __init__(self, engine: ContainerEngine) -> None:
        self.engine = engine
        self.images: list[str] = []
        self.containers: list[str] = []
        self.volumes: list[str] = []

    def image(self, dockerfile: str, *, tag: str | None = None, **kwargs: object) -> str:
        """Build `dockerfile` (with hello.txt beside it); its image id."""
        events = list(self.engine.build(context(dockerfile, {"hello.txt": b"hello\n"}),
                                        tag=tag, network_mode="none",
                                        **kwargs))  # type: ignore[arg-type]
        assert events[-1].kind == IMAGE, events
        self.images.append(events[-1].text)
        return events[-1].text

    def clean(self) -> None:
        for container in self.containers:
            self.engine.remove_container(container)
        for name in self.volumes:
            self.engine.remove_volume(name)
        for image in self.images:
            found = self.engine.inspect_image(image)
            for tag in found.tags if found else ():
                self.engine.remove_image(tag, prune=False)
            with contextlib.suppress(EngineError):  # gone with its last tag, or in use
                self.engine.remove_image(image, force=True, prune=False)


@pytest.fixture(params=[pytest.param("fake"),
                        pytest.param("docker", marks=pytest.mark.docker)])
def subject(request: pytest.FixtureRequest) -> ContainerEngine:
    if request.param == "fake":
        fake = FakeEngine()
        fake.add_image(BASE)  # as the set-up pulls it into the real engine
        return fake
    engine: ContainerEngine = request.getfixturevalue("engine")
    return engine


@pytest.fixture
def made(subject: ContainerEngine) -> Iterator[Made]:
    m = Made(subject)
    yield m
    m.clean()


def kinds(events: list[BuildEvent]) -> list[str]:
    return [e.kind for e in events]


def steps(events: list[BuildEvent]) -> list[str]:
    """The STEP events as `N/M INSTRUCTION`, BuildKit's `[stage N/M] INSTRUCTION` (what the
    builder's progress and failure report read)."""
    return [(f"[{e.step.stage} " if e.step.stage else "") + f"{e.step.number}/{e.step.total}"
            + ("] " if e.step.stage else " ") + e.step.instruction
            for e in events if e.kind == STEP and e.step is not None]


def output(events: list[BuildEvent]) -> str:
    return "".join(e.text for e in events if e.kind == OUTPUT)


# -- images ------------------------------------------------------------------------------


def test_a_missing_image_is_none_not_an_error(subject: ContainerEngine) -> None:
    missing = f"{unique('contract')}:missing"
    assert subject.inspect_image(missing) is None
    assert subject.inspect_image("sha256:" + "0" * 64) is None
    assert subject.remove_image(missing) is False
    assert subject.list_images(label=f"{TEST_LABEL}={missing}") == []


def test_an_invalid_reference_is_an_engine_error(subject: ContainerEngine) -> None:
    with pytest.raises(EngineError) as info:
        subject.inspect_image("UPPER:tag")
    exc = info.value
    assert (exc.operation, exc.status, exc.address) == ("inspect UPPER:tag", 400,
                                                        subject.address)
    assert "must be lowercase" in exc.reason and "\n" not in str(exc)


def test_a_build_ends_with_its_image_whose_labels_and_tag_read_back(
        subject: ContainerEngine, made: Made) -> None:
    repo = unique("contract")
    events = list(subject.build(context(TWO_STAGES, {"hello.txt": b"hello\n"}),
                                tag=f"{repo}:first", target="first",
                                labels={TEST_LABEL: repo}, network_mode="none"))
    assert kinds(events).count(IMAGE) == 1 and ERROR not in kinds(events), events
    assert events[-1].kind == IMAGE and events[-1].text.startswith("sha256:")
    image_id = events[-1].text
    made.images.append(image_id)
    # Stages after the target are not built, nor counted; the build's labels are steps of
    # the target's.
    assert steps(events) == [f"1/4 FROM {BASE} AS first",
                             f"2/4 LABEL {TEST_LABEL}.stage=first",
                             "3/4 COPY hello.txt /hello.txt",
                             f"4/4 LABEL {TEST_LABEL}={repo}"]
    assert "Step 3/4 : COPY hello.txt /hello.txt\n" in output(events)  # what the log shows
    found = subject.inspect_image(f"{repo}:first")
    assert found is not None and found.id == image_id and f"{repo}:first" in found.tags
    assert found.labels[TEST_LABEL] == repo  # the build's labels
    assert found.labels[f"{TEST_LABEL}.stage"] == "first"  # the Dockerfile's, of the target
    assert [i.id for i in subject.list_images(label=f"{TEST_LABEL}={repo}")] == [image_id]
    assert [i.id for i in subject.list_images(repository=repo)] == [image_id]
    assert subject.inspect_image(found.short_id) == found


def test_a_stage_inherits_its_from_and_the_build_labels_win(subject: ContainerEngine,
                                                           made: Made) -> None:
    repo = unique("contract")
    dockerfile = TWO_STAGES.replace("RUN exit 3\n", f"LABEL {TEST_LABEL}=dockerfile\n")
    image_id = made.image(dockerfile, labels={TEST_LABEL: repo})
    found = subject.inspect_image(image_id)
    assert found is not None and found.tags == ()
    assert found.labels[TEST_LABEL] == repo
    assert found.labels[f"{TEST_LABEL}.stage"] == "second"


def test_build_args_reach_the_stage_that_declares_them(subject: ContainerEngine,
                                                       made: Made) -> None:
    repo = unique("contract")
    dockerfile = (f"FROM {BASE}\nARG GREETING=none\nARG LATER\nARG UNSET\n"
                  f'LABEL {TEST_LABEL}.greeting="${{GREETING}}" {TEST_LABEL}.later="$LATER-x" '
                  f'{TEST_LABEL}.unset="[$UNSET]"\n')
    image_id = made.image(dockerfile, labels={TEST_LABEL: repo},
                          build_args={"GREETING": "hi", "LATER": "later"})
    found = subject.inspect_image(image_id)
    assert found is not None
    assert {k.removeprefix(f"{TEST_LABEL}."): v for k, v in found.labels.items()
            if k.startswith(f"{TEST_LABEL}.")} == {"greeting": "hi", "later": "later-x",
                                                   "unset": "[]"}


def test_a_failing_step_ends_the_events_with_the_error(subject: ContainerEngine) -> None:
    # No label of its own: the steps before the failure are the same layers every session.
    events = list(subject.build(context(TWO_STAGES, {"hello.txt": b"hello\n"}),
                                network_mode="none"))
    assert events[-1].kind == ERROR and IMAGE not in kinds(events), events
    assert "returned a non-zero code: 3" in events[-1].text
    assert steps(events)[-1] == "6/6 RUN exit 3"  # the builder reports this step


def test_a_target_the_dockerfile_lacks_is_an_error_event(subject: ContainerEngine) -> None:
    events = list(subject.build(context(TWO_STAGES, {"hello.txt": b"hello\n"}),
                                target="nosuch", network_mode="none"))
    assert events[-1].kind == ERROR and IMAGE not in kinds(events), events
    assert "nosuch" in events[-1].text


# -- BuildKit: the same build call, `buildkit=` given (docker: the buildx plugin) -----------

@pytest.fixture
def kit(subject: ContainerEngine) -> ContainerEngine:
    """The subject, where it can build with BuildKit (tests/needs.py: else skipped, or a
    failure where the plugin is required)."""
    if not subject.buildkit_version():
        missing("no docker buildx plugin")
    return subject


def test_a_buildkit_build_loads_its_image_with_labels_and_tag(kit: ContainerEngine,
                                                              made: Made) -> None:
    subject = kit
    repo = unique("contract")
    events = list(subject.build(context(TWO_STAGES, {"hello.txt": b"hello\n"}),
                                tag=f"{repo}:first", target="first",
                                labels={TEST_LABEL: repo}, network_mode="none",
                                buildkit=BuildKit()))
    assert events[-1].kind == IMAGE and ERROR not in kinds(events), events
    image_id = events[-1].text
    made.images.append(image_id)
    # Numbered per stage over what makes a vertex (no LABEL step, the build's labels none
    # either), the FROM by the image's full name.
    assert steps(events) == [f"[first 1/2] FROM docker.io/library/{BASE}",
                             "[first 2/2] COPY hello.txt /hello.txt"]
    found = subject.inspect_image(f"{repo}:first")
    assert found is not None and found.id == image_id
    assert found.labels[TEST_LABEL] == repo and found.labels[f"{TEST_LABEL}.stage"] == "first"


def test_a_failing_buildkit_step_is_named_by_the_error(kit: ContainerEngine) -> None:
    events = list(kit.build(context(TWO_STAGES, {"hello.txt": b"hello\n"}),
                                network_mode="none", buildkit=BuildKit()))
    assert events[-1].kind == ERROR and IMAGE not in kinds(events), events
    assert "exit code: 3" in events[-1].text
    failed = events[-1].step
    assert failed is not None
    # `second` builds FROM `first`: its only vertex is the RUN
    assert (failed.number, failed.total, failed.instruction, failed.stage) == (
        1, 1, "RUN exit 3", "second")


def test_a_buildkit_target_the_dockerfile_lacks_is_an_error_event(
        kit: ContainerEngine) -> None:
    events = list(kit.build(context(TWO_STAGES, {"hello.txt": b"hello\n"}),
                                target="nosuch", network_mode="none", buildkit=BuildKit()))
    assert events[-1].kind == ERROR and IMAGE not in kinds(events), events
    assert "nosuch" in events[-1].text


def test_tags_move_and_an_image_goes_with_its_last_tag(subject: ContainerEngine,
                                                      made: Made) -> None:
    repo = unique("contract")
    image_id = made.image(f"FROM {BASE}\nLABEL {TEST_LABEL}={repo}\n")
    subject.tag(image_id, repo, "a")
    subject.tag(image_id, repo, "b")
    found = subject.inspect_image(image_id)
    assert found is not None and sorted(found.tags) == [f"{repo}:a", f"{repo}:b"]
    with pytest.raises(EngineError) as info:  # by id, with two tags: must be forced
        subject.remove_image(image_id)
    assert info.value.status == 409
    assert subject.remove_image(f"{repo}:a") is True
    assert subject.inspect_image(f"{repo}:a") is None
    assert subject.inspect_image(image_id) is not None  # still tagged b
    assert subject.remove_image(f"{repo}:b") is True
    assert subject.inspect_image(image_id) is None  # untagged by its last tag: removed
    with pytest.raises(EngineError) as info:
        subject.tag(image_id, repo, "c")
    exc = info.value
    assert (exc.operation, exc.status, exc.address) == (f"tag {repo}:c", 404, subject.address)


def test_an_untagged_image_is_removed_by_its_id(subject: ContainerEngine, made: Made) -> None:
    """What the builder does with an image it may not tag (a cancelled build)."""
    image_id = made.image(f"FROM {BASE}\nLABEL {TEST_LABEL}={unique('contract')}\n")
    assert subject.remove_image(image_id, prune=False) is True
    assert subject.inspect_image(image_id) is None
    assert subject.remove_image(image_id, prune=False) is False


def test_a_refused_pull_raises(subject: ContainerEngine) -> None:
    """A registry on a loopback port where nothing listens: refused whatever the network."""
    repository = f"127.0.0.1:9/{unique('contract')}"
    with pytest.raises(EngineError) as info:
        list(subject.pull(repository, "1"))
    exc = info.value
    assert (exc.operation, exc.address) == (f"pull {repository}:1", subject.address)
    assert exc.reason and "\n" not in str(exc)


# -- containers ----------------------------------------------------------------------------


def _spec(image: str, run_id: str, **kwargs: object) -> ContainerSpec:
    """A container of this run (and of this test session, for its leftovers check)."""
    return ContainerSpec(**{"image": image, "command": ["sleep", "infinity"],
                            "network_mode": "none",
                            "labels": {RUN_LABEL: run_id, **session_labels()},
                            **kwargs})  # type: ignore[arg-type]


def test_a_container_is_created_started_execed_read_and_removed(subject: ContainerEngine,
                                                                 made: Made) -> None:
    image_id = made.image(TWO_STAGES, target="first",
                          labels={TEST_LABEL: unique("contract")})
    run_id = new_run_id()
    name = unique("contract")
    container = subject.create_container(_spec(image_id, run_id, name=name))
    made.containers.append(container)
    [listed] = subject.list_containers(label=f"{RUN_LABEL}={run_id}")
    assert (listed.id, listed.name, listed.status) == (container, name, "created")
    assert listed.labels[RUN_LABEL] == run_id
    with pytest.raises(EngineError) as info:  # exec needs it running
        subject.exec(container, ["true"])
    assert info.value.status == 409
    with pytest.raises(EngineError) as info:  # a name is one container's
        subject.create_container(_spec(image_id, run_id, name=name))
    assert info.value.status == 409
    subject.start_container(container)
    assert [c.status for c in subject.list_containers(label=f"{RUN_LABEL}={run_id}")] == [
        "running"]
    out: list[bytes] = []
    assert subject.exec(container, ["cat", "/hello.txt"], out.append) == 0
    assert b"".join(out) == b"hello\n"
    assert subject.exec(container, ["sh", "-c", "exit 3"]) == 3
    assert subject.read_file(container, "/hello.txt") == b"hello\n"
    assert subject.read_file(container, "/no/such/file") is None
    exported = b"".join(subject.export_container(container))
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        member = tar.extractfile("hello.txt")
        assert member is not None and member.read() == b"hello\n"
    subject.remove_container(container)
    assert subject.list_containers(label=f"{RUN_LABEL}={run_id}") == []
    subject.remove_container(container)  # already gone: no error
    with pytest.raises(EngineError) as info:
        subject.start_container(container)
    assert info.value.status == 404


def test_a_refused_create_has_the_status_and_the_engines_reason(
        subject: ContainerEngine) -> None:
    image = f"{unique('contract')}:missing"
    with pytest.raises(EngineError) as info:
        subject.create_container(ContainerSpec(image, command=["true"]))
    exc = info.value
    assert (exc.operation, exc.status, exc.address) == (f"create a container of {image}", 404,
                                                        subject.address)
    assert image.split(":")[0] in exc.reason and "\n" not in str(exc)


def test_a_tracked_container_is_removed_however_the_block_ends(subject: ContainerEngine,
                                                              made: Made) -> None:
    image_id = made.image(f"FROM {BASE}\nLABEL {TEST_LABEL}={unique('contract')}\n")
    run_id = new_run_id()
    ours = f"{RUN_LABEL}={run_id}"
    with subject.run_container(_spec(image_id, run_id), role="test-contract",
                               run_id=run_id) as c:
        assert c.status == "running"
        assert c.labels["io.imagefactory.role"] == "test-contract"
        assert c.labels[RUN_LABEL] == run_id
        assert [x.id for x in subject.list_containers(label=ours)] == [c.id]
    assert subject.list_containers(label=ours) == []

    run_id = new_run_id()
    ours = f"{RUN_LABEL}={run_id}"
    with pytest.raises(RuntimeError, match="boom"), subject.run_container(
            _spec(image_id, run_id), role="test-contract", run_id=run_id):
        # As if a create call had been interrupted before its id came back.
        subject.create_container(_spec(image_id, run_id, command=["true"]))
        assert len(subject.list_containers(label=ours)) == 2
        raise RuntimeError("boom")
    assert subject.list_containers(label=ours) == []

    run_id = new_run_id()
    with pytest.raises(EngineError), subject.run_container(
            _spec(f"{unique('contract')}:missing", run_id), role="test-contract",
            run_id=run_id):
        pass
    assert subject.list_containers(label=f"{RUN_LABEL}={run_id}") == []


# -- volumes -------------------------------------------------------------------------------


def test_volumes_are_ensured_emptied_listed_and_removed(subject: ContainerEngine,
                                                        made: Made) -> None:
    name = unique("contract")
    labels = {TEST_LABEL: name, **session_labels()}
    made.volumes.append(name)
    assert subject.ensure_volume(name, labels) is False  # made: nothing was removed
    assert subject.list_volumes(label=f"{TEST_LABEL}={name}") == [name]
    # One that exists is kept as it is, its labels too (no race between two runs).
    assert subject.ensure_volume(name, {TEST_LABEL: "other"}) is False
    assert subject.list_volumes(label=f"{TEST_LABEL}={name}") == [name]
    assert subject.ensure_volume(name, labels, empty=True) is True  # removed, then made
    assert subject.list_volumes(label=f"{TEST_LABEL}={name}") == [name]
    assert subject.remove_volume(name) is True
    assert subject.remove_volume(name) is False
    assert subject.list_volumes(label=f"{TEST_LABEL}={name}") == []
    assert subject.ensure_volume(name, labels, empty=True) is False  # none was there


# -- an engine that does not answer ----------------------------------------------------------


@pytest.fixture(params=["fake", "docker"])
def unreachable(request: pytest.FixtureRequest) -> ContainerEngine:
    """Each engine at an address where nothing answers (no Docker engine needed)."""
    if request.param == "fake":
        return FakeEngine(unreachable=True)
    return DockerEngine(f"unix:///tmp/iftest-contract-{uuid.uuid4().hex[:8]}.sock", timeout=5)


def test_an_engine_that_does_not_answer_raises_never_reads_as_missing(
        unreachable: ContainerEngine) -> None:
    for call in (unreachable.ping, lambda: unreachable.inspect_image(BASE)):
        with pytest.raises(EngineUnreachable) as info:
            call()
        exc = info.value
        assert exc.address == unreachable.address and exc.reason and "\n" not in str(exc)
        assert unreachable.address in str(exc)
