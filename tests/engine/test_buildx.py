"""The BuildKit build path: `docker buildx build` driven by imagefactory/engine/buildx.py.

Unit tests read a rawjson stream recorded from a real failing build on this machine's engine
(tests/fixtures/buildx/failing.rawjson); the integration tests run the real buildx plugin on
the real engine, through `imagefactory build --builder buildx`, on private copies of the tiny
fixture matrix (tests/fixtures/buildmatrix) under a unique repository name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from needs import missing

from imagefactory.build.builder import BASE_LABEL
from imagefactory.engine import buildx
from imagefactory.engine.base import ERROR, IMAGE, OUTPUT, STEP, Step
from imagefactory.render.renderer import HASH_LABEL

FIXTURES = Path(__file__).parent.parent / "fixtures"
RECORDED = FIXTURES / "buildx" / "failing.rawjson"
MATRIX = FIXTURES / "buildmatrix"


# -- unit: the stream ----------------------------------------------------------------------

def _items(text: str, cuts: list[int]) -> list[object]:
    splitter = buildx.RawJsonSplitter()
    out: list[object] = []
    last = 0
    for cut in [*sorted(cuts), len(text)]:
        out += list(splitter.feed(text[last:cut]))
        last = cut
    return out + list(splitter.close())


def test_recorded_failing_stream_gives_error_step_and_output() -> None:
    progress = buildx.SolveProgress()
    lines: list[str] = []
    steps: list[tuple[int, int, str, str | None]] = []
    progress.on_line = lines.append
    progress.on_step = lambda *s: steps.append(s)
    for item in _items(RECORDED.read_text(), []):
        progress.feed(item)
    progress.close()
    assert progress.error == ("executor failed running [/bin/sh -c echo about to fail && exit "
                              "3]: exit code: 3")
    assert progress.failed_step == (3, 3, "RUN echo about to fail && exit 3", "stage-1")
    assert [s[:2] for s in steps] == [(1, 3), (2, 3), (3, 3)]
    assert "about to fail" in lines  # the RUN's own output, unprefixed
    assert lines[-1].startswith("ERROR: failed to solve: ")
    assert any(line.endswith("[stage-1 3/3] RUN echo about to fail && exit 3") for line in lines)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=RECORDED.stat().st_size), max_size=30))
def test_stream_split_anywhere_parses_the_same(cuts: list[int]) -> None:
    text = RECORDED.read_text()
    assert _items(text, cuts) == _items(text, [])


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_garbage_never_raises(text: str) -> None:
    progress = buildx.SolveProgress()
    for item in _items(text, [len(text) // 2]):
        progress.feed(item)
    progress.close()


def test_malformed_objects_come_back_as_text() -> None:
    items = _items('{\n  "vertexes": [oops\n}\nplain line\n{\n  "logs": 3\n}\n{\n  "x"', [])
    assert items[:3] == ['{', '  "vertexes": [oops', '}']
    assert items[3] == "plain line"
    assert items[4] == {"logs": 3}
    assert items[5:] == ["{", '  "x"']  # cut short
    progress = buildx.SolveProgress()
    for item in items:
        progress.feed(item)  # a non-list "logs" is ignored, not a crash


def test_argv_loads_and_never_tags_a_plain_build(tmp_path: Path) -> None:
    request = buildx.BuildxRequest(b"", labels={"b": "2", "a": "1"}, build_args={"X": "y"},
                                   no_cache=True, pull=True, builder="fleet",
                                   cache_from=("type=registry,ref=r/c:v",), network="none")
    argv = request.argv(tmp_path / "m.json")
    assert argv[argv.index("--network") + 1] == "none"
    assert argv[:3] == ["docker", "buildx", "build"]
    assert "--load" in argv and "--push" not in argv and "--tag" not in argv
    assert argv[argv.index("--builder") + 1] == "fleet"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--label"] == ["a=1", "b=2"]
    assert argv[-1] == "-" and "--no-cache" in argv and "--pull" in argv


def _stand_in(tmp_path: Path, body: str) -> str:
    """A `docker` that answers `buildx build` with a script: the clean interface is the
    subprocess, so build_events runs for real around it."""
    path = tmp_path / "docker"
    path.write_text(f"#!/bin/sh\ncat >/dev/null\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_build_events_turn_the_stream_into_steps_and_the_named_failure(tmp_path: Path
                                                                       ) -> None:
    docker = _stand_in(tmp_path, f"cat '{RECORDED}'\nexit 1")
    events = list(buildx.build_events(buildx.BuildxRequest(b"tar", docker=docker)))
    kinds = [e.kind for e in events]
    assert kinds[-1] == ERROR and IMAGE not in kinds
    assert [(e.step.number, e.step.total) for e in events if e.kind == STEP and e.step] == [
        (1, 3), (2, 3), (3, 3)]
    assert events[-1].step == Step(3, 3, "RUN echo about to fail && exit 3", "stage-1")
    assert "exit code: 3" in events[-1].text
    assert all(e.text.endswith("\n") for e in events if e.kind == OUTPUT)


def test_leaving_the_events_early_stops_buildx(tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    docker = _stand_in(tmp_path, f"trap 'touch {marker}; exit 130' INT\n"
                                 "echo '#1 [1/1] RUN sleep'\nwhile :; do sleep 0.1; done")
    started = time.monotonic()
    events = buildx.build_events(buildx.BuildxRequest(b"tar", docker=docker))
    assert next(events).kind == OUTPUT
    events.close()  # the caller went away: buildx gets SIGINT, as on Ctrl-C
    assert marker.exists() and time.monotonic() - started < 10


# -- integration: the real plugin on the real engine ------------------------------------------

needs_buildx = pytest.mark.buildx  # conftest: skip without the plugin (fail where required)


def imagefactory(*args: str, cwd: Path, timeout: float = 600
                 ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from imagefactory.cli import main; main()",
                           *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


class Matrix:
    def __init__(self, root: Path, repository: str, logs: Path) -> None:
        self.root, self.repository, self.logs = root, repository, logs

    def build(self, *args: str, config: str = "variants.yaml", builder: str = "buildx"
              ) -> subprocess.CompletedProcess[str]:
        return imagefactory("--config", config, "build", "--builder", builder, "--progress",
                            "plain", "--log-dir", str(self.logs), *args, cwd=self.root)

    def tag(self, variant: str) -> str:
        return f"{self.repository}:{variant}"

    def edit(self, old: str, new: str, config: str = "variants.yaml") -> None:
        path = self.root / config
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))


def image_id(client, tag: str) -> str | None:
    from docker.errors import ImageNotFound

    try:
        return str(client.images.get(tag).id)
    except ImageNotFound:
        return None


@pytest.fixture
def matrix(tmp_path: Path, docker_client) -> Iterator[Matrix]:
    repository = f"iftest-buildx-{uuid.uuid4().hex[:8]}"
    root = tmp_path / "matrix"
    shutil.copytree(MATRIX, root)
    for name in ("variants.yaml", "failing.yaml"):
        path = root / name
        path.write_text(path.read_text().replace("repository: iftest-build",
                                                 f"repository: {repository}"))
    yield Matrix(root, repository, tmp_path / "logs")
    for _ in range(2):  # dependants first, then their bases
        for image in docker_client.images.list(name=repository):
            for tag in image.tags:
                if tag.startswith(repository + ":"):
                    with contextlib.suppress(Exception):
                        docker_client.images.remove(tag)


def _outcomes(out: str) -> dict[str, str]:
    found = {}
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[2] == "|":
            word = parts[3].split()[0]
            if word in {"built", "skipped", "FAILED", "not", "interrupted;"}:
                found[parts[1]] = word
    return found


@pytest.mark.docker
@needs_buildx
def test_buildx_builds_tags_skips_and_logs(matrix: Matrix, docker_client) -> None:
    token = uuid.uuid4().hex[:8]  # a RUN of its own, so no cache skips it
    matrix.edit("echo building base", f"echo building base {token}")
    run = matrix.build("--all")
    assert run.returncode == 0, run.stderr
    assert _outcomes(run.stdout) == {"base": "built", "solo": "built", "child": "built"}
    ids = {v: image_id(docker_client, matrix.tag(v)) for v in ("base", "solo", "child")}
    assert all(ids.values())
    child = docker_client.images.get(matrix.tag("child")).labels
    assert child[BASE_LABEL] == ids["base"]
    assert child[HASH_LABEL]  # the rendered Dockerfile's LABEL, as with the classic builder
    assert f" base  | building base {token}" in run.stdout  # the RUN's own output, live
    assert " base  | #" in run.stdout and "[4/4] RUN echo building base" in run.stdout
    log = next(matrix.logs.glob("base-*.log")).read_text()
    assert "buildx builder" in log and f"building base {token}" in log
    assert f"# tagged {matrix.tag('base')} -> {ids['base']}" in log

    # Nothing changed: skipped without running buildx, whichever client built them.
    again = matrix.build("--all")
    assert _outcomes(again.stdout) == {"base": "skipped", "solo": "skipped",
                                       "child": "skipped"}
    assert "#1 " not in again.stdout
    assert matrix.build("--all", builder="classic").returncode == 0
    assert {v: image_id(docker_client, matrix.tag(v)) for v in ids} == ids


@pytest.mark.docker
@needs_buildx
def test_buildx_failure_names_the_step_and_moves_no_tag(matrix: Matrix, docker_client) -> None:
    run = matrix.build("broken-child", "good", config="failing.yaml")
    assert run.returncode == 1
    assert image_id(docker_client, matrix.tag("broken")) is None
    assert image_id(docker_client, matrix.tag("good")) is not None
    err = run.stderr.splitlines()
    assert err[0] == ("imagefactory: build of 'broken' failed at step 4/4 (RUN echo about to "
                      "fail && exit 3): executor failed running [/bin/sh -c echo about to fail "
                      "&& exit 3]: exit code: 3")
    # Plain progress showed the log as it came: the failure block is the error line and the
    # full log's path, not the log again.
    assert "about to fail" in run.stdout and not any(line.startswith("  | ") for line in err)
    assert err[-2].startswith("  full log: ")
    assert err[-1] == ("imagefactory: error: 1 of 3 build(s) failed: broken (RUN echo about to "
                       "fail && exit 3); 1 not built")
    good = image_id(docker_client, matrix.tag("good"))
    matrix.edit("echo building good", "exit 4", config="failing.yaml")
    assert matrix.build("good", config="failing.yaml").returncode == 1
    assert image_id(docker_client, matrix.tag("good")) == good


def _sleepers(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


@pytest.mark.docker
@needs_buildx
def test_ctrl_c_cancels_the_buildkit_build_and_tags_nothing(matrix: Matrix,
                                                            docker_client) -> None:
    # A sleep of our own length, so the process is recognisable on the host: BuildKit's RUN
    # steps are runc processes of dockerd, not containers `docker ps` lists.
    seconds = 300 + uuid.uuid4().int % 200
    matrix.edit("sleep 97", f"sleep {seconds}", config="failing.yaml")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from imagefactory.cli import main; main()", "--config",
         "failing.yaml", "build", "slow", "--builder", "buildx", "--progress", "plain",
         "--log-dir", str(matrix.logs)], cwd=matrix.root, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.rstrip().endswith("| sleeping"):
            break
    else:
        pytest.fail("the slow build never reached its RUN")
    assert _sleepers(f"sleep {seconds}"), "the RUN is not running on the host"
    proc.send_signal(signal.SIGINT)  # to imagefactory alone: it must cancel buildx itself
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) != 0
    assert "no unfinished build is tagged" in rest
    assert image_id(docker_client, matrix.tag("slow")) is None
    deadline = time.monotonic() + 30
    while _sleepers(f"sleep {seconds}") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _sleepers(f"sleep {seconds}"), "BuildKit still runs the interrupted step"
    assert not _sleepers("buildx build"), "buildx outlived imagefactory"


MOUNTS_TEMPLATE = """\
FROM {{ from_ref }}
RUN --mount=type=cache,target=/cache,id={{ v.recipe.cache_id }} \\
    echo run >> /cache/runs && echo "cache runs: $(wc -l < /cache/runs)" && {{ v.recipe.command }}
LABEL {{ hash_label }}="{{ labels[-1][1] }}"
"""


@pytest.fixture
def mounts(matrix: Matrix) -> Matrix:
    """A family whose Dockerfile needs BuildKit (a cache mount)."""
    (matrix.root / "dockerfiles" / "templates" / "mounts.Dockerfile.j2").write_text(
        MOUNTS_TEMPLATE)
    cache_id = f"iftest-buildx-{uuid.uuid4().hex[:8]}"
    (matrix.root / "mounts.yaml").write_text(
        f"repository: {matrix.repository}\nvariants:\n  cached:\n    family: mounts\n"
        "    description: uses a cache mount\n    base: debian:bookworm-slim\n"
        "    torch: {version: '0', source: debian}\n"
        f"    recipe:\n      cache_id: {cache_id}\n      command: echo one\n"
        "    expect: {}\n")
    return matrix


@pytest.mark.docker
@needs_buildx
def test_classic_refuses_a_buildkit_dockerfile_before_building(mounts: Matrix,
                                                               docker_client) -> None:
    run = mounts.build("cached", config="mounts.yaml", builder="classic")
    assert run.returncode == 1
    assert run.stderr.splitlines()[0] == (
        "imagefactory: build of 'cached' failed: needs BuildKit: its Dockerfile line 2 uses "
        "RUN --mount, which the classic builder cannot build; install the docker buildx "
        "plugin (package docker-buildx or docker-buildx-plugin) and build with --builder "
        "buildx")
    assert "building on" not in run.stdout  # refused before any build started
    assert image_id(docker_client, mounts.tag("cached")) is None


@pytest.mark.docker
@needs_buildx
def test_cache_mount_outlives_a_rebuild(mounts: Matrix, docker_client) -> None:
    first = mounts.build("cached", config="mounts.yaml")  # auto: buildx is installed here
    assert first.returncode == 0, first.stderr
    assert "cache runs: 1" in first.stdout
    mounts.edit("command: echo one", "command: echo two", config="mounts.yaml")
    second = mounts.build("cached", config="mounts.yaml")
    assert second.returncode == 0, second.stderr
    assert "cache runs: 2" in second.stdout  # the RUN ran again, its cache mount persisted
    assert image_id(docker_client, mounts.tag("cached")) is not None


@pytest.mark.docker
def test_explicit_buildx_without_the_plugin_is_one_line(matrix: Matrix, tmp_path: Path
                                                        ) -> None:
    # A PATH whose `docker` has no buildx plugin: a shell script standing in for the CLI.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "docker").write_text("#!/bin/sh\necho \"docker: 'buildx' is not a docker command\" "
                                 ">&2\nexit 1\n")
    (fake / "docker").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ.get('PATH', '')}"}
    run = subprocess.run([sys.executable, "-c", "from imagefactory.cli import main; main()",
                          "build", "solo", "--builder", "buildx", "--force", "--progress",
                          "plain", "--log-dir", str(matrix.logs)], cwd=matrix.root, env=env,
                         capture_output=True, text=True, timeout=300)
    if "cannot reach the Docker engine" in run.stderr:
        missing("no engine")
    assert run.returncode == 1
    assert ("build of 'solo' failed: --builder buildx: `docker buildx version` does not "
            "answer") in run.stderr.splitlines()[0]
    # auto (the default) falls back to the classic builder there, and says so in the log.
    auto = subprocess.run([sys.executable, "-c", "from imagefactory.cli import main; main()",
                           "build", "solo", "--force", "--progress", "plain", "--log-dir",
                           str(matrix.logs)], cwd=matrix.root, env=env, capture_output=True,
                          text=True, timeout=300)
    assert auto.returncode == 0, auto.stderr
    assert "Step 1/" in auto.stdout  # the classic builder's own progress lines
    assert any("classic builder" in p.read_text() for p in matrix.logs.glob("solo-*.log"))


@pytest.mark.docker
@needs_buildx
def test_build_exports_and_imports_a_cache_through_imagefactory(matrix: Matrix,
                                                                docker_client) -> None:
    """`imagefactory build --cache-to/--cache-from` reach buildx (inline: the docker driver's
    export); the engine's BuildKit then reports importing it. The registry round trip on an
    empty engine is tests/engine/test_buildx_registry_cache.py."""
    run = matrix.build("solo", "--force", "--cache-to", "type=inline")
    assert run.returncode == 0, run.stderr
    log = next(matrix.logs.glob("solo-*.log")).read_text()
    assert "exporting cache" in log or "preparing build cache for export" in log
    ref = matrix.tag("solo")
    again = matrix.build("solo", "--force", "--cache-from", f"type=registry,ref={ref}")
    # Asked to import it: BuildKit looks the ref up (here in no registry it can reach, so it
    # goes on without it, as a missing cache must not fail a build).
    assert again.returncode == 0, again.stderr
    logs = sorted(matrix.logs.glob("solo-*.log"))
    assert len(logs) == 2 and f"importing cache manifest from {ref}" in logs[-1].read_text()


def test_cache_flags_are_usage_errors_on_the_classic_builder(tmp_path: Path) -> None:
    for args in (["--builder", "classic", "--cache-to", "type=inline"],
                 ["--cache-from", "type=registry,ref=x\nRUN"],
                 ["--builder", "classic", "--buildx-builder", "fleet"]):
        run = imagefactory("--config", str(MATRIX / "variants.yaml"), "build", "solo",
                           "--log-dir", str(tmp_path), *args, cwd=tmp_path)
        assert run.returncode == 2, (args, run.stderr)
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
