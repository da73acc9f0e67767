"""publish_variants, what `imagefactory push` runs once its options are parsed and the login
resolved, on the in-memory FakeEngine: every variant is decided before any push, and each
published image is echoed tag by tag and recorded. The push to a real registry is
test_publish.py's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_engine import FakeEngine

from imagefactory.commands._render import collect
from imagefactory.engine.base import ContainerEngine
from imagefactory.errors import JobError
from imagefactory.identity import HASH_LABEL
from imagefactory.project import Project
from imagefactory.publish.publisher import Published
from imagefactory.publish.registry import Credentials, Target
from imagefactory.publish.run import publish_variants
from imagefactory.share import record as records
from imagefactory.verify.results import Check, ConvCase, TestResult

TARGET = Target.parse("registry.example:5000/team")
# An identity token: the registry's digest is asked of the engine (here the fake one).
TOKEN = Credentials("me", "token", "test", identity_token=True)


@pytest.fixture
def fake() -> FakeEngine:
    return FakeEngine()


def image_with_a_pass(fake: FakeEngine, results: Path, variant: str) -> str:
    """A built image of `variant` with a passing full test result; its id."""
    image = fake.add_image(f"imagefactory:{variant}", {HASH_LABEL: "c" * 64})
    TestResult(variant, image.id, True, (Check("suite", True),), (ConvCase("conv2d-k3", "ok"),),
               None, None, torch="2.5.1", inputs_hash="c" * 64).save(results)
    return image.id


def publish(project: Project, names: list[str], fake: FakeEngine, results: Path,
            out: list[str], info: list[str]) -> list[Published]:
    opened: list[tuple[str | None, int]] = []

    def opener(address: str | None, timeout: int) -> ContainerEngine:
        opened.append((address, timeout))
        return fake

    done = publish_variants(project.matrix, [project.matrix.get(n) for n in names], TARGET,
                            TOKEN, results, rendered_hash=lambda v: "c" * 64,
                            engine="tcp://e", opener=opener, emit=collect(out.append, info.append))
    assert opened == [("tcp://e", 600)]
    return list(done)


def pushes(fake: FakeEngine) -> list[str]:
    return [c for c in fake.calls if c.startswith("push ")]


def test_one_refusal_pushes_nothing_of_the_others(project, fake, tmp_path) -> None:
    image_with_a_pass(fake, tmp_path, "cpu")
    out: list[str] = []
    with pytest.raises(JobError) as refused:
        publish(project, ["cpu", "rocm62-native"], fake, tmp_path, out, [])
    assert str(refused.value) == (
        "rocm62-native: no image imagefactory:rocm62-native in the engine; run `imagefactory "
        "build rocm62-native` and `imagefactory test rocm62-native` first; nothing pushed")
    assert pushes(fake) == [] and out == []


def test_several_refusals_are_a_line_each_then_one_error(project, fake, tmp_path) -> None:
    info: list[str] = []
    with pytest.raises(JobError) as refused:
        publish(project, ["cpu", "rocm62-native"], fake, tmp_path, [], info)
    assert str(refused.value) == "2 of 2 variants cannot be published; nothing pushed"
    assert [line.split(":", 2)[1].strip() for line in info] == ["cpu", "rocm62-native"]
    assert all(line.startswith("imagefactory: ") for line in info) and pushes(fake) == []


def test_published_tags_are_echoed_and_recorded(project, fake, tmp_path) -> None:
    image_id = image_with_a_pass(fake, tmp_path, "cpu")
    out: list[str] = []
    info: list[str] = []
    (published,) = publish(project, ["cpu"], fake, tmp_path, out, info)
    repository = "registry.example:5000/team/imagefactory"
    tags = published.plan.tags
    assert tags[:2] == ("cpu", "cpu-cccccccccccc")
    assert out == [f"{repository}:{tag} {published.reference}"
                   for tag in tags]
    assert len(pushes(fake)) == len(tags)
    assert info[0] == (f"cpu: pushing image {image_id[7:19]} to {repository} as "
                       f"{', '.join(tags)}")
    assert info[-1] == f"cpu: verified in the registry; record {tmp_path / 'cpu.publish.json'}"
    record = json.loads((tmp_path / "cpu.publish.json").read_text())
    assert record["image_id"] == image_id
    read = records.load(tmp_path / "cpu.publish.json")  # the strict reader takes it back
    assert read is not None and read.digest == record["digest"] and read.image_id == image_id


def test_the_run_emits_the_plan_the_tags_and_the_record_as_events(project, fake,
                                                                  tmp_path) -> None:
    from imagefactory.publish.events import Pushing, PushNote, Recorded, TagPublished

    image_id = image_with_a_pass(fake, tmp_path, "cpu")
    events: list[object] = []
    (published,) = publish_variants(project.matrix, [project.matrix.get("cpu")], TARGET,
                                    TOKEN, tmp_path, rendered_hash=lambda v: "c" * 64,
                                    opener=lambda address, timeout: fake, emit=events.append)
    repository = "registry.example:5000/team/imagefactory"
    assert events[0] == Pushing("cpu", image_id[7:19], repository, published.plan.tags)
    assert [e for e in events if isinstance(e, TagPublished)] == [
        TagPublished(repository, tag, published.reference) for tag in published.plan.tags]
    assert events[-1] == Recorded("cpu", tmp_path / "cpu.publish.json")
    assert all(isinstance(e, (Pushing, PushNote, TagPublished, Recorded)) for e in events)
