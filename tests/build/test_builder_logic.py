"""The builder's decisions (skip, rebuild, fail, tag) on the in-memory FakeEngine: the same
Builder code the CLI runs, with an engine that answers in microseconds. The real engine's
behaviour is covered by test_build.py."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest
from fake_engine import FakeEngine
from rich.console import Console

from imagefactory.build.builder import (
    BUILT,
    CANCELLED,
    FAILED,
    SKIPPED,
    Builder,
    BuildOptions,
    BuildResult,
)
from imagefactory.build.events import BuildLine
from imagefactory.commands._render import Printer
from imagefactory.engine.base import BuildKit
from imagefactory.events import Event, discard
from imagefactory.identity import ARGS_LABEL, BASE_LABEL, HASH_LABEL, TARGET_LABEL
from imagefactory.project import Project
from imagefactory.render.renderer import Renderer

FIXTURE = Path(__file__).parent.parent / "fixtures" / "buildmatrix"


@pytest.fixture
def fixture() -> Project:
    return Project.locate(FIXTURE / "variants.yaml")


@pytest.fixture(autouse=True)
def _host_salt(tmp_path, monkeypatch) -> None:
    # The build-args label is keyed with the host's salt (share/hostid.py): a private one.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture
def fake() -> FakeEngine:
    engine = FakeEngine()
    engine.add_image("debian:bookworm-slim")
    return engine


def builder(project: Project, engine: FakeEngine, tmp_path: Path, **options: object
            ) -> Builder:
    renderer = Renderer(project)
    contexts = {v.name: renderer.render(v) for v in project.matrix.variants}
    edits = options.pop("contexts", {})
    assert isinstance(edits, dict)
    contexts.update(edits)
    return Builder(project.matrix, contexts, {"fake": engine},
                   BuildOptions(log_dir=tmp_path, **options),  # type: ignore[arg-type]
                   discard)


def build_all(b: Builder) -> dict[str, BuildResult]:
    results: dict[str, BuildResult] = {}
    for v in b.matrix.variants:  # bases first in the fixture matrix's order
        base = results.get(v.base_variant) if v.base_variant else None
        results[v.name] = b.run(v, "fake", base)
    return results


def test_built_then_skipped_and_tagged_only_on_success(fixture, fake, tmp_path) -> None:
    first = build_all(builder(fixture, fake, tmp_path))
    assert {n: r.status for n, r in first.items()} == {"base": BUILT, "child": BUILT,
                                                        "solo": BUILT}
    for name, r in first.items():
        assert fake.refs[f"iftest-build:{name}"] == r.image_id
    child = fake.inspect_image("iftest-build:child")
    assert child is not None and child.labels[BASE_LABEL] == first["base"].image_id
    again = build_all(builder(fixture, fake, tmp_path))
    assert {r.status for r in again.values()} == {SKIPPED}
    assert len(fake.builds) == 3


def test_changed_inputs_rebuild_only_that_variant(fixture, fake, tmp_path) -> None:
    b = builder(fixture, fake, tmp_path)
    build_all(b)
    before = dict(fake.refs)
    ctx = b.contexts["solo"]
    # As an env edit of solo renders it (tests/render/test_render.py: only its hash moves).
    changed = ctx.dockerfile.replace('TINY_LEVEL="solo"', 'TINY_LEVEL="solo-changed"')
    assert changed != ctx.dockerfile
    b2 = builder(fixture, fake, tmp_path, contexts={"solo": replace(
        ctx, dockerfile=changed, inputs_hash="x" * 64)})
    results = build_all(b2)
    assert {n: r.status for n, r in results.items()} == {"base": SKIPPED, "solo": BUILT,
                                                          "child": SKIPPED}
    assert fake.refs["iftest-build:solo"] != before["iftest-build:solo"]
    assert fake.refs["iftest-build:base"] == before["iftest-build:base"]
    assert fake.refs["iftest-build:child"] == before["iftest-build:child"]


def test_a_failing_build_moves_no_tag_and_keeps_the_old_image(fixture, fake, tmp_path) -> None:
    build_all(builder(fixture, fake, tmp_path))
    old = fake.refs["iftest-build:solo"]
    r0 = builder(fixture, fake, tmp_path)
    broken = replace(r0.contexts["solo"], dockerfile=r0.contexts["solo"].dockerfile +
                     "RUN exit 5\n", inputs_hash="f" * 64)
    b = builder(fixture, fake, tmp_path, contexts={"solo": broken})
    result = b.run(fixture.matrix.get("solo"), "fake", None)
    assert result.status == FAILED
    assert result.error == "The command '/bin/sh -c exit 5' returned a non-zero code: 5"
    assert result.step is not None and result.step.instruction == "RUN exit 5"
    assert fake.refs["iftest-build:solo"] == old
    assert result.log_path is not None and "ERROR: The command" in result.log_path.read_text()


def test_buildkit_goes_through_the_same_engine_call_and_names_the_failing_stage_step(
        fixture, fake, tmp_path) -> None:
    first = build_all(builder(fixture, fake, tmp_path, builder="buildx",
                              buildx_builder="fleet", cache_from=("type=local,src=/c",)))
    assert {r.status for r in first.values()} == {BUILT}
    assert {c.buildkit for c in fake.builds} == {BuildKit("fleet", ("type=local,src=/c",))}
    r0 = builder(fixture, fake, tmp_path)
    broken = replace(r0.contexts["solo"], dockerfile=r0.contexts["solo"].dockerfile +
                     "RUN exit 5\n", inputs_hash="f" * 64)
    b = builder(fixture, fake, tmp_path, builder="buildx", contexts={"solo": broken})
    result = b.run(fixture.matrix.get("solo"), "fake", None)
    assert result.status == FAILED and result.error is not None
    assert "exit code: 5" in result.error
    assert result.step is not None and result.step.instruction == "RUN exit 5"
    assert result.step.stage is not None and result.step.number == result.step.total


def test_auto_builds_classic_on_an_engine_without_buildkit(fixture, fake, tmp_path) -> None:
    fake.buildkit = None
    results = build_all(builder(fixture, fake, tmp_path, builder="auto"))
    assert {r.status for r in results.values()} == {BUILT}
    assert {c.buildkit for c in fake.builds} == {None}


def test_an_engine_that_goes_away_fails_the_variant_in_one_line(fixture, fake,
                                                                 tmp_path) -> None:
    b = builder(fixture, fake, tmp_path)
    fake.unreachable = True
    result = b.run(fixture.matrix.get("solo"), "fake", None)
    assert result.status == FAILED
    assert result.error == "engine fake://engine: inspect debian:bookworm-slim: connection refused"
    assert "\n" not in result.error


def test_target_and_build_args_get_their_own_tag_and_identity(fixture, fake, tmp_path) -> None:
    build_all(builder(fixture, fake, tmp_path))
    plain = fake.refs["iftest-build:solo"]
    opts = {"target": "tiny", "build_args": {"A": "1"}, "targeted": frozenset({"solo"})}
    b = builder(fixture, fake, tmp_path, **opts)
    r = b.run(fixture.matrix.get("solo"), "fake", None)
    assert (r.status, r.tag) == (BUILT, "iftest-build:solo-tiny")
    call = fake.builds[-1]
    assert call.target == "tiny" and call.build_args["A"] == "1"
    assert call.labels[TARGET_LABEL] == "tiny" and ARGS_LABEL in call.labels
    assert call.labels[HASH_LABEL] == b.contexts["solo"].inputs_hash  # not on the stage else
    assert fake.refs["iftest-build:solo"] == plain  # the whole image's tag did not move
    # Same target and args: up to date. Other args: rebuilt.
    assert builder(fixture, fake, tmp_path, **opts).run(
        fixture.matrix.get("solo"), "fake", None).status == SKIPPED
    other = {**opts, "build_args": {"A": "2"}}
    assert builder(fixture, fake, tmp_path, **other).run(
        fixture.matrix.get("solo"), "fake", None).status == BUILT


def test_bases_of_a_targeted_variant_are_built_whole(fixture, fake, tmp_path) -> None:
    b = builder(fixture, fake, tmp_path, target="tiny", build_args={"A": "1"},
                targeted=frozenset({"child"}))
    results = build_all(b)
    assert results["base"].tag == "iftest-build:base"
    assert fake.builds[0].target is None and "A" not in fake.builds[0].build_args
    assert results["child"].tag == "iftest-build:child-tiny"


def test_force_rebuilds_an_up_to_date_variant(fixture, fake, tmp_path) -> None:
    build_all(builder(fixture, fake, tmp_path))
    b = builder(fixture, fake, tmp_path, force=frozenset({"solo"}))
    assert b.run(fixture.matrix.get("solo"), "fake", None).status == BUILT


def test_pull_failure_is_one_line_and_builds_nothing(fixture, fake, tmp_path) -> None:
    del fake.refs["debian:bookworm-slim"]
    b = builder(fixture, fake, tmp_path, pull=True)
    r = b.run(fixture.matrix.get("solo"), "fake", None)
    assert r.status == FAILED and r.error is not None
    assert r.error.startswith("--pull: cannot pull debian:bookworm-slim into fake: ")
    assert fake.builds == []


def test_a_bug_fails_the_variant_with_its_traceback_in_the_build_log(fixture, fake,
                                                                     tmp_path) -> None:
    def broken(ref: str) -> None:
        raise TypeError("planted")

    fake.inspect_image = broken  # type: ignore[method-assign]
    r = builder(fixture, fake, tmp_path).run(fixture.matrix.get("solo"), "fake", None)
    assert r.status == FAILED and r.error is not None and r.log_path is not None
    assert r.error == f"TypeError: planted (a bug; traceback in {r.log_path})"
    text = r.log_path.read_text()
    assert "failed: TypeError: planted" in text and "Traceback (most recent call last)" in text


def test_an_interrupted_build_leaves_no_untagged_image(fixture, fake, tmp_path) -> None:
    """Ctrl-C as the engine finishes: the image is not tagged, and the finished image is
    removed (it was never tagged), so nothing of the interrupted build is left to take."""
    b = builder(fixture, fake, tmp_path)

    def interrupting(event: Event) -> None:
        if isinstance(event, BuildLine) and event.text.startswith("Successfully built"):
            b.cancel.set()  # what the scheduler does on Ctrl-C

    b.emit = interrupting
    result = b.run(fixture.matrix.get("solo"), "fake", None)
    assert result.status == CANCELLED and result.image_id is None
    assert "iftest-build:solo" not in fake.refs
    assert [i for i in fake.images.values() if not i.tags and "debian" not in i.id] == []
    assert any(c.startswith("remove sha256:") for c in fake.calls)
    assert "# removed the untagged image" in Path(result.log_path or "").read_text()


def test_an_interrupted_build_keeps_an_identical_tagged_image(fixture, fake, tmp_path) -> None:
    """The finished image may be one that is already tagged (all of it from the cache):
    only an untagged image is removed."""
    first = builder(fixture, fake, tmp_path).run(fixture.matrix.get("solo"), "fake", None)
    b = builder(fixture, fake, tmp_path, force=frozenset({"solo"}))

    def interrupting(event: Event) -> None:
        if isinstance(event, BuildLine) and event.text.startswith("Successfully built"):
            b.cancel.set()

    b.emit = interrupting
    result = b.run(fixture.matrix.get("solo"), "fake", None)
    assert result.status == CANCELLED
    assert fake.refs["iftest-build:solo"] == first.image_id
    assert first.image_id in fake.images


def test_engine_text_is_redacted_and_escaped_in_log_progress_and_failure(
        fixture, fake, tmp_path) -> None:
    # Build output carries what the image's commands printed: OSC/CSI sequences, bidi
    # overrides, URLs with credentials, a build arg named like a secret (issue #25).
    hostile = ("RUN echo \x1b]0;owned\x07 \x1b[2J \u202egnp.exe "
               "https://bob:pa/ss w0rd@ghcr.io/x hf_sekrit12\n")
    r0 = builder(fixture, fake, tmp_path)
    ctx = r0.contexts["solo"]
    broken = replace(ctx, dockerfile=ctx.dockerfile + hostile + "RUN exit 5\n",
                     inputs_hash="e" * 64)
    out = io.StringIO()
    b = builder(fixture, fake, tmp_path, contexts={"solo": broken},
                build_args={"HF_TOKEN": "hf_sekrit12"})
    console = Console(file=out, force_terminal=False)
    b.emit = Printer("plain", console=console, err_console=console)
    result = b.run(fixture.matrix.get("solo"), "fake", None)
    assert result.status == FAILED and result.log_path is not None
    shown = out.getvalue() + result.log_path.read_text() + "\n".join(result.log_tail)
    assert "RUN echo \\x1b]0;owned\\x07 \\x1b[2J \\u202egnp.exe" in shown
    for raw in ("\x1b", "\x07", "\u202e", "pa/ss", "w0rd", "hf_sekrit12"):
        assert raw not in shown, repr(raw)


def test_build_args_label_names_them_and_cannot_be_guessed(fixture, fake, tmp_path,
                                                           monkeypatch) -> None:
    import hashlib
    import json

    args = {"HF_TOKEN": "hf_guessable", "DEBIAN_ARCHIVE": "http://deb.debian.org/debian"}
    opts = {"build_args": args, "targeted": frozenset({"solo"})}
    builder(fixture, fake, tmp_path, **opts).run(fixture.matrix.get("solo"), "fake", None)
    label = fake.builds[-1].labels[ARGS_LABEL]
    unsalted = hashlib.sha256(json.dumps(sorted(args.items()), separators=(",", ":"))
                              .encode()).hexdigest()
    assert label.startswith("DEBIAN_ARCHIVE,HF_TOKEN hmac-sha256:")
    assert unsalted not in label and "hf_guessable" not in label
    # Another host (another salt) keys the same values differently.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "other-host"))
    builder(fixture, fake, tmp_path, force=frozenset({"solo"}), **opts).run(
        fixture.matrix.get("solo"), "fake", None)
    assert fake.builds[-1].labels[ARGS_LABEL] != label
