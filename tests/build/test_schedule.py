"""Build ordering, parallelism, engine choice and build-stream parsing: no Docker needed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from imagefactory.build.builder import BLOCKED, BUILT, FAILED, SKIPPED, BuildResult, BuildStream
from imagefactory.build.schedule import Scheduler, plan
from imagefactory.commands._render import failure_lines, human_size, human_time
from imagefactory.matrix.loader import parse_matrix
from imagefactory.project import Project
from imagefactory.render.context import context_names, context_tar
from imagefactory.render.renderer import Renderer

FIXTURE = Path(__file__).parent.parent / "fixtures" / "buildmatrix"

MATRIX = """
repository: t
variants:
  {body}
"""


def variant(name: str, base: str | None = None) -> str:
    source = f"base_variant: {base}" if base else "base: debian:bookworm-slim"
    return (f"{name}:\n    family: tiny\n    description: d\n    {source}\n"
            f"    torch: {{version: '0', source: debian}}\n    expect: {{}}\n  ")


def matrix(*specs: tuple[str, str | None]):
    return parse_matrix(MATRIX.format(body="".join(variant(n, b) for n, b in specs)), "m.yaml")


def names(vs) -> list[str]:
    return [v.name for v in vs]


# A diamond-free forest: a <- b <- c, d independent, e <- a.
FOREST = matrix(("c", "b"), ("b", "a"), ("d", None), ("a", None), ("e", "a"))


def test_plan_puts_bases_first_and_keeps_matrix_order_otherwise() -> None:
    assert names(plan(FOREST, FOREST.variants)) == ["d", "a", "b", "e", "c"]


def test_plan_adds_the_bases_a_requested_variant_needs() -> None:
    assert names(plan(FOREST, FOREST.select(["c"]))) == ["a", "b", "c"]
    assert names(plan(FOREST, FOREST.select(["d"]))) == ["d"]


class FakeBuilds:
    """Stands in for Builder.run: records overlap and order, fails the names it is told to."""

    def __init__(self, fail: set[str] = frozenset(), delay: float = 0.05) -> None:
        self.fail = fail
        self.delay = delay
        self.lock = threading.Lock()
        self.running: set[str] = set()
        self.events: list[tuple[str, str]] = []
        self.bases: dict[str, str | None] = {}

    def __call__(self, v, engine: str, base: BuildResult | None) -> BuildResult:
        with self.lock:
            self.running.add(v.name)
            self.events.append(("start", v.name))
            self.bases[v.name] = base.image_id if base else None
        time.sleep(self.delay)
        with self.lock:
            self.running.discard(v.name)
            self.events.append(("end", v.name))
        status = FAILED if v.name in self.fail else BUILT
        return BuildResult(v.name, engine, status, image_id=f"id-{v.name}-{engine}")


def test_dependants_start_after_their_base_and_get_its_image_id() -> None:
    fake = FakeBuilds()
    results = Scheduler(plan(FOREST, FOREST.variants), ["e1"], 4, fake).run()
    assert [r.status for r in results] == [BUILT] * 5
    pos = {e: i for i, e in enumerate(fake.events)}
    for child, base in (("b", "a"), ("c", "b"), ("e", "a")):
        assert pos[("start", child)] > pos[("end", base)]
    assert fake.bases["c"] == "id-b-e1"


def test_independent_builds_run_in_parallel_up_to_jobs() -> None:
    flat = matrix(*((f"v{i}", None) for i in range(6)))
    for jobs in (1, 3):
        scheduler = Scheduler(flat.variants, ["e1"], jobs, FakeBuilds(delay=0.1))
        scheduler.run()
        assert scheduler.max_running == jobs


def test_a_failed_base_blocks_its_dependants_but_not_the_others() -> None:
    blocked = []
    results = Scheduler(plan(FOREST, FOREST.variants), ["e1"], 2, FakeBuilds(fail={"a"}),
                        on_blocked=blocked.append).run()
    status = {r.variant: r.status for r in results}
    assert status == {"d": BUILT, "a": FAILED, "b": BLOCKED, "e": BLOCKED, "c": BLOCKED}
    assert {r.variant for r in blocked} == {"b", "e", "c"}
    assert results[2].error == "not built: its base variant 'a' failed"


def test_dependants_follow_their_base_engine_and_roots_spread() -> None:
    results = Scheduler(plan(FOREST, FOREST.variants), ["e1", "e2"], 2,
                        FakeBuilds(delay=0.1)).run()
    engine = {r.variant: r.engine for r in results}
    assert engine["b"] == engine["c"] == engine["e"] == engine["a"]
    assert engine["d"] != engine["a"]  # two roots, two idle engines


def test_a_variant_goes_where_it_is_already_up_to_date() -> None:
    flat = matrix(("x", None), ("y", None))
    results = Scheduler(flat.variants, ["e1", "e2"], 1, FakeBuilds(),
                        probe=lambda v, e: e == "e2").run()
    assert [r.engine for r in results] == ["e2", "e2"]


def test_a_crashing_build_function_fails_that_variant_only() -> None:
    def run(v, engine, base):
        if v.name == "a":
            raise RuntimeError("boom")
        return BuildResult(v.name, engine, SKIPPED, image_id="i")

    results = Scheduler(plan(FOREST, FOREST.select(["d", "a"])), ["e1"], 1, run).run()
    assert [(r.variant, r.status) for r in results] == [("d", SKIPPED), ("a", FAILED)]
    assert "boom" in (results[1].error or "")


def _events(chunks: list[dict]) -> list:
    """docker-py's decoded build chunks as the engine interface passes them on."""
    from imagefactory.engine.docker_engine import DockerEngine

    return list(DockerEngine("unix:///nonexistent.sock")._build_events(iter(chunks)))


def test_stream_parsing_steps_lines_id_and_in_stream_errors() -> None:
    lines: list[str] = []
    s = BuildStream(on_line=lines.append)
    for event in _events([{"stream": "Step 1/3 : FROM x\n"},
                          {"stream": " ---> abc\nStep 2/3 : RUN "},
                          {"stream": "make\n"}, {"stream": "50%\r100%\n"},
                          {"status": "Pulling fs layer", "id": "l1"},
                          {"status": "Downloading", "id": "l1", "progress": "[=>  ]"},
                          {"aux": {"ID": "sha256:" + "f" * 64}}]):
        s.feed(event)
    assert s.step is not None and (s.step.number, s.step.total) == (2, 3)
    assert s.step.instruction == "RUN make"
    assert lines == ["Step 1/3 : FROM x", " ---> abc", "Step 2/3 : RUN make", "100%",
                     "l1: Pulling fs layer"]
    assert s.image_id == "sha256:" + "f" * 64 and s.error is None
    for event in _events([{"errorDetail": {"code": 1, "message": "The command returned a "
                                           "non-zero code: 3"},
                           "error": "The command returned a non-zero code: 3"},
                          {"stream": "never seen\n"}]):
        s.feed(event)
    assert s.error == "The command returned a non-zero code: 3"
    assert s.tail[-1].startswith("ERROR: The command")


def test_failure_block_names_variant_and_instruction_then_the_log_tail() -> None:
    s = BuildStream()
    for event in _events([{"stream": "Step 4/7 : RUN exit 3\n"},
                          {"stream": "about to fail\n"},
                          {"error": "returned a non-zero code: 3"}]):
        s.feed(event)
    result = BuildResult("broken", "e1", FAILED, step=s.step, error=s.error,
                         log_tail=tuple(s.tail), log_path=Path("/x.log"))
    block = failure_lines(result)
    assert block[0] == ("imagefactory: build of 'broken' failed at step 4/7 (RUN exit 3): "
                        "returned a non-zero code: 3")
    assert "  | about to fail" in block and block[-1] == "  full log: /x.log"


def test_context_holds_only_the_dockerfile_and_the_files_it_copies() -> None:
    project = Project.locate(FIXTURE / "variants.yaml")
    ctx = Renderer(project).render(project.matrix.get("base"))
    data = context_tar(ctx)
    assert context_names(data) == ["Dockerfile", "files/bin/tiny", "files/hello.txt"]
    assert context_tar(ctx) == data  # deterministic: same inputs, same bytes
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getmember("files/bin/tiny").mode == 0o755
        assert tar.getmember("files/hello.txt").mode == 0o644
        assert tar.extractfile("Dockerfile").read().decode() == ctx.dockerfile


def test_cpu_context_has_no_repository_files() -> None:
    project = Project.locate(Path(__file__).parents[2] / "variants.yaml")
    ctx = Renderer(project).render(project.matrix.get("cpu"))
    got = context_names(context_tar(ctx))
    # Expected from the disk, not from the context: every file under each COPY source of the
    # rendered Dockerfile, bytecode and hidden files (tool caches) left out.
    root = project.root / "dockerfiles"
    want = {"Dockerfile"}
    for line in ctx.dockerfile.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            source = root / line.split()[1]
            paths = [source] if source.is_file() else [p for p in source.rglob("*")
                                                       if p.is_file()]
            want |= {p.relative_to(root).as_posix() for p in paths
                     if "__pycache__" not in p.parts and p.suffix != ".pyc"
                     and not any(part.startswith(".") for part in p.relative_to(root).parts)}
    assert len(want) > 5 and set(got) == want and len(got) == len(want)


@pytest.mark.parametrize(("n", "text"), [(512, "512 B"), (10 * 1024, "10.0 KiB"),
                                         (3 * 1024**3, "3.0 GiB")])
def test_human_size(n: int, text: str) -> None:
    assert human_size(n) == text


def test_human_time() -> None:
    assert human_time(3.21) == "3.2s"
    assert human_time(125) == "2:05"
    assert human_time(3 * 3600 + 61) == "3:01:01"
