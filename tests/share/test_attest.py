"""Signed result bundles, end to end: the real cpu image tested (`imagefactory test cpu
--quick`), pushed to Debian's docker-registry on loopback, its bundle attested with Debian's
cosign and a key pair made here, read back with `cosign verify-attestation`; a tampered
predicate, another key and unpublished digests are refused; the key's password shows
nowhere. The cpu image is the session's (conftest `cpu_image`: built once), tagged into a
repository of this module's own.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from needs import missing
from registry_fixture import Registry
from suite_session import unique

from imagefactory.share.bundle import PREDICATE_TYPE

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "cosign-pw-" + secrets.token_hex(12)
TRANSCRIPT: list[str] = []  # everything the tool and cosign printed here, for the grep
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _need_cosign() -> str:
    path = shutil.which("cosign")
    if path is None:
        missing("no cosign (scripts/setup-test-env.sh installs Debian's)")
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, cpu_image: str, docker_client
          ) -> Iterator[dict]:
    _need_cosign()
    root = tmp_path_factory.mktemp("attest")
    name = unique("att")
    config = root / "variants.yaml"
    config.write_text((REPO / "variants.yaml").read_text().replace(
        "\nrepository: imagefactory\n", f"\nrepository: {name}\n"))
    # Built under this config, not the session's image retagged: the publish gate refuses an
    # image whose inputs (its labels name the repository) differ from what the config renders.
    # From the session image's cache only the LABEL step is new.
    built = subprocess.run([sys.executable, "-m", "imagefactory", "--config", str(config),
                            "build", "cpu"], capture_output=True, text=True, timeout=540)
    assert built.returncode == 0, built.stdout + built.stderr
    image = docker_client.images.get(f"{name}:cpu")
    registry = Registry(root / "registry").start()
    state = {"root": root, "config": config, "name": name, "image_id": image.id,
             "results": root / "results", "registry": registry,
             "cache": root / "cache"}
    try:
        yield state
    finally:
        registry.stop()
        for img in docker_client.images.list():
            for ref in img.tags:
                if ref == f"{name}:cpu" or ref.startswith(f"{registry.host}/"):
                    docker_client.api.remove_image(ref, noprune=True)


def cli(setup: dict, *args: str, password: bool = True, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "XDG_CACHE_HOME": str(setup["cache"])}
    environ.pop("COSIGN_PASSWORD", None)
    if password:
        environ["COSIGN_PASSWORD"] = PASSWORD
    environ.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "imagefactory", "--config", str(setup["config"]), *args],
        capture_output=True, text=True, timeout=540, env=environ, cwd=setup["root"])
    TRANSCRIPT.append(proc.stdout + proc.stderr)
    return proc


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("imagefactory: ")]


@pytest.fixture(scope="module")
def published(setup: dict) -> dict:
    """The real quick test, the push, the bundle of the published digest, a key pair."""
    results = setup["results"]
    proc = cli(setup, "test", "cpu", "--quick", "--results", str(results))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # `test` wrote the bundle of the image as tested: by image id, nothing published yet.
    unpublished = setup["root"] / "unpublished.json"
    shutil.copy(results / "bundles" / "cpu.quick.json", unpublished)
    registry = setup["registry"]
    proc = cli(setup, "push", "cpu", "--allow-quick", "--registry", f"{registry.host}/att",
               "--results", str(results))
    assert proc.returncode == 0, proc.stderr
    record = json.loads((results / "cpu.publish.json").read_text())
    proc = cli(setup, "share", "cpu", "--results", str(results))
    assert proc.returncode == 0, proc.stderr
    bundle = results / "bundles" / "cpu.quick.json"
    keys = setup["root"] / "keys"
    keys.mkdir()
    gen = subprocess.run([_need_cosign(), "generate-key-pair"], cwd=keys, capture_output=True,
                         text=True, timeout=60, stdin=subprocess.DEVNULL,
                         env={**os.environ, "COSIGN_PASSWORD": PASSWORD})
    TRANSCRIPT.append(gen.stdout + gen.stderr)
    assert gen.returncode == 0, gen.stderr
    other = setup["root"] / "other-keys"
    other.mkdir()
    subprocess.run([_need_cosign(), "generate-key-pair"], cwd=other, capture_output=True,
                   timeout=60, check=True, env={**os.environ, "COSIGN_PASSWORD": "x"})
    return {"record": record, "bundle": bundle, "unpublished": unpublished,
            "key": keys / "cosign.key", "pub": keys / "cosign.pub",
            "other_pub": other / "cosign.pub",
            "ref": f"{record['repository']}@{record['digest']}"}


@pytest.fixture(scope="module")
def attested(setup: dict, published: dict) -> dict:
    proc = cli(setup, "share", str(published["bundle"]), "--attest", "--key",
               str(published["key"]))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == (
        f"attested: {published['bundle']} on {published['ref']} (signed with "
        f"{published['key']}; no transparency log entry)")
    return published


def _cosign_payloads(ref: str, pub: Path) -> list[dict]:
    """cosign's own reading, decoded here without imagefactory."""
    proc = subprocess.run([_need_cosign(), "verify-attestation", f"--key={pub}",
                           f"--type={PREDICATE_TYPE}", "--insecure-ignore-tlog=true", ref],
                          capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    TRANSCRIPT.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(base64.b64decode(json.loads(line)["payload"]))
            for line in proc.stdout.splitlines() if line.strip()]


def test_attested_predicate_reads_back_with_cosign(setup: dict, attested: dict) -> None:
    bundle = json.loads(attested["bundle"].read_text())
    record = attested["record"]
    assert bundle["subject"][0]["digest"]["sha256"] == record["digest"].removeprefix("sha256:")
    statements = _cosign_payloads(attested["ref"], attested["pub"])
    assert statements  # one per attest run; the first is this module's fixture's
    statement = statements[0]
    assert statement["predicateType"] == PREDICATE_TYPE
    assert statement["subject"] == [{"name": record["repository"],
                                     "digest": {"sha256": bundle["subject"][0]["digest"][
                                         "sha256"]}}]
    assert statement["predicate"] == bundle["predicate"]
    assert statement["predicate"]["imagefactory"]["image_id"] == setup["image_id"]
    # And imagefactory's own verify path says so.
    proc = cli(setup, "share", str(attested["bundle"]), "--verify", "--key",
               str(attested["pub"]), password=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (f"verified: {attested['bundle']}: the predicate attested on "
                           f"{attested['ref']} (signed by {attested['pub']}) is this "
                           f"bundle's ({len(statements)} result bundle(s) attested there)\n")
    # A VARIANT finds its bundle in --results.
    proc = cli(setup, "share", "cpu", "--results", str(setup["results"]), "--verify",
               "--key", str(attested["pub"]), password=False)
    assert proc.returncode == 0 and proc.stdout.startswith("verified: "), proc.stderr


def _tampered(path: Path, out: Path) -> str:
    """The bundle with its first conv case's status flipped; where that is."""
    data = json.loads(path.read_text())
    cases = data["predicate"]["imagefactory"]["cases"]
    assert cases, "the quick conv check ran no case"
    cases[0]["status"] = "aperture-violation" if cases[0]["status"] == "ok" else "ok"
    out.write_text(json.dumps(data, indent=2))
    return "predicate.imagefactory.cases[0].status"


def test_tampered_predicate_is_refused(setup: dict, attested: dict) -> None:
    bad = setup["root"] / "tampered.json"
    where = _tampered(attested["bundle"], bad)
    assert cli(setup, "share", "--check", str(bad)).returncode == 0  # still a valid bundle
    proc = cli(setup, "share", str(bad), "--verify", "--key", str(attested["pub"]))
    assert proc.returncode == 1 and proc.stdout == ""
    lines = error_lines(proc)
    assert len(lines) == 1 and proc.stderr.strip().splitlines()[-1] == lines[0]
    assert re.match(rf"imagefactory: error: {re.escape(str(bad))}: refused: none of the \d+ "
                    rf"attestation\(s\) on {re.escape(attested['ref'])} signed by ", lines[0])
    assert f"the closest differs at {where}: attested " in lines[0]


def test_another_key_is_refused(setup: dict, attested: dict) -> None:
    proc = cli(setup, "share", str(attested["bundle"]), "--verify", "--key",
               str(attested["other_pub"]))
    assert proc.returncode == 1 and proc.stdout == ""
    lines = error_lines(proc)
    assert len(lines) == 1 and "cosign: no matching attestations" in lines[0], proc.stderr


def _tags(setup: dict) -> list[str]:
    base = setup["registry"].storage / "docker/registry/v2/repositories"
    return sorted(p.name for p in base.glob(f"att/{setup['name']}/_manifests/tags/*"))


def test_unpublished_bundles_are_refused(setup: dict, published: dict) -> None:
    before = _tags(setup)
    # The bundle `imagefactory test` wrote: the local image id, before the push.
    proc = cli(setup, "share", str(published["unpublished"]), "--attest", "--key",
               str(published["key"]))
    assert proc.returncode == 1 and proc.stdout == ""
    lines = error_lines(proc)
    assert lines == [f"imagefactory: error: {published['unpublished']}: subject[0] is a local "
                     f"image id ({setup['image_id'][:19]}), not a published image digest: "
                     "push the image (`imagefactory push cpu`), then make its bundle again "
                     "(`imagefactory share cpu`)"]
    # A bundle naming a digest the registry never had (cosign alone would sign it).
    data = json.loads(published["bundle"].read_text())
    data["subject"][0]["digest"]["sha256"] = "e" * 64
    ghost = setup["root"] / "ghost.json"
    ghost.write_text(json.dumps(data))
    for action, key in (("--attest", published["key"]), ("--verify", published["pub"])):
        proc = cli(setup, "share", str(ghost), action, "--key", str(key))
        assert proc.returncode == 1 and proc.stdout == "", proc.stderr
        lines = error_lines(proc)
        assert len(lines) == 1 and lines[0].startswith(
            f"imagefactory: error: {ghost}: {published['record']['repository']}@sha256:"
            f"{'e' * 64} was never published: the registry at http://"), lines
        assert "has no such manifest" in lines[0]
    assert _tags(setup) == before  # no .att tag was pushed for either


def test_attest_needs_the_password_in_the_environment(setup: dict, published: dict) -> None:
    proc = cli(setup, "share", str(published["bundle"]), "--attest", "--key",
               str(published["key"]), password=False)
    assert proc.returncode == 2
    assert error_lines(proc) == [f"imagefactory: error: set COSIGN_PASSWORD to the password "
                                 f"of {published['key']} (it is read from the environment "
                                 "only; an unencrypted key takes an empty one)"]
    # A wrong one: cosign's reason in one line.
    proc = cli(setup, "--debug", "share", str(published["bundle"]), "--attest", "--key",
               str(published["key"]), env={"COSIGN_PASSWORD": PASSWORD[::-1]}, password=False)
    assert proc.returncode == 1
    assert error_lines(proc)[-1].startswith(
        f"imagefactory: error: cosign attest {published['ref']}: cosign: signing "), proc.stderr
    assert "decryption failed" in error_lines(proc)[-1]


# A bug planted after cosign signed: the crash report must not carry the password.
BUGGY = ("import sys\n"
         "import imagefactory.publish.attest as a\n"
         "real = a._run\n"
         "def run(*args, **kw):\n    real(*args, **kw)\n    raise RuntimeError('planted')\n"
         "a._run = run\n"
         "from imagefactory.cli import main\nmain(sys.argv[1:])\n")


def test_the_password_appears_nowhere(setup: dict, attested: dict) -> None:
    """Debug logs of a real attest and verify, a crash report after a real cosign run, and
    everything this module printed and left on disk (registry storage included)."""
    environ = {**os.environ, "XDG_CACHE_HOME": str(setup["cache"]),
               "COSIGN_PASSWORD": PASSWORD, "IMAGEFACTORY_DEBUG": "1"}
    for argv in (["--debug", "share", str(attested["bundle"]), "--attest", "--key",
                  str(attested["key"])],
                 ["--debug", "share", str(attested["bundle"]), "--verify", "--key",
                  str(attested["pub"])]):
        proc = cli(setup, *argv)
        assert proc.returncode == 0, proc.stderr
        assert "DEBUG: imagefactory.publish.attest: running " in proc.stderr
    crashed = subprocess.run(
        [sys.executable, "-c", BUGGY, "--config", str(setup["config"]), "share",
         str(attested["bundle"]), "--attest", "--key", str(attested["key"])],
        capture_output=True, text=True, timeout=300, env=environ, cwd=REPO)
    TRANSCRIPT.append(crashed.stdout + crashed.stderr)
    assert crashed.returncode == 1 and "internal error: RuntimeError: planted" in crashed.stderr
    reports = list((setup["cache"] / "imagefactory" / "crashes").glob("crash-*.txt"))
    assert reports and "attest.py" in reports[-1].read_text()
    haystacks = {f"output {i}": text.encode() for i, text in enumerate(TRANSCRIPT)}
    for path in setup["root"].rglob("*"):
        if path.is_file() and not path.is_symlink():
            haystacks[str(path)] = path.read_bytes()
    assert len(haystacks) > len(TRANSCRIPT) + 10
    needle = PASSWORD.encode()
    assert [where for where, data in haystacks.items() if needle in data] == []
