"""test_variants, what `imagefactory test` runs once its options are parsed, on the in-memory
FakeEngine: which variant a family name means, what is refused before an engine is opened,
the timeout the engine connection gets, and where each result is saved. The tests in the
image (the Tester itself) are test_tester.py's, against the real engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_engine import FakeEngine

from imagefactory.commands._render import collect
from imagefactory.engine.base import ContainerEngine
from imagefactory.engine.images import BuiltImage
from imagefactory.errors import EXIT_USAGE, ImagefactoryError, JobError, UsageError
from imagefactory.identity import HASH_LABEL
from imagefactory.paths import Paths
from imagefactory.project import Project
from imagefactory.share import reader
from imagefactory.verify import run as verify_run  # its test_variants is no pytest test
from imagefactory.verify.events import BundleWritten, TestFinished
from imagefactory.verify.results import Check, TestResult
from imagefactory.verify.tester import TestOptions


class Opener:
    def __init__(self, engine: FakeEngine | None = None) -> None:
        self.engine = engine or FakeEngine()
        self.calls: list[tuple[str | None, int]] = []

    def __call__(self, address: str | None, timeout: int) -> ContainerEngine:
        self.calls.append((address, timeout))
        return self.engine


def run(project: Project, names: list[str], opener: Opener, echo: list[str] | None = None,
        devices: tuple[str, ...] = (), **options: object) -> list[TestResult]:
    lines = [] if echo is None else echo
    return verify_run.test_variants(project, names, TestOptions(**options),  # type: ignore[arg-type]
                                    devices=devices, emit=collect(lines.append), opener=opener,
                                    host_isas=["gfx1012"])


def test_a_family_means_the_host_gpu_s_variant(project) -> None:
    opener, echo = Opener(), []
    with pytest.raises(JobError) as missing:
        run(project, ["therock"], opener, echo)
    assert str(missing.value) == ("no built image for therock10-gfx1012: run `imagefactory "
                                  "build therock10-gfx1012` first")
    assert echo == ["therock on this gfx1012 card: therock10-gfx1012"]
    assert opener.calls == [(None, 600)]


def test_the_connection_outlasts_a_conv_case(project) -> None:
    opener = Opener()
    with pytest.raises(JobError):
        run(project, ["cpu"], opener, engine="tcp://e:2375", timeout=1000.0)
    assert opener.calls == [("tcp://e:2375", 2120)]


def test_a_stage_image_is_looked_for_under_its_own_tag(project) -> None:
    with pytest.raises(JobError) as missing:
        run(project, ["debian-rocm64"], Opener(), target="runtime")
    assert str(missing.value) == ("no 'runtime' stage image for debian-rocm64: run "
                                  "`imagefactory build debian-rocm64 --target runtime` first")


def test_usage_errors_come_before_any_engine(project, tmp_path) -> None:
    opener = Opener()
    with pytest.raises(ImagefactoryError) as profile:
        run(project, ["cpu"], opener, profile="override")
    assert profile.value.exit_code == EXIT_USAGE
    assert "variant 'cpu' has no profile 'override' (it offers: im2col)" in str(profile.value)
    with pytest.raises(UsageError, match="no such device on this host"):
        run(project, ["cpu"], opener, devices=(str(tmp_path / "renderD128"),))
    with pytest.raises(UsageError, match="name at least one variant"):
        run(project, [], opener)
    assert opener.calls == []


class PassingTester:
    """Stands in for verify.tester.Tester (which needs a real engine): a passing result for
    each image, as Tester.run returns it, unsaved."""

    def __init__(self, engine: ContainerEngine, matrix: object, access: object,
                 options: TestOptions, emit: object) -> None:
        self.options = options

    def run(self, built: BuiltImage) -> TestResult:
        return TestResult(built.variant.name, built.image_id, True, (Check("suite", True),),
                          (), None, None, image_tag=built.tag, seconds=1.25)


@pytest.mark.parametrize(("target", "by_hand"), [(None, ()), ("runtime", ()), (None, ("-v",))],
                         ids=["image", "stage", "suite-by-hand"])
def test_each_result_is_saved_and_echoed(project, tmp_path, monkeypatch, target,
                                         by_hand) -> None:
    monkeypatch.setattr(verify_run, "Tester", PassingTester)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # the host salt goes there
    fake = FakeEngine()
    name = "debian-rocm64"
    tag = f"imagefactory:{name}" + (f"-{target}" if target else "")
    image = fake.add_image(tag, {HASH_LABEL: "a" * 64})
    echo: list[str] = []
    results = run(project, [name], Opener(fake), echo, results_dir=tmp_path / "r",
                  target=target, suite_args=by_hand)
    assert [(r.variant, r.image_id) for r in results] == [(name, image.id)]
    # A stage's result goes where Paths keeps stage results, a hand-run suite's where it
    # keeps those: never beside the variant's.
    paths = Paths.for_output(project.output_dir, tmp_path / "r")
    where = paths.stages if target else paths.debug if by_hand else paths.results
    saved = where / f"{name}.json"
    assert TestResult.load(where, name) == results[0]
    bundle = where / "bundles" / f"{name}.json"  # the shareable bundle beside the result
    assert echo == [f"{name}: PASSED in 1.2 s -> {saved}", f"{name}: result bundle -> {bundle}"]
    events: list[object] = []
    verify_run.test_variants(project, [name], TestOptions(results_dir=tmp_path / "again",
                                                          target=target, suite_args=by_hand),
                             emit=events.append, opener=Opener(fake), host_isas=["gfx1012"])
    again = Paths.for_output(project.output_dir, tmp_path / "again")
    where = again.stages if target else again.debug if by_hand else again.results
    assert events == [TestFinished(name, True, 1.25, where / f"{name}.json"),
                      BundleWritten(name, where / "bundles" / f"{name}.json")]
    assert reader.load(bundle).ours["image_id"] == image.id
    if target or by_hand:
        assert not Path(tmp_path / "r" / f"{name}.json").exists()
