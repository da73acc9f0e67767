"""`imagefactory build` on real Docker engines: the `cpu` variant, and the tiny fixture matrix
(tests/fixtures/buildmatrix) copied per test under a unique repository name, so tests neither
see each other's images nor touch images they did not create."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from second_engine import second_dockerd
from suite_session import unique

from imagefactory.build.builder import BASE_LABEL
from imagefactory.render.renderer import HASH_LABEL

pytestmark = pytest.mark.docker

FIXTURE = Path(__file__).parent.parent / "fixtures" / "buildmatrix"
PLAIN = re.compile(r"^\d\d:\d\d:\d\d (\S+) +\| (.*)$")
OUTCOME = re.compile(r"^(built|skipped \(up to date\)|FAILED|not built)")


@dataclass
class Run:
    rc: int
    out: str
    err: str

    def plain(self) -> list[tuple[str, str]]:
        """(variant, text) of every plain progress line."""
        return [(m.group(1), m.group(2)) for m in map(PLAIN.match, self.out.splitlines()) if m]

    def outcomes(self) -> dict[str, str]:
        out = {}
        for name, text in self.plain():
            m = OUTCOME.match(text)
            if m:
                out[name] = m.group(1).split()[0]
        return out


def imagefactory(*args: str, cwd: Path, timeout: float = 600) -> Run:
    proc = subprocess.run([sys.executable, "-c", "from imagefactory.cli import main; main()",
                           *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return Run(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class Matrix:
    """A private copy of the fixture matrix, with its own repository name and log dir."""

    root: Path
    repository: str
    logs: Path

    def build(self, *args: str, config: str = "variants.yaml", timeout: float = 600) -> Run:
        # The classic (docker-py) client, whose output these tests read; the BuildKit path
        # has the same guarantees tested in tests/engine/test_buildx.py.
        return imagefactory("--config", config, "build", "--builder", "classic", "--progress",
                            "plain", "--log-dir", str(self.logs), *args, cwd=self.root,
                            timeout=timeout)

    def tag(self, variant: str) -> str:
        return f"{self.repository}:{variant}"

    def edit(self, old: str, new: str, config: str = "variants.yaml") -> None:
        path = self.root / config
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))


def remove_repository(client, repository: str) -> None:
    """Untag this test's images (only its own repository) so the engine keeps no leftovers."""
    for image in client.images.list(name=repository):
        for tag in image.tags:
            if tag.startswith(repository + ":"):
                # A base still used by its dependant's image goes in the next round.
                with contextlib.suppress(Exception):
                    client.images.remove(tag)


@pytest.fixture
def matrix(tmp_path: Path, docker_client) -> Iterator[Matrix]:
    repository = unique("build")
    root = tmp_path / "matrix"
    shutil.copytree(FIXTURE, root)
    for name in ("variants.yaml", "failing.yaml"):
        path = root / name
        path.write_text(path.read_text().replace("repository: iftest-build",
                                                 f"repository: {repository}"))
    yield Matrix(root, repository, tmp_path / "logs")
    for _ in range(2):  # dependants first, then their bases
        remove_repository(docker_client, repository)


def image_id(client, tag: str) -> str | None:
    from docker.errors import ImageNotFound

    try:
        return client.images.get(tag).id
    except ImageNotFound:
        return None


def labels(client, tag: str) -> dict[str, str]:
    return client.images.get(tag).labels or {}


# -- the real cpu variant -------------------------------------------------------------------

def test_cpu_variant_builds_and_is_then_up_to_date(cpu_image: str, docker_client, cpu_project,
                                                   tmp_path: Path) -> None:
    from imagefactory.render.renderer import Renderer

    ctx = Renderer(cpu_project).render(cpu_project.matrix.get("cpu"))
    assert labels(docker_client, cpu_image)[HASH_LABEL] == ctx.inputs_hash
    before = image_id(docker_client, cpu_image)
    run = imagefactory("--config", str(cpu_project.config_path), "build", "cpu", "--progress",
                       "plain", "--log-dir", str(tmp_path), cwd=tmp_path)
    assert run.rc == 0, run.err
    assert run.outcomes() == {"cpu": "skipped"}
    assert image_id(docker_client, cpu_image) == before


# -- tags, skips, logs ------------------------------------------------------------------------

def test_build_tags_then_skips_when_nothing_changed(matrix: Matrix, docker_client) -> None:
    run = matrix.build("--all")
    assert run.rc == 0, run.err
    assert run.outcomes() == {"base": "built", "solo": "built", "child": "built"}
    ids = {v: image_id(docker_client, matrix.tag(v)) for v in ("base", "solo", "child")}
    assert all(ids.values())
    assert labels(docker_client, matrix.tag("child"))[BASE_LABEL] == ids["base"]

    again = matrix.build("--all")
    assert again.rc == 0, again.err
    assert again.outcomes() == {"base": "skipped", "solo": "skipped", "child": "skipped"}
    assert "skipped (up to date)" in again.out
    assert {v: image_id(docker_client, matrix.tag(v)) for v in ids} == ids

    forced = matrix.build("solo", "--force")
    assert forced.outcomes() == {"solo": "built"}


def test_plain_progress_lines_and_full_log_file(matrix: Matrix) -> None:
    token = uuid.uuid4().hex[:8]  # a RUN of its own, so the engine's cache cannot skip it
    matrix.edit("echo building base", f"echo building base {token}")
    run = matrix.build("base")
    assert run.rc == 0, run.err
    lines = run.plain()
    assert lines and all(name == "base" for name, _ in lines)
    texts = [t for _, t in lines]
    assert any(t.startswith("Step 1/") and "FROM debian:bookworm-slim" in t for t in texts)
    assert f"building base {token}" in texts  # the RUN's own output
    started = next(t for t in texts if t.startswith("building on "))
    m = re.search(r"context (\S+ \S+) \((\d+) files\); log (\S+)$", started)
    assert m and m.group(2) == "3"
    log = Path(m.group(3))
    assert log.parent == matrix.logs and log.name.startswith("base-")
    text = log.read_text()
    assert f"Step 4/8 : RUN echo building base {token}" in text
    assert f"\n{time.strftime('%H')}" in text or "building base" in text  # timestamped lines
    assert f"tagged {matrix.tag('base')}" in text


def test_a_mode_change_of_a_copied_file_rebuilds(matrix: Matrix, docker_client) -> None:
    """`chmod -x` changes the context the engine gets (the tar carries the mode), so it
    changes the inputs hash: the image is rebuilt, and its copy of the file lost the bit."""
    tool = matrix.root / "dockerfiles" / "files" / "bin" / "tiny"
    assert tool.stat().st_mode & 0o111
    assert matrix.build("solo").rc == 0
    before = image_id(docker_client, matrix.tag("solo"))
    old_hash = labels(docker_client, matrix.tag("solo"))[HASH_LABEL]
    tool.chmod(tool.stat().st_mode & ~0o111)
    run = matrix.build("solo")
    assert run.rc == 0, run.err
    assert run.outcomes() == {"solo": "built"}
    assert image_id(docker_client, matrix.tag("solo")) != before
    assert labels(docker_client, matrix.tag("solo"))[HASH_LABEL] != old_hash
    out = docker_client.containers.run(matrix.tag("solo"), ["stat", "-c", "%a",
                                       "/opt/tiny/bin/tiny"], remove=True, network_mode="none",
                                       entrypoint=[])
    assert out.strip() == b"644"
    assert matrix.build("solo").outcomes() == {"solo": "skipped"}


def test_a_rebuilt_base_rebuilds_its_dependants(matrix: Matrix, docker_client) -> None:
    assert matrix.build("--all").rc == 0
    old_child = image_id(docker_client, matrix.tag("child"))
    matrix.edit("TINY_LEVEL: base", "TINY_LEVEL: base-changed")
    # Naming only the dependant brings its base into the build.
    run = matrix.build("child")
    assert run.rc == 0, run.err
    assert run.outcomes() == {"base": "built", "child": "built"}
    new_base = image_id(docker_client, matrix.tag("base"))
    assert labels(docker_client, matrix.tag("child"))[BASE_LABEL] == new_base
    assert image_id(docker_client, matrix.tag("child")) != old_child
    assert matrix.build("--all").outcomes() == {
        "base": "skipped", "solo": "skipped", "child": "skipped"}


def test_bases_build_before_dependants_and_independents_in_parallel(matrix: Matrix) -> None:
    run = matrix.build("--all", "--jobs", "2")
    assert run.rc == 0, run.err
    assert "2 at a time: base, solo, child" in run.out
    events = [(n, t.split()[0]) for n, t in run.plain()
              if t.startswith(("building on", "built "))]
    order = [f"{n}:{what}" for n, what in events]
    assert order.index("child:building") > order.index("base:built")
    # solo does not wait for base: both start before either finishes
    assert max(order.index("base:building"), order.index("solo:building")) < min(
        order.index("base:built"), order.index("solo:built"))


def test_target_and_build_arg_tag_the_stage_and_count_for_up_to_date(
        matrix: Matrix, docker_client) -> None:
    from imagefactory.identity import TARGET_LABEL

    run = matrix.build("solo", "--target", "tiny", "--build-arg", "IMAGEFACTORY_REVISION=abc")
    assert run.rc == 0, run.err
    assert run.outcomes() == {"solo": "built"}
    assert image_id(docker_client, matrix.tag("solo")) is None  # only the stage's tag
    got = labels(docker_client, matrix.tag("solo-tiny"))
    assert got["org.opencontainers.image.revision"] == "abc"
    assert got[TARGET_LABEL] == "tiny"
    again = matrix.build("solo", "--target", "tiny", "--build-arg", "IMAGEFACTORY_REVISION=abc")
    assert again.outcomes() == {"solo": "skipped"}
    other = matrix.build("solo", "--target", "tiny", "--build-arg", "IMAGEFACTORY_REVISION=d")
    assert other.outcomes() == {"solo": "built"}
    assert labels(docker_client, matrix.tag("solo-tiny"))[
        "org.opencontainers.image.revision"] == "d"


# -- failures ---------------------------------------------------------------------------------

def test_a_failing_build_moves_no_tag(matrix: Matrix, docker_client) -> None:
    run = matrix.build("broken-child", "good", config="failing.yaml")
    assert run.rc == 1
    assert image_id(docker_client, matrix.tag("broken")) is None
    assert image_id(docker_client, matrix.tag("broken-child")) is None
    assert image_id(docker_client, matrix.tag("good")) is not None
    err = run.err.splitlines()
    assert err[0] == ("imagefactory: build of 'broken' failed at step 4/7 (RUN echo about to "
                      "fail && exit 3): The command '/bin/sh -c echo about to fail && exit 3' "
                      "returned a non-zero code: 3")
    # One failure, one line, then where the full log is: the log's lines were already
    # shown as they came (plain progress), and the outcome line does not repeat the error.
    assert len(err) == 3, err
    assert any(text == "about to fail" for _, text in run.plain())
    assert [text for name, text in run.plain() if name == "broken"][-1] == (
        "FAILED at step 4/7 (RUN echo about to fail && exit 3)")
    assert run.out.count("returned a non-zero code: 3") == 1  # the engine's own line
    assert err[-2].startswith("  full log: ") and Path(err[-2].split(": ", 1)[1]).is_file()
    assert err[-1] == ("imagefactory: error: 1 of 3 build(s) failed: broken (RUN echo about to "
                       "fail && exit 3); 1 not built")
    assert run.outcomes() == {"good": "built", "broken": "FAILED", "broken-child": "not"}

    # A variant that built before keeps its tag, on the old image, when its rebuild fails.
    good = image_id(docker_client, matrix.tag("good"))
    matrix.edit("echo building good", "exit 4", config="failing.yaml")
    run = matrix.build("good", config="failing.yaml")
    assert run.rc == 1 and "build of 'good' failed at step 4/7 (RUN exit 4)" in run.err
    assert image_id(docker_client, matrix.tag("good")) == good


def start_slow_build(matrix: Matrix, builder: str) -> tuple[subprocess.Popen[str], list[str]]:
    """`build slow` in plain progress, read up to the line its sleeping RUN prints; the
    process and the lines seen."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from imagefactory.cli import main; main()", "--config",
         "failing.yaml", "build", "slow", "--builder", builder, "--progress", "plain",
         "--log-dir", str(matrix.logs)], cwd=matrix.root, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.rstrip().endswith("sleeping") and "echo" not in line:
            return proc, seen
    pytest.fail("the slow build never reached its sleeping RUN:\n" + "".join(seen))


def sleepers_left(docker_client, marker: str = "sleep 97") -> list[object]:
    """Containers still running `marker` after up to 20 s (the engine stops a build whose
    connection closed)."""
    deadline = time.monotonic() + 20
    while True:
        left = [c for c in docker_client.containers.list(all=True)
                if marker in " ".join(c.attrs.get("Args") or [])]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def test_ctrl_c_stops_the_build_and_tags_nothing(matrix: Matrix, docker_client) -> None:
    proc, _ = start_slow_build(matrix, "classic")
    assert proc.stdout is not None
    proc.send_signal(signal.SIGINT)
    rest = proc.stdout.read()
    assert proc.wait(timeout=30) != 0
    assert "no unfinished build is tagged" in rest
    assert image_id(docker_client, matrix.tag("slow")) is None
    assert not sleepers_left(docker_client), "the interrupted build's container is still there"


@pytest.mark.parametrize("builder", ["classic", "buildx"])
def test_ctrl_c_leaves_nothing_that_changes_the_next_build(matrix: Matrix, docker_client,
                                                          builder: str) -> None:
    """Interrupted in a step after a finished one: nothing is tagged, no build container or
    finished-but-untagged image of it is left, and the next build takes the finished step
    from the layer cache instead of running it again."""
    if builder == "buildx" and subprocess.run(["docker", "buildx", "version"],
                                              capture_output=True).returncode != 0:
        pytest.fail("the buildx case needs the docker buildx plugin "
                    "(scripts/setup-test-env.sh installs it)")
    marker = f"prepared-{uuid.uuid4().hex[:10]}"
    matrix.edit("command: echo sleeping && sleep 97",
                f"command: echo {marker}\n      then: echo sleeping && sleep 97",
                config="failing.yaml")
    proc, seen = start_slow_build(matrix, builder)
    assert proc.stdout is not None
    assert any(marker in line and "echo" not in line for line in seen)  # step 1 ran
    proc.send_signal(signal.SIGINT)
    proc.stdout.read()
    assert proc.wait(timeout=30) == 130
    assert image_id(docker_client, matrix.tag("slow")) is None
    title = f"org.opencontainers.image.title={matrix.tag('slow')}"
    assert not sleepers_left(docker_client), "the interrupted build's container is still there"
    assert docker_client.images.list(filters={"label": title}) == []

    matrix.edit("then: echo sleeping && sleep 97", "then: echo finished",
                config="failing.yaml")
    run = matrix.build("slow", "--builder", builder, config="failing.yaml", timeout=300)
    assert run.rc == 0, run.err
    # The finished step came from the cache: its output is not printed again.
    ran = [text for _, text in run.plain() if marker in text and "echo" not in text]
    assert ran == [], ran
    assert any(text.endswith("finished") for _, text in run.plain())


def test_unreachable_engine_is_one_line_naming_the_address(matrix: Matrix) -> None:
    address = f"unix:///tmp/iftest-build-{uuid.uuid4().hex[:6]}-missing.sock"
    run = matrix.build("base", "--engine", address)
    assert run.rc == 1
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and address in lines[0]
    assert lines[0].startswith("imagefactory: error: cannot reach the Docker engine at ")


# -- two engines ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def second_engine(docker_client) -> Iterator[str]:
    """A second dockerd of our own: own socket, data and exec roots, no iptables, and its own
    bridge made here. Not `--bridge=none`: at startup that deletes the host's docker0, which
    breaks the first engine's containers."""
    with second_dockerd(docker_client, "build", 213) as address:
        yield address


@pytest.mark.root
def test_builds_spread_over_engines_and_dependants_follow_their_base(
        matrix: Matrix, docker_client, second_engine: str) -> None:
    import docker

    from imagefactory.engine.docker_engine import default_address

    first = default_address()
    other = docker.DockerClient(base_url=second_engine)
    try:
        run = matrix.build("--all", "--engine", first, "--engine", second_engine)
        assert run.rc == 0, run.err
        assert "on 2 engine(s), 2 at a time" in run.out
        engine_of = {n: t.split("building on ", 1)[1].split(",")[0]
                     for n, t in run.plain() if t.startswith("building on ")}
        assert set(engine_of) == {"base", "solo", "child"}
        assert engine_of["child"] == engine_of["base"]
        assert engine_of["solo"] != engine_of["base"]
        clients = {first: docker_client, second_engine: other}
        for name, engine in engine_of.items():
            assert image_id(clients[engine], matrix.tag(name)) is not None
        # Nothing changed: each variant is found up to date on the engine that has it.
        again = matrix.build("--all", "--engine", first, "--engine", second_engine)
        assert again.outcomes() == {"base": "skipped", "solo": "skipped", "child": "skipped"}
    finally:
        for _ in range(2):
            remove_repository(other, matrix.repository)
        other.close()
