"""build_variants, what `imagefactory build` runs between parsing and printing, on the
in-memory FakeEngine: the plan it reports, the results it returns, where the logs go, and
the refusals that come before any engine is opened. The CLI over the real engine is in
test_build.py."""

from __future__ import annotations

import io
import shutil
import threading
from pathlib import Path

import pytest
from fake_engine import FakeEngine
from rich.console import Console

from imagefactory.build.builder import BLOCKED, BUILT, FAILED, SKIPPED, BuildResult
from imagefactory.build.events import BuildFinished, BuildLine, BuildPlanned, BuildStarted
from imagefactory.build.run import BuildSettings, build_variants
from imagefactory.commands._render import Printer
from imagefactory.engine.base import ContainerEngine
from imagefactory.errors import UsageError
from imagefactory.events import Event
from imagefactory.paths import Paths
from imagefactory.project import Project

FIXTURE = Path(__file__).parent.parent / "fixtures" / "buildmatrix"
CLASSIC = BuildSettings(builder="classic")  # the fake engine is not a buildx one


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """The fixture matrix in a folder of its own: its default log folder is written to."""
    shutil.copytree(FIXTURE, tmp_path / "m", ignore=shutil.ignore_patterns(".imagefactory"))
    return Project.locate(tmp_path / "m" / "variants.yaml")


@pytest.fixture
def failing(project: Project) -> Project:
    """failing.yaml with `broken` failing the way FakeEngine fails a build (`RUN exit 3`)."""
    path = project.root / "failing.yaml"
    text = path.read_text()
    path.write_text(text.replace("echo about to fail && exit 3", "exit 3"))
    return Project.locate(path)


@pytest.fixture
def fake() -> FakeEngine:
    engine = FakeEngine()
    engine.add_image("debian:bookworm-slim")
    return engine


class Recorder:
    """emit: keeps the events and the plan, prints them (quiet) into `out`; and which
    engines were opened."""

    def __init__(self, engine: ContainerEngine) -> None:
        self.engine = engine
        self.plans: list[BuildPlanned] = []
        self.events: list[Event] = []
        self.out = io.StringIO()
        console = Console(file=self.out, force_terminal=False)
        self.printer = Printer("quiet", console=console, err_console=console)
        self.opened: list[str] = []

    def open(self, address: str) -> ContainerEngine:
        self.opened.append(address)
        return self.engine

    def emit(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, BuildPlanned):
            self.plans.append(event)
        self.printer(event)


def statuses(results: tuple[BuildResult, ...]) -> dict[str, str]:
    return {r.variant: r.status for r in results}


def test_built_then_skipped_with_the_plan_reported_first(project, fake) -> None:
    rec = Recorder(fake)
    child = project.matrix.get("child")
    run = build_variants(project, [child], CLASSIC, rec.emit, engines=["fake://a"],
                         opener=rec.open)
    assert statuses(run.results) == {"base": BUILT, "child": BUILT}
    assert run.unusable == () and run.failed == ()
    (plan,) = rec.plans
    assert plan.names == ("base", "child") and plan.bases == ("base",)
    assert plan.engines == ("fake://a",) and plan.jobs == 1 and rec.opened == ["fake://a"]
    assert (run.plan.names, run.plan.bases) == (list(plan.names), list(plan.bases))
    # The plan first; per variant: started, the build's lines, finished with its result.
    assert rec.events[0] == plan
    for name, result in zip(plan.names, run.results, strict=True):
        mine = [e for e in rec.events[1:] if getattr(e, "variant", None) == name
                or (isinstance(e, BuildFinished) and e.result.variant == name)]
        assert isinstance(mine[0], BuildStarted) and mine[-1] == BuildFinished(result)
        assert any(isinstance(e, BuildLine) for e in mine[1:-1])
    assert rec.out.getvalue().splitlines() == [
        "building 2 variant(s) on 1 engine(s), 1 at a time: base, child (bases: base)",
        f"base: built {run.results[0].short_id} in {run.results[0].duration:.1f}s, tagged "
        "iftest-build:base",
        f"child: built {run.results[1].short_id} in {run.results[1].duration:.1f}s, tagged "
        "iftest-build:child"]
    assert fake.refs["iftest-build:child"] == run.results[1].image_id
    # The logs go where Paths puts them for this project.
    logs = Paths.for_output(project.output_dir).logs
    assert logs == project.root / ".imagefactory" / "logs"
    assert {p.parent for p in logs.glob("*")} == {logs} and len(list(logs.glob("*"))) == 2
    again = build_variants(project, [child], CLASSIC, Recorder(fake).emit,
                           engines=["fake://a"], opener=rec.open)
    assert statuses(again.results) == {"base": SKIPPED, "child": SKIPPED}
    assert len(fake.builds) == 2


def test_force_and_no_cache_rebuild_what_they_name(project, fake, tmp_path) -> None:
    rec = Recorder(fake)
    child = project.matrix.get("child")
    settings = BuildSettings(builder="classic", log_dir=tmp_path / "logs")
    build_variants(project, [child], settings, rec.emit, engines=["e"], opener=rec.open)
    forced = build_variants(project, [child], BuildSettings(builder="classic", force=True,
                                                            log_dir=tmp_path / "logs"),
                            rec.emit, engines=["e"], opener=rec.open)
    assert statuses(forced.results) == {"base": SKIPPED, "child": BUILT}
    fresh = build_variants(project, [child], BuildSettings(builder="classic", no_cache=True,
                                                           log_dir=tmp_path / "logs"),
                           rec.emit, engines=["e"], opener=rec.open)
    assert statuses(fresh.results) == {"base": BUILT, "child": BUILT}
    assert fake.builds[-1].no_cache and not project.root.joinpath(".imagefactory").exists()


def test_a_failure_blocks_its_dependants(failing, fake, tmp_path) -> None:
    project = failing
    rec = Recorder(fake)
    chosen = [project.matrix.get("good"), project.matrix.get("broken-child")]
    run = build_variants(project, chosen, BuildSettings(builder="classic", log_dir=tmp_path),
                         rec.emit, engines=["e"], opener=rec.open)
    assert statuses(run.results) == {"good": BUILT, "broken": FAILED, "broken-child": BLOCKED}
    assert [r.variant for r in run.failed] == ["broken"]
    assert [r.variant for r in run.unusable] == ["broken", "broken-child"]
    assert run.failed[0].step is not None and "exit 3" in run.failed[0].step.instruction


@pytest.mark.parametrize(("variants", "target", "message"), [
    (["solo"], "nosuch", "--target nosuch: solo has no such stage (it has: tiny)"),
    (["child"], "tiny", "--target tiny: name one variant built FROM an external base (this "
                        "build takes base, child)"),
])
def test_target_refused_before_any_engine_is_opened(project, fake, variants, target,
                                                    message) -> None:
    rec = Recorder(fake)
    with pytest.raises(UsageError) as refused:
        build_variants(project, [project.matrix.get(n) for n in variants],
                       BuildSettings(builder="classic", target=target), rec.emit,
                       engines=["e"], opener=rec.open)
    assert str(refused.value) == message
    assert rec.opened == [] and rec.plans == [] and fake.calls == []


def test_a_target_stage_is_built_and_tagged_as_its_own(project, fake, tmp_path) -> None:
    rec = Recorder(fake)
    run = build_variants(project, [project.matrix.get("solo")],
                         BuildSettings(builder="classic", target="tiny",
                                       build_args={"A": "b"}, log_dir=tmp_path),
                         rec.emit, engines=["e"], opener=rec.open)
    (result,) = run.results
    assert result.status == BUILT and result.tag == "iftest-build:solo-tiny"
    assert fake.builds[-1].target == "tiny" and fake.builds[-1].build_args["A"] == "b"


def test_ctrl_c_sets_cancel_and_propagates(failing, fake, tmp_path) -> None:
    """Ctrl-C reaches the scheduler's thread (here: while it reports a blocked variant):
    build_variants leaves with the KeyboardInterrupt, and `cancel` tells the builds."""
    project = failing
    rec = Recorder(fake)

    def interrupted(event: Event) -> None:
        if isinstance(event, BuildFinished) and event.result.status == BLOCKED:
            raise KeyboardInterrupt

    cancel = threading.Event()
    with pytest.raises(KeyboardInterrupt):
        build_variants(project, [project.matrix.get("broken-child")],
                       BuildSettings(builder="classic", log_dir=tmp_path), interrupted,
                       engines=["e"], opener=rec.open, cancel=cancel)
    assert cancel.is_set()
