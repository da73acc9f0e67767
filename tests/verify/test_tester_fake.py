"""`Tester.run` end to end on the in-memory FakeEngine: the decisions of a test run (what
passes, what fails and under which check's name, that the container goes however the run
ends, that what the image prints is escaped) without an engine. The fake answers the execs
a run makes as a scripted image would: the testinfra suite (in-process, its `host` execing
through the engine: verify/suite/backend.py), the manifest probe and the conv check.
test_tester.py runs the same against the real engine and the real cpu image."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine
from hypothesis import given, settings
from hypothesis import strategies as st

from imagefactory.commands._render import collect
from imagefactory.engine.base import EngineError, ImageInfo
from imagefactory.engine.images import BuiltImage
from imagefactory.errors import JobError, UsageError
from imagefactory.host.devices import GpuAccess
from imagefactory.identity import HASH_LABEL, VARIANT_LABEL
from imagefactory.project import Project
from imagefactory.verify import manifest as manifest_mod
from imagefactory.verify.results import TestResult
from imagefactory.verify.suite import plugin
from imagefactory.verify.tester import CONV_JSON, Tester, TestOptions

ENTRYPOINT = "/usr/local/bin/imagefactory-entrypoint"
PROBE_SOURCE = (Path(plugin.__file__).parent / "probe.py").read_text(encoding="utf-8")
CASE = "matmul-512-fwd"


class ScriptedImage:
    """The cpu image as the execs see it. `probe`, `manifest` and `conv_output` change
    what it answers; every command no test scripted answers 127, so a check that passes
    passed on an answer written here."""

    def __init__(self, engine: FakeEngine, env: dict[str, str]) -> None:
        self.engine = engine
        self.env = {"PYTHONPATH": "/opt/imagefactory/python", "IMAGEFACTORY_VARIANT": "cpu",
                    **env}
        self.probe: dict[str, Any] = {}  # replaces fields of the suite probe's answer
        self.probe_fails: bytes | None = None  # the probe exits 1 with this on stderr
        self.manifest: dict[str, Any] = {}
        self.conv_output = b"matmul-512-fwd ok\n"
        self.conv_status = "ok"
        self.commands: list[list[str]] = []

    def __call__(self, container: str, command: Sequence[str]
                 ) -> tuple[int, bytes, bytes] | None:
        command = list(command)
        self.commands.append(command)
        if command[:2] == ["/bin/sh", "-c"]:  # testinfra, through EngineBackend
            return self.shell(shlex.split(command[2]))
        if command[:2] == ["python3", "-c"] and command[2] == manifest_mod._PROBE:
            answer = {"python": "3.13.5", "torch": "2.6.0", "hip": None,
                      "pip": ["torch==2.6.0"], "dpkg": ["python3\t3.13.5-1"],
                      "rocm_info": {}, **self.manifest}
            return 0, json.dumps(answer).encode() + b"\n", b""
        if command[:3] == ["python3", "-m", "convcheck"]:
            report = {"cases": [{"case": CASE, "status": self.conv_status, "seconds": 0.5}],
                      "summary": {self.conv_status: 1}, "torch": "2.6.0"}
            self.engine.files[(container, CONV_JSON)] = json.dumps(report).encode()
            return (0 if self.conv_status == "ok" else 1), self.conv_output, b""
        return 127, b"", f"not scripted: {command}".encode()

    def shell(self, words: list[str]) -> tuple[int, bytes, bytes]:
        if words[:3] == ["python3", "-c", PROBE_SOURCE]:
            if self.probe_fails is not None:
                return 1, b"", self.probe_fails
            want = json.loads(words[3])
            facts = {"python": "3.13.5", "uid": 1000, "gid": 1000, "groups": [1000],
                     "home": "/home/user", "home_writable": True,
                     "env": {k: self.env.get(k) for k in want["env"]},
                     "files": dict.fromkeys(want["files"], True),
                     "executables": dict.fromkeys(want["executables"], True),
                     "devices": {}, "convcheck": "/opt/imagefactory/python/convcheck",
                     "torch": "2.6.0", "hip": None, "torch_computes": True, **self.probe}
            return 0, json.dumps(facts).encode() + b"\n", b""
        if words[:2] == [ENTRYPOINT, "echo"]:
            return 0, " ".join(words[2:]).encode() + b"\n", b""
        if words[:2] == ["python3", "-c"] and "getpreferredencoding" in words[2]:
            return 0, b"UTF-8\n", b""  # testinfra asks when a stream is not ASCII
        return 127, b"", f"sh: {words[0]}: not found".encode()


@pytest.fixture
def fake(project: Project) -> tuple[FakeEngine, ScriptedImage, BuiltImage]:
    engine = FakeEngine()
    variant = project.matrix.get("cpu")
    image_id = "sha256:" + "c" * 64
    tag = "imagefactory:cpu"
    engine.images[image_id] = ImageInfo(image_id, (tag,), {VARIANT_LABEL: "cpu",
                                                           HASH_LABEL: "a" * 64},
                                        entrypoint=(ENTRYPOINT,))
    engine.refs[tag] = image_id
    image = ScriptedImage(engine, variant.runtime_env(None))
    engine.exec_answer = image
    return engine, image, BuiltImage(variant, image_id, tag, "a" * 64)


def make_tester(project: Project, engine: FakeEngine, tmp_path: Path, shown: list[str],
           **options: Any) -> Tester:
    t = Tester(engine, project.matrix, GpuAccess((), ()),
               TestOptions(results_dir=tmp_path / "res", run_id="r1", **options),
               emit=collect(shown.append))
    t.host_archs = []  # whatever GPU this host has, the run is the same
    return t


def test_a_passing_run_writes_its_result(project, fake, tmp_path) -> None:
    engine, image, built = fake
    shown: list[str] = []
    result = make_tester(project, engine, tmp_path, shown, cases=CASE).run(built)
    assert result.passed, "\n".join(shown)
    names = [c.name for c in result.checks]
    assert names[0] == "container starts" and names[-1] == "conv check"
    # The suite ran in this process through the engine: each of its tests is a check.
    assert {"runs as non root", "labels", "entrypoint", "entrypoint runs command",
            "python version", "torch version", "hip version", "runtime env",
            "expected file /usr/local/bin/imagefactory-entrypoint",
            "expected env IMAGEFACTORY_VARIANT"} <= set(names)
    assert "testinfra suite" not in names
    assert [c.case for c in result.conv] == [CASE]
    assert (result.torch, result.scope, result.device) == ("2.6.0", "subset", "cpu")
    assert any(cmd[:2] == ["/bin/sh", "-c"] for cmd in image.commands)
    assert engine.containers == {}  # removed at the end
    assert f"  checks: {len(names)}/{len(names)} passed" in shown
    saved = result.save(tmp_path / "res")
    assert TestResult.load(tmp_path / "res", "cpu", "subset") == result
    assert saved.name == "cpu.subset.json"
    manifest = json.loads((tmp_path / "res" / "manifests" / "cpu.subset.json").read_text())
    assert manifest["torch"] == "2.6.0" and manifest["pip"] == ["torch==2.6.0"]


def test_a_second_run_in_the_same_process_runs_the_suite_again(project, fake,
                                                               tmp_path) -> None:
    engine, image, built = fake
    t = make_tester(project, engine, tmp_path, [], cases=CASE)
    first = t.run(built)
    image.probe = {"torch": "2.5.1"}  # what changed must be seen: nothing is cached
    second = t.run(built)
    assert first.passed and not second.passed
    assert [c.name for c in second.checks if not c.passed] == ["torch version"]
    assert len(first.checks) == len(second.checks)


def test_a_failing_expectation_fails_naming_the_check(project, fake, tmp_path) -> None:
    engine, image, built = fake
    image.probe = {"torch": "9.9.0"}  # the image's torch is not the declared 2.6
    shown: list[str] = []
    result = make_tester(project, engine, tmp_path, shown, cases=CASE).run(built)
    assert not result.passed
    assert [c.name for c in result.failed_checks] == ["torch version"]
    assert result.failed_checks[0].detail == "torch is 9.9.0, expected 2.6"
    assert "  FAIL  torch version: torch is 9.9.0, expected 2.6" in shown
    assert [c.status for c in result.conv] == ["ok"]  # the conv check still ran
    assert engine.containers == {}


def test_a_failing_conv_case_fails_the_conv_check(project, fake, tmp_path) -> None:
    engine, image, built = fake
    image.conv_status = "wrong-result"
    result = make_tester(project, engine, tmp_path, [], cases=CASE).run(built)
    assert not result.passed
    assert [c.name for c in result.failed_checks] == ["conv check"]
    assert [c.status for c in result.conv] == ["wrong-result"]


def test_an_unscripted_suite_command_is_a_failing_check(project, fake, tmp_path) -> None:
    """The control for the passing run: the suite's checks pass only on the image's
    answers (an image without the entrypoint fails "entrypoint runs command")."""
    engine, image, built = fake
    shell = image.shell

    def no_entrypoint(words: list[str]) -> tuple[int, bytes, bytes]:
        if words[:1] == [ENTRYPOINT]:
            return 127, b"", b"sh: 1: imagefactory-entrypoint: not found"
        return shell(words)

    image.shell = no_entrypoint  # type: ignore[method-assign]
    result = make_tester(project, engine, tmp_path, [], cases=CASE).run(built)
    assert [c.name for c in result.failed_checks] == ["entrypoint runs command"]
    assert "rc 127" in result.failed_checks[0].detail
    assert "imagefactory-entrypoint: not found" in result.failed_checks[0].detail


def test_the_container_is_removed_when_the_run_fails(project, fake, tmp_path,
                                                     monkeypatch) -> None:
    engine, _, built = fake

    def lost(*args: object, **kwargs: object) -> None:
        raise EngineError("copy /tmp/imagefactory-convcheck.json out", "connection reset")

    # The conv check's report cannot be copied out: the error ends the check, not the run.
    monkeypatch.setattr(engine, "read_file", lost)
    result = make_tester(project, engine, tmp_path, [], cases=CASE).run(built)
    assert [c.name for c in result.failed_checks] == ["conv check"]
    assert result.failed_checks[0].detail == (
        "could not run: copy /tmp/imagefactory-convcheck.json out: connection reset")
    assert [c for c in engine.calls if c.startswith(("start", "remove container"))] == [
        f"start {result.checks[0].detail}", f"remove container {result.checks[0].detail}"]
    assert engine.containers == {}

    # An error the run does not turn into a check (the image went away mid-run) ends the
    # run, and the container still goes.
    real = engine.inspect_image
    monkeypatch.setattr(engine, "inspect_image",
                        lambda ref: None if engine.containers else real(ref))
    with pytest.raises(JobError, match="vanished from the engine during its test"):
        make_tester(project, engine, tmp_path, [], cases=CASE).run(built)
    assert engine.containers == {}
    assert any(call.startswith("remove container") for call in engine.calls)


def test_an_interrupted_suite_removes_the_container(project, fake, tmp_path) -> None:
    engine, image, built = fake
    shell = image.shell

    def interrupted(words: list[str]) -> tuple[int, bytes, bytes]:
        if words[:1] == [ENTRYPOINT]:
            raise KeyboardInterrupt  # Ctrl-C while the suite runs in this process
        return shell(words)

    image.shell = interrupted  # type: ignore[method-assign]
    shown: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        make_tester(project, engine, tmp_path, shown, cases=CASE).run(built)
    assert engine.containers == {}
    assert not any(line.startswith("  suite:") for line in shown)
    assert not (tmp_path / "res" / "manifests").exists()


def test_a_container_that_does_not_start_is_a_failing_check(project, fake, tmp_path,
                                                            monkeypatch) -> None:
    engine, image, built = fake

    def refused(container: str) -> None:
        raise EngineError("start container", "no such device /dev/kfd")

    monkeypatch.setattr(engine, "start_container", refused)
    shown: list[str] = []
    result = make_tester(project, engine, tmp_path, shown).run(built)
    assert not result.passed
    assert [(c.name, c.passed, c.detail) for c in result.checks] == [
        ("container starts", False, "no such device /dev/kfd")]
    assert "  manifest: none (the container did not start)" in shown
    assert image.commands == []
    assert engine.containers == {}


def test_output_from_the_container_is_escaped(project, fake, tmp_path) -> None:
    """What the image prints reaches the terminal escaped and redacted: the conv check's
    streamed output, and a failing check's detail made of the image's stderr."""
    engine, image, built = fake
    image.conv_output = (b"\x1b]0;owned\x07 \x1b[2J \xe2\x80\xae x "
                         b"https://bob:pa/ss w0rd@ghcr.io/x\nlast \x1b[31m")
    image.probe_fails = b"Traceback: \x1b[2J\xe2\x80\xae https://bob:s3cret@ghcr.io/y"
    shown: list[str] = []
    result = make_tester(project, engine, tmp_path, shown, cases=CASE).run(built)
    text = "\n".join(shown)
    assert "  | \\x1b]0;owned\\x07 \\x1b[2J \\u202e x https://***@ghcr.io/x" in text
    assert "  | last \\x1b[31m" in text
    probe_failed = [c for c in result.failed_checks if "python3 in the image failed" in c.detail]
    assert probe_failed, result.failed_checks
    assert "FAIL  runs as non root: python3 in the image failed (rc 1): Traceback: " \
           "\\x1b[2J\\u202e https://***@ghcr.io/y" in text
    for raw in ("\x1b", "\x07", "\u202e", "pa/ss", "w0rd", "s3cret"):
        assert raw not in text, repr(raw)


def test_the_suite_runs_inside_a_pytest_run_without_its_options(project, fake, tmp_path,
                                                                monkeypatch) -> None:
    """The suite's own pytest ignores the options and plugins of the pytest run around it
    (this one) and leaves them as they were."""
    engine, _, built = fake
    monkeypatch.setenv("PYTEST_ADDOPTS", "--this-option-does-not-exist")
    monkeypatch.setenv("PYTEST_PLUGINS", "no_such_plugin_module")
    before = os.environ.get("PYTEST_CURRENT_TEST")
    result = make_tester(project, engine, tmp_path, [], cases=CASE).run(built)
    assert result.passed, result.failed_checks
    assert os.environ["PYTEST_ADDOPTS"] == "--this-option-does-not-exist"
    assert os.environ["PYTEST_PLUGINS"] == "no_such_plugin_module"
    assert os.environ.get("PYTEST_CURRENT_TEST") == before


def test_a_rocm_run_mounts_its_miopen_cache_volume(project, tmp_path, monkeypatch) -> None:
    """The cache volume is made before the container, mounted in it with MIOpen's paths
    pointing there, kept after the run, and named in the result."""
    from imagefactory.verify.tester import MIOPEN_CACHE_DIR, MIOPEN_CACHE_ENV

    variant = next(v for v in project.matrix.variants if v.rocm and v.gfx_targets)
    engine = FakeEngine()
    image_id = "sha256:" + "d" * 64
    engine.images[image_id] = ImageInfo(image_id, ("x:y",), {VARIANT_LABEL: variant.name},
                                        entrypoint=(ENTRYPOINT,))
    engine.exec_answer = ScriptedImage(engine, variant.runtime_env(None))
    specs = []
    create = engine.create_container

    def recording(spec):  # type: ignore[no-untyped-def]
        specs.append(spec)
        return create(spec)

    monkeypatch.setattr(engine, "create_container", recording)
    built = BuiltImage(variant, image_id, "x:y", None)
    result = make_tester(project, engine, tmp_path, [], cases=CASE).run(built)
    name = f"imagefactory-miopen-{variant.name}-{'d' * 12}-nogpu"
    assert result.miopen_cache == name and name in engine.volumes
    assert engine.calls.index(f"create volume {name}") < engine.calls.index(
        f"create {image_id}")
    [spec] = specs
    assert [(m.source, m.target) for m in spec.mounts] == [(name, MIOPEN_CACHE_DIR)]
    assert MIOPEN_CACHE_ENV.items() <= dict(spec.environment).items()
    assert engine.containers == {}


def test_the_suite_by_hand_passes_its_options_and_shows_pytest(project, fake, tmp_path,
                                                               capfd) -> None:
    engine, _, built = fake
    result = make_tester(project, engine, tmp_path, [], cases=CASE,
                         suite_args=("-v", "-k", "labels or entrypoint")).run(built)
    suite = [c.name for c in result.checks if c.name not in ("container starts", "conv check")
             and not c.name.startswith(("gpu code", "manifest"))]
    assert suite and all("label" in n or "entrypoint" in n for n in suite), suite
    shown = capfd.readouterr().out
    assert "PASSED" in shown and "test_labels" in shown  # pytest's own -v lines, shown


@pytest.mark.parametrize(("text", "argv"), [
    ("-x --pdb -k 'env and not torch' --tb=short -kfoo -v",
     ("-x", "--pdb", "-k", "env and not torch", "--tb", "short", "-k", "foo", "-v")),
    ("--maxfail 2 -rA", ("--maxfail", "2", "-rA")),
])
def test_suite_args_pass_the_allowed_options(text: str, argv: tuple[str, ...]) -> None:
    assert plugin.suite_args(text) == argv


@pytest.mark.parametrize(("text", "why"), [
    ("--rootdir /", "'--rootdir' is not an option"), ("-p no:x", "'-p' is not an option"),
    ("-c other.ini", "'-c' is not an option"), ("--tb", "--tb needs a value"),
    ("-k -x", "-k '-x' is not a valid value"), ("--tb=fancy", "--tb 'fancy' is not a valid"),
    ("'open", "No closing quotation"), ("-k $(id)", "-k '$(id)' is not a valid value"),
])
def test_suite_args_refuse_the_rest_in_one_line(text: str, why: str) -> None:
    with pytest.raises(UsageError) as info:
        plugin.suite_args(text)
    assert why in str(info.value) and "\n" not in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_suite_args_take_any_text_without_a_traceback(text: str) -> None:
    try:
        argv = plugin.suite_args(text)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    allowed = plugin._FLAGS | set(plugin._VALUED)
    i = 0
    while i < len(argv):  # every option allowed, every value after its option checked
        assert argv[i] in allowed
        i += 2 if argv[i] in plugin._VALUED else 1
