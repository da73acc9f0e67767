"""imagefactory push: the tag scheme, the test gate, retries, and pushes to real registries.

Integration tests run Debian's docker-registry (tests/registry_fixture.py), one instance
open and one with htpasswd auth, and push the real `cpu` image after the real
`imagefactory test cpu --quick` passed it. The cpu image is tagged under a repository name
of this module's own (a copy of variants.yaml), so parallel sessions that rebuild
`imagefactory:cpu` cannot swap the image under these tests.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from registry_fixture import Registry, free_port  # tests/ is on sys.path (rootdir conftest)
from suite_session import unique

from imagefactory.commands._render import collect
from imagefactory.engine.images import BuiltImage
from imagefactory.errors import JobError, UsageError
from imagefactory.publish import credentials
from imagefactory.publish.publisher import (
    PushError,
    classify,
    gate,
    publish_tags,
    with_retries,
)
from imagefactory.publish.registry import Credentials, RegistryError, Target, manifest_digest
from imagefactory.safety import redact
from imagefactory.verify.results import Check, ConvCase, TestResult

REPO = Path(__file__).resolve().parents[2]
HASH = "0123456789abcdef" * 4
USER = "pusher"
PASSWORD = "pw-" + secrets.token_hex(16)
WRONG_PASSWORD = "wrong-" + secrets.token_hex(16)
SECRETS = (PASSWORD, WRONG_PASSWORD)


# --- unit: tags, addresses, classification, retries, credentials, the gate --------------

def test_tags_follow_the_scheme(project) -> None:
    v = project.matrix.get("rocm62-patched")
    assert publish_tags(v, HASH) == (
        "rocm62-patched", "rocm62-patched-0123456789ab",
        "rocm6.2.4-torch2.5.1-gfx1010-rocm62-patched")
    # torch as the tested image reports it; no part said twice
    assert publish_tags(project.matrix.get("cpu"), HASH, torch="1.13.0a0+gitunknown")[2] == (
        "torch1.13.0a0-gitunknown-cpu")
    assert publish_tags(v, HASH, torch="2.5.1+rocm6.2")[2] == (
        "rocm6.2.4-torch2.5.1-rocm6.2-gfx1010-rocm62-patched")
    cpu = project.matrix.get("cpu")
    assert publish_tags(cpu, HASH)[2] == "torch2.6.0-cpu"  # the variant's name once
    assert publish_tags(cpu, HASH, torch="1.13.0a0")[2] == "torch1.13.0a0-cpu"
    assert publish_tags(v, HASH, untested=True)[-1] == "rocm62-patched-untested"
    target = Target.parse("ghcr.io/Owner".lower())
    assert target.repository(project.matrix.repository) == "ghcr.io/owner/imagefactory"


def test_descriptive_tag_says_rocm_as_the_image_reports_it(project) -> None:
    v = project.matrix.get("debian-rocm64")
    assert publish_tags(v, HASH)[2] == "rocm6.4.3-torch2.9.1-gfx1010-debian-rocm64"
    assert publish_tags(v, HASH, torch="2.9.1a0", rocm="6.4.4")[2] == (
        "rocm6.4.4-torch2.9.1a0-gfx1010-debian-rocm64")
    # a nightly wheel's release stays readable; a CPU variant has no ROCm part at all
    therock = project.matrix.get("therock-gfx1010")
    assert publish_tags(therock, HASH, rocm="7.15.0a20251010")[2].startswith(
        "rocm7.15.0a20251010-torch2.10.0")
    assert publish_tags(project.matrix.get("cpu"), HASH, rocm="6.2.4")[2] == "torch2.6.0-cpu"


def test_plan_tags_with_the_tested_versions(project, tmp_path: Path) -> None:
    from fake_engine import FakeEngine

    from imagefactory.identity import HASH_LABEL, local_tag
    from imagefactory.publish.publisher import plan

    v = project.matrix.get("debian-rocm64")
    engine = FakeEngine()
    image = engine.add_image(local_tag(project.matrix, v), {HASH_LABEL: HASH})
    TestResult(v.name, image.id, True, (Check("torch imports", True),),
               (ConvCase("conv2d-k3", "ok"),), None, None, torch="2.9.1", rocm="6.4.4",
               inputs_hash=HASH).save(tmp_path)
    planned = plan(engine, project.matrix, v, Target.parse("ghcr.io/owner"), tmp_path, False,
                   rendered_hash=HASH)
    assert planned.tags[2] == "rocm6.4.4-torch2.9.1-gfx1010-debian-rocm64"
    # no result (an emergency push): the declared versions
    planned = plan(engine, project.matrix, v, Target.parse("ghcr.io/owner"), tmp_path / "none",
                   True, rendered_hash=HASH)
    assert planned.tags[2] == "rocm6.4.3-torch2.9.1-gfx1010-debian-rocm64"


def test_tags_stay_valid_with_local_versions(project) -> None:
    v = project.matrix.get("rocm52-torch113")
    odd = replace(v, torch=replace(v.torch, version="1.13.1+rocm5.2"))
    assert publish_tags(odd, HASH)[2] == "rocm5.2.3-torch1.13.1-rocm5.2-gfx1010-rocm52-torch113"


@pytest.mark.parametrize(("text", "repo", "api"), [
    ("ghcr.io/owner", "ghcr.io/owner/imagefactory", "https://ghcr.io"),
    ("https://ghcr.io/org/team/", "ghcr.io/org/team/imagefactory", "https://ghcr.io"),
    ("docker.io/user", "docker.io/user/imagefactory", "https://registry-1.docker.io"),
    ("index.docker.io/user", "docker.io/user/imagefactory", "https://registry-1.docker.io"),
    ("127.0.0.1:5000/ns", "127.0.0.1:5000/ns/imagefactory", "https://127.0.0.1:5000"),
    ("localhost:5000", "localhost:5000/imagefactory", "https://localhost:5000"),
])
def test_target_parse(text: str, repo: str, api: str) -> None:
    target = Target.parse(text)
    assert target.repository("imagefactory") == repo
    assert target.api_base(insecure=False) == api


def test_target_needs_a_registry_host() -> None:
    for bad in ("owner", "owner/imagefactory", "", "ghcr.io/Bad_Name!"):
        with pytest.raises(UsageError, match="--registry"):
            Target.parse(bad)
    assert Target.parse("127.0.0.1:5000/ns").is_loopback
    assert not Target.parse("ghcr.io/x").is_loopback


@pytest.mark.parametrize(("message", "auth", "transient"), [
    ("unauthorized: authentication required", True, False),
    ("no basic auth credentials", True, False),
    ("denied: requested access to the resource is denied", True, False),
    ('Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
     False, True),
    ("read tcp 10.0.0.2:4431->1.2.3.4:443: read: connection reset by peer", False, True),
    ("received unexpected HTTP status: 503 Service Unavailable", False, True),
    ("unknown blob", False, False),
    ("sha256:ab401cd layer does not exist", False, False),
])
def test_classify(message: str, auth: bool, transient: bool) -> None:
    err = classify(message)
    assert (err.auth, err.transient) == (auth, transient)


def test_retries_back_off_then_succeed() -> None:
    calls, waits = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise PushError("connection refused", transient=True)
        return "ok"

    assert with_retries(flaky, retries=3, base_delay=2, sleep=waits.append) == "ok"
    assert waits == [2, 4]


def test_retries_are_bounded() -> None:
    waits: list[float] = []

    def down() -> None:
        raise PushError("503 Service Unavailable", transient=True)

    with pytest.raises(PushError, match=r"gave up after 4 attempts") as info:
        with_retries(down, retries=3, base_delay=1, max_delay=3, sleep=waits.append)
    assert waits == [1, 2, 3]
    assert info.value.transient


def test_auth_and_permanent_errors_are_not_retried() -> None:
    for exc in (PushError("unauthorized", auth=True), PushError("manifest invalid"),
                RegistryError("has no such manifest")):
        calls: list[int] = []

        def fail(exc: Exception = exc, calls: list[int] = calls) -> None:
            calls.append(1)
            raise exc

        with pytest.raises(type(exc)):
            with_retries(fail, retries=5, sleep=lambda _s: pytest.fail("slept"))
        assert calls == [1]


def test_credentials_sources() -> None:
    target = Target.parse("ghcr.io/owner")
    creds = credentials.resolve(target, "owner", True, io.StringIO("s3cret\n"), {})
    assert creds == Credentials("owner", "s3cret", "--password-stdin")
    assert "s3cret" not in repr(creds)
    env = {credentials.ENV_USER: "bot", credentials.ENV_PASSWORD: "tok"}
    assert credentials.resolve(target, None, False, io.StringIO(), env).username == "bot"
    with pytest.raises(UsageError, match="needs --username"):
        credentials.resolve(target, None, True, io.StringIO("x\n"), {})
    with pytest.raises(UsageError, match="needs a password"):
        credentials.resolve(target, "owner", False, io.StringIO(), {})
    with pytest.raises(UsageError, match="both"):
        credentials.resolve(target, None, False, io.StringIO(), {credentials.ENV_USER: "b"})
    assert redact("user:s3cret@x", ["s3cret"]) == "user:***@x"


def _result(image_id: str, passed: bool = True) -> TestResult:
    checks = (Check("torch imports", passed),)
    conv = (ConvCase("conv2d-k3", "ok" if passed else "aperture-violation"),)
    return TestResult("cpu", image_id, passed, checks, conv, None, None, inputs_hash=HASH)


def test_gate(project, tmp_path: Path) -> None:
    built = BuiltImage(project.matrix.get("cpu"), "sha256:" + "a" * 64, "x:cpu", HASH)
    with pytest.raises(JobError, match=r"no test result.*run `imagefactory test cpu`"):
        gate(built, tmp_path, skip_tests=False, rendered_hash=HASH)
    assert gate(built, tmp_path, skip_tests=True, rendered_hash=HASH) is None
    _result("sha256:" + "b" * 64).save(tmp_path)
    with pytest.raises(JobError, match=r"for image bbbbbbbbbbbb, not .*aaaaaaaaaaaa.*"
                                       r"`imagefactory test cpu`"):
        gate(built, tmp_path, skip_tests=False, rendered_hash=HASH)
    _result(built.image_id, passed=False).save(tmp_path)
    with pytest.raises(JobError, match=r"failed its tests \(torch imports, conv conv2d-k3: "
                                       r"aperture-violation\).*`imagefactory test cpu`"):
        gate(built, tmp_path, skip_tests=False, rendered_hash=HASH)
    _result(built.image_id).save(tmp_path)
    assert gate(built, tmp_path, skip_tests=False, rendered_hash=HASH).passed


class _TokenRegistry(BaseHTTPRequestHandler):
    """A registry that wants a Bearer token from its realm (as GHCR and Docker Hub do)."""

    digest = "sha256:" + "d" * 64

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        if self.path.startswith("/token"):
            expected = "Basic " + base64.b64encode(b"owner:tok").decode()
            ok = self.headers.get("Authorization") == expected and "scope=repository" in self.path
            self._send(200 if ok else 401, json.dumps({"token": "T1"}).encode() if ok else b"")
        elif self.headers.get("Authorization") == "Bearer T1":
            assert "manifest.v2+json" in self.headers["Accept"]
            self._send(200, b"{}", {"Docker-Content-Digest": self.digest})
        else:
            self._send(401, b"", {"WWW-Authenticate": f'Bearer realm="http://127.0.0.1:{port}'
                                  f'/token",service="test",scope="repository:o/i:pull"'})

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_manifest_digest_with_token_auth() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenRegistry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        creds = Credentials("owner", "tok")
        assert manifest_digest(base, "o/i", "cpu", creds) == _TokenRegistry.digest
        with pytest.raises(RegistryError, match="refused the credentials"):
            manifest_digest(base, "o/i", "cpu", Credentials("owner", "bad"))
    finally:
        server.shutdown()
        server.server_close()


# --- integration: real engine, real registries -------------------------------------------

TRANSCRIPT: list[str] = []  # everything the tool printed here, for the secrets grep


@pytest.fixture(scope="module")
def setup(tmp_path_factory, cpu_image: str, docker_client) -> Iterator[dict]:
    """A variants.yaml of this module's own (repository iftest-<session>-pub-<random>) with
    the cpu image tagged into it, and the real `imagefactory test cpu --quick` result for it."""
    root = tmp_path_factory.mktemp("publish")
    name = unique("pub")
    config = root / "variants.yaml"
    text = (REPO / "variants.yaml").read_text()
    config.write_text(text.replace("\nrepository: imagefactory\n", f"\nrepository: {name}\n"))
    # Built under this config, not the shipped image retagged: the gate refuses an image
    # whose inputs (its labels name the repository) differ from what the config renders now.
    # From the session's cpu image's cache only the LABEL step is new.
    proc = subprocess.run([sys.executable, "-m", "imagefactory", "--config", str(config),
                           "build", "cpu"], capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    image = docker_client.images.get(f"{name}:cpu")
    state = {"root": root, "config": config, "name": name, "image_id": image.id,
             "results": root / "results", "registries": []}
    yield state
    try:
        if TRANSCRIPT:
            assert_secrets_appear_nowhere(state, docker_client)
    finally:
        # Only what this module made: its own tag and the registry-named tags pushes left.
        hosts = tuple(f"{r.host}/" for r in state["registries"])
        for img in docker_client.images.list():
            for ref in img.tags:
                if ref == f"{name}:cpu" or ref.startswith(hosts):
                    docker_client.api.remove_image(ref, noprune=True)


def cli(setup: dict, *args: str, stdin: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "imagefactory", "--config", str(setup["config"]), *args],
        input=stdin, capture_output=True, text=True, timeout=540,
        env={**os.environ, **(env or {})})
    TRANSCRIPT.append(proc.stdout + proc.stderr)
    return proc


def errors(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("imagefactory: error")]


@pytest.fixture(scope="module")
def tested(setup: dict) -> Path:
    proc = cli(setup, "test", "cpu", "--quick", "--results", str(setup["results"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = TestResult.load(setup["results"], "cpu", "quick")
    assert result is not None and result.passed and result.image_id == setup["image_id"]
    assert result.scope == "quick" and TestResult.load(setup["results"], "cpu") is None
    return setup["results"]


@pytest.mark.docker
def test_push_needs_a_full_run_unless_told(setup: dict, tested: Path,
                                           open_registry: Registry) -> None:
    """A quick run is kept beside the full result, and alone it does not publish."""
    proc = cli(setup, "push", "cpu", "--registry", f"{open_registry.host}/quickonly",
               "--results", str(tested))
    assert proc.returncode == 1
    assert errors(proc) == [
        f"imagefactory: error: cpu: not publishing: image "
        f"{setup['image_id'].removeprefix('sha256:')[:12]} has only a quick test result; run "
        "the full check first, or push with --allow-quick [gate rule result-exists]; run "
        "`imagefactory test cpu` after fixing that"]
    assert open_registry.repositories() == []


def _registry(setup: dict, tmp_path_factory, label: str,
              users: dict[str, str] | None = None) -> Registry:
    reg = Registry(tmp_path_factory.mktemp(label), users).start()
    setup["registries"].append(reg)
    return reg


@pytest.fixture(scope="module")
def open_registry(setup: dict, tmp_path_factory) -> Iterator[Registry]:
    reg = _registry(setup, tmp_path_factory, "registry-open")
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def auth_registry(setup: dict, tmp_path_factory) -> Iterator[Registry]:
    reg = _registry(setup, tmp_path_factory, "registry-auth", {USER: PASSWORD})
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def first_push(setup: dict, tested: Path, open_registry: Registry) -> dict:
    proc = cli(setup, "push", "cpu", "--allow-quick", "--registry", f"{open_registry.host}/it",
               "--results", str(tested))
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tested / "cpu.publish.json").read_text())
    return {"proc": proc, "record": record, "blobs": open_registry.blobs()}


@pytest.mark.docker
@pytest.mark.slow
def test_push_tested_image_and_pull_it_back(setup: dict, first_push: dict,
                                            open_registry: Registry, docker_client) -> None:
    record, proc = first_push["record"], first_push["proc"]
    repo = f"{open_registry.host}/it/{setup['name']}"
    # The descriptive tag says torch as the tested image reported it (Debian's 2.6.0
    # package reports 2.6.0+debian), and "cpu" once.
    assert record["torch_declared"] == "2.6.0" and record["torch_reported"] == "2.6.0+debian"
    # trixie's torch brings Debian's HIP runtime (libamdhip64-5 via libucx0): reported, and a
    # CPU variant's tags still have no ROCm part
    assert record["rocm_declared"] is None and record["rocm_reported"] == "5.7.1"
    tags = ["cpu", f"cpu-{record['inputs_hash'][:12]}", "torch2.6.0-debian-cpu"]
    digest = record["digest"]
    assert proc.stdout.splitlines() == [f"{repo}:{t} {repo}@{digest}" for t in tags]
    assert record["tags"] == tags and record["image_id"] == setup["image_id"]
    assert record["tests_skipped"] is False and record["test"]["passed"] is True
    assert record["test"]["image_id"] == setup["image_id"] and record["pushed_at"]
    assert record["layers"]["cpu"]["uploaded"] > 0
    assert open_registry.repositories() == [f"it/{setup['name']}"]
    # The registry itself names that digest for every tag (checked again here, by hand).
    for tag in tags:
        served = manifest_digest(f"http://{open_registry.host}", f"it/{setup['name']}",
                                 tag, None)
        assert served == digest
    # Drop every local reference into the registry's repository, then pull by digest.
    for kind in ("RepoTags", "RepoDigests"):  # a digest ref may outlive its repo's tags
        for ref in docker_client.images.get(setup["image_id"]).attrs.get(kind) or []:
            if ref.startswith(repo + ":") or ref.startswith(repo + "@"):
                docker_client.api.remove_image(ref, noprune=True)
    attrs = docker_client.images.get(setup["image_id"]).attrs
    assert not [r for r in (attrs.get("RepoTags") or []) + (attrs.get("RepoDigests") or [])
                if r.startswith(repo)]
    pulled = docker_client.images.pull(f"{repo}@{digest}")
    assert pulled.id == setup["image_id"]


@pytest.mark.docker
@pytest.mark.slow
def test_repush_uploads_no_layer(setup: dict, first_push: dict, tested: Path,
                                 open_registry: Registry) -> None:
    start = time.monotonic()
    proc = cli(setup, "push", "cpu", "--allow-quick", "--registry", f"{open_registry.host}/it",
               "--results", str(tested))
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tested / "cpu.publish.json").read_text())
    assert record["digest"] == first_push["record"]["digest"]
    assert all(layers["uploaded"] == 0 and layers["reused"] > 0
               for layers in record["layers"].values())
    assert "(0 layer(s) uploaded" in proc.stderr
    assert open_registry.blobs() == first_push["blobs"]  # the registry stored nothing new
    assert time.monotonic() - start < 60


@pytest.mark.docker
@pytest.mark.parametrize("case", ["no-result", "other-image", "failed", "passed-string",
                                  "passed-but-failed"])
def test_untested_image_is_refused(setup: dict, open_registry: Registry, case: str) -> None:
    results = setup["root"] / f"results-{case}"
    results.mkdir()
    if case == "other-image":
        _result("sha256:" + "e" * 64).save(results)
    elif case == "failed":
        _result(setup["image_id"], passed=False).save(results)
    elif case in ("passed-string", "passed-but-failed"):  # issue 12's severe finding 1
        data = json.loads(_result(setup["image_id"]).to_json())
        if case == "passed-string":
            data["passed"] = "false"
        else:
            data["conv"].append({"case": "conv2d-k7", "status": "aperture-violation"})
        (results / "cpu.json").write_text(json.dumps(data))
    proc = cli(setup, "push", "cpu", "--allow-quick", "--registry", f"{open_registry.host}/{case}",
               "--results", str(results))
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert len(errors(proc)) == 1 and proc.stderr.strip().splitlines()[-1] == errors(proc)[0]
    assert "run `imagefactory test cpu`" in errors(proc)[0]
    assert not [r for r in open_registry.repositories() if r.startswith(case)]
    assert not (results / "cpu.publish.json").exists()


@pytest.mark.docker
@pytest.mark.slow
def test_skip_tests_warns_and_marks_the_publish(setup: dict, first_push: dict,
                                                open_registry: Registry) -> None:
    results = setup["root"] / "results-emergency"
    _result(setup["image_id"], passed=False).save(results)
    proc = cli(setup, "push", "cpu", "--allow-quick", "--registry",
               f"{open_registry.host}/emergency",
               "--results", str(results), "--skip-tests")
    assert proc.returncode == 0, proc.stderr
    assert "warning: --skip-tests" in proc.stderr
    record = json.loads((results / "cpu.publish.json").read_text())
    assert record["tests_skipped"] is True and record["test"]["passed"] is False
    assert record["tags"][-1] == "cpu-untested" and "--skip-tests" in record["note"]
    served = manifest_digest(f"http://{open_registry.host}", f"emergency/{setup['name']}",
                             "cpu-untested", None)
    assert served == record["digest"] == first_push["record"]["digest"]


@pytest.mark.docker
def test_wrong_password_is_one_line_and_pushes_nothing(setup: dict, tested: Path,
                                                      auth_registry: Registry) -> None:
    blobs = auth_registry.blobs()
    proc = cli(setup, "push", "cpu", "--allow-quick", "--registry", f"{auth_registry.host}/wrongpw",
               "--results", str(tested), "--username", USER, "--password-stdin",
               stdin=WRONG_PASSWORD + "\n")
    assert proc.returncode == 1
    assert len(errors(proc)) == 1 and proc.stderr.strip().splitlines()[-1] == errors(proc)[0]
    assert "authentication failed" in errors(proc)[0] and USER in errors(proc)[0]
    assert proc.stderr.count("pushed ") == 0 and proc.stdout == ""
    assert not [r for r in auth_registry.repositories() if r.startswith("wrongpw")]
    assert auth_registry.blobs() == blobs


@pytest.mark.docker
@pytest.mark.slow
def test_push_with_login_from_environment(setup: dict, tested: Path,
                                          auth_registry: Registry) -> None:
    env = {credentials.ENV_USER: USER, credentials.ENV_PASSWORD: PASSWORD}
    proc = cli(setup, "push", "cpu", "--allow-quick", "--registry", f"{auth_registry.host}/authed",
               "--results", str(tested), env=env)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tested / "cpu.publish.json").read_text())
    assert auth_registry.repositories() == [f"authed/{setup['name']}"]
    with pytest.raises(RegistryError, match="needs credentials"):
        manifest_digest(f"http://{auth_registry.host}", f"authed/{setup['name']}", "cpu",
                        None)
    served = manifest_digest(f"http://{auth_registry.host}", f"authed/{setup['name']}",
                             "cpu", Credentials(USER, PASSWORD))
    assert served == record["digest"]


@pytest.mark.docker
def test_registry_not_running(setup: dict, tested: Path) -> None:
    start = time.monotonic()
    proc = cli(setup, "push", "cpu", "--allow-quick", "--registry",
               f"127.0.0.1:{free_port()}/gone", "--results", str(tested), "--retries", "2")
    elapsed = time.monotonic() - start
    assert proc.returncode == 1
    assert "retry 1/2 in 2s" in proc.stderr and "retry 2/2 in 4s" in proc.stderr
    line = errors(proc)
    assert len(line) == 1 and "connection refused" in line[0]
    assert "gave up after 3 attempts" in line[0]
    assert elapsed < 60


@pytest.mark.docker
@pytest.mark.slow
def test_registry_stopped_mid_push(setup: dict, tested: Path, tmp_path_factory,
                                   engine) -> None:
    from imagefactory.project import Project
    from imagefactory.publish.publisher import Publisher, plan

    reg = _registry(setup, tmp_path_factory, "registry-dies")
    target = Target.parse(f"{reg.host}/dies")
    matrix = Project.locate(setup["config"]).matrix
    from imagefactory.render.renderer import Renderer

    rendered = Renderer(Project.locate(setup["config"])).render(matrix.get("cpu")).inputs_hash
    p = plan(engine, matrix, matrix.get("cpu"), target, tested, skip_tests=False,
             allow_quick=True, rendered_hash=rendered)
    lines: list[str] = []

    def kill_on_first_layer(event) -> None:
        if event.status == "Pushing":
            reg.kill()

    publisher = Publisher(engine, target, None, setup["root"] / "results-dies",
                          retries=1, base_delay=1, emit=collect(lines.append),
                          on_chunk=kill_on_first_layer)
    start = time.monotonic()
    with pytest.raises(JobError) as info:
        publisher.publish(p)
    elapsed = time.monotonic() - start
    TRANSCRIPT.append("\n".join([*lines, str(info.value)]))
    message = str(info.value)
    assert "\n" not in message and "push failed" in message
    assert "connection refused" in message and "gave up after 2 attempts" in message
    assert any("the engine is retrying" in line for line in lines)
    assert any("retry 1/1" in line for line in lines)
    assert not (setup["root"] / "results-dies" / "cpu.publish.json").exists()
    assert elapsed < 240  # the engine's own upload retries take about a minute


def assert_secrets_appear_nowhere(setup: dict, docker_client) -> None:
    """Greps everything this module's pushes printed, wrote and left behind. Called when the
    module's `setup` is torn down, i.e. after whichever of its tests ran, in any order."""
    haystacks = {f"output {i}": text for i, text in enumerate(TRANSCRIPT)}
    for path in setup["root"].rglob("*"):
        if path.is_file() and (path.suffix in (".json", ".log") or path.name == "config.yml"):
            haystacks[str(path)] = path.read_text(errors="replace")
    for reg in setup["registries"]:
        for path in (reg.log_path, reg.root / "config.yml", reg.root / "htpasswd"):
            if path.is_file():
                haystacks[str(path)] = path.read_text(errors="replace")
    image = docker_client.images.get(setup["image_id"])
    haystacks["image inspect"] = json.dumps(image.attrs)
    haystacks["image history"] = json.dumps(docker_client.api.history(setup["image_id"]))
    for log in (Path("/tmp/dockerd.log"), Path("/var/log/imagefactory-dockerd.log")):
        if log.is_file():
            haystacks[str(log)] = log.read_text(errors="replace")
    docker_config = Path.home() / ".docker" / "config.json"
    if docker_config.is_file():
        haystacks[str(docker_config)] = docker_config.read_text()
    needles = [s for pw in SECRETS for s in
               (pw, base64.b64encode(f"{USER}:{pw}".encode()).decode())]
    found = [(where, n[:6]) for where, text in haystacks.items() for n in needles if n in text]
    assert not found
    assert sum("registry.log" in where for where in haystacks) == len(setup["registries"])


@pytest.mark.docker
def test_failed_push_leaves_no_tags_and_marks_the_record_stale(setup: dict, tested: Path,
                                                               tmp_path: Path,
                                                               docker_client) -> None:
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(tested / "cpu.quick.json", results / "cpu.quick.json")
    previous = {"variant": "cpu", "digest": "sha256:" + "c" * 64, "tags": ["cpu"]}
    (results / "cpu.publish.json").write_text(json.dumps(previous))
    host = f"127.0.0.1:{free_port()}"
    proc = cli(setup, "push", "cpu", "--allow-quick", "--registry", f"{host}/gone",
               "--results", str(results), "--retries", "0")
    assert proc.returncode == 1, proc.stderr
    left = [t for img in docker_client.images.list() for t in img.tags if t.startswith(host)]
    assert left == []
    record = json.loads((results / "cpu.publish.json").read_text())
    assert record["stale"] is True and record["digest"] == previous["digest"]
    assert "failed" in record["stale_reason"] and record["stale_since"]
