"""The attestation logic without a registry: what cosign prints read as strictly as a
submitted bundle (hostile lines give one line each), predicates compared as JSON values,
and the refusals that come before cosign or the registry is asked."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import fuzzing  # noqa: F401  (the hypothesis profile)
import pytest
from hypothesis import given
from hypothesis import strategies as st
from share_host import Host

from imagefactory.cli import main
from imagefactory.errors import JobError, UsageError
from imagefactory.publish import attest
from imagefactory.publish.registry import Target
from imagefactory.share import bundle as bundles
from imagefactory.share import reader
from imagefactory.share.run import make_for
from imagefactory.verify.results import TestResult

ROOT = Path(__file__).parent.parent.parent
RESULTS = ROOT / "tests" / "fixtures" / "results"
REPO_NAME = "127.0.0.1:5000/ns/imagefactory"
DIGEST = "sha256:" + "c" * 64
IMAGE = attest.Image(REPO_NAME, DIGEST, Target.parse(REPO_NAME))


def _bundle(host: Host, tmp_path: Path, published: bool = True) -> reader.Bundle:
    result = TestResult.load_path(RESULTS / "rocm62-patched.json")
    assert result is not None
    if published:
        record = {"variant": result.variant, "image_id": result.image_id,
                  "repository": REPO_NAME, "digest": DIGEST}
        (tmp_path / f"{result.variant}.publish.json").write_text(json.dumps(record))
    data = make_for(result, tmp_path, None, roots=host.roots, state=host.state)
    path = bundles.write(data, tmp_path / "bundle.json")
    return reader.load(path)


def _envelope(statement: Any) -> bytes:
    payload = base64.b64encode(json.dumps(statement).encode()).decode()
    return json.dumps({"payloadType": attest.DSSE_TYPE, "payload": payload,
                       "signatures": [{"keyid": "", "sig": "MEUC"}]}).encode()


def _cosigns(bundle: reader.Bundle) -> dict[str, Any]:
    """The Statement cosign 2.x signs for this bundle's predicate."""
    return {"_type": "https://in-toto.io/Statement/v0.1", "predicateType": bundles.PREDICATE_TYPE,
            "subject": [{"name": REPO_NAME, "digest": {"sha256": "c" * 64}}],
            "predicate": json.loads(json.dumps(bundle.data["predicate"]))}


def test_cosigns_statement_reads_back_as_the_bundle(host: Host, tmp_path: Path) -> None:
    bundle = _bundle(host, tmp_path)
    read = attest._statement(_envelope(_cosigns(bundle)), IMAGE, "attestation 1")
    assert read.data == bundle.data  # the subject rebuilt with the bundle's annotations
    # Another image's statement is not this image's attestation.
    other = _cosigns(bundle)
    other["subject"][0]["digest"]["sha256"] = "d" * 64
    with pytest.raises(JobError, match=re.escape(f"its subject is not {REPO_NAME}@")):
        attest._statement(_envelope(other), IMAGE, "attestation 1")
    # Another repository's neither.
    other = _cosigns(bundle)
    other["subject"][0]["name"] = "127.0.0.1:5000/elsewhere/imagefactory"
    with pytest.raises(JobError, match="its subject is not"):
        attest._statement(_envelope(other), IMAGE, "attestation 1")


def test_predicates_compare_as_json_values() -> None:
    assert attest.same({"a": [1, 2.0, "x"]}, {"a": [1.0, 2, "x"]})  # cosign's re-encoding
    assert not attest.same({"a": True}, {"a": 1})
    assert not attest.same({"a": None}, {"a": 0})
    assert attest.first_difference({"a": [1, {"b": "ok"}]}, {"a": [1, {"b": "no"}]}, "p") == (
        "p.a[1].b", "ok", "no")
    assert attest.first_difference({"a": [1]}, {"a": [1, 2]}, "p") == ("p.a length", 1, 2)
    assert attest.first_difference({"a": 1}, {"b": 1}, "p") == ("p.a", 1, "(absent)")


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**53, 2**53)
                    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=4), max_leaves=20)


@given(JSON)
def test_a_value_equals_its_json_round_trip(value: Any) -> None:
    assert attest.same(value, json.loads(json.dumps(value)))


@given(JSON, JSON)
def test_same_is_symmetric_and_says_where(a: Any, b: Any) -> None:
    assert attest.same(a, b) == attest.same(b, a)
    assert (attest.first_difference(a, b, "") is None) == attest.same(a, b)


@given(st.one_of(st.binary(max_size=200), JSON.map(lambda v: json.dumps(v).encode()),
                 JSON.map(_envelope),
                 st.text(max_size=50).map(lambda t: json.dumps(
                     {"payloadType": attest.DSSE_TYPE, "payload": t}).encode())))
def test_hostile_cosign_output_is_one_line(line: bytes) -> None:
    try:
        attest._statement(line, IMAGE, "attestation 1")
    except JobError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("attestation 1")
    else:
        raise AssertionError("accepted")


def test_hostile_predicates_in_a_good_envelope(host: Host, tmp_path: Path) -> None:
    bundle = _bundle(host, tmp_path)
    for change in ({"result": "PERFECT"}, {"imagefactory": None}, {"extra": 1},
                   {"passedTests": ["x" * 10_000]}):
        statement = _cosigns(bundle)
        statement["predicate"].update(change)
        with pytest.raises(JobError) as exc:
            attest._statement(_envelope(statement), IMAGE, "attestation 1")
        assert "\n" not in str(exc.value) and "not a result bundle" in str(exc.value)
    nested: Any = {}
    for _ in range(50):
        nested = {"a": nested}
    statement = _cosigns(bundle)
    statement["predicate"] = nested
    with pytest.raises(JobError, match="nested deeper than"):
        attest._statement(_envelope(statement), IMAGE, "attestation 1")
    dup = _envelope(_cosigns(bundle)).replace(b'"payloadType"', b'"payload": "", "payloadType"',
                                              1)
    with pytest.raises(JobError, match="duplicate key 'payload'"):
        attest._statement(dup, IMAGE, "attestation 1")


def test_unpublished_subjects_are_refused_before_cosign(host: Host, tmp_path: Path) -> None:
    bundle = _bundle(host, tmp_path, published=False)
    with pytest.raises(JobError) as exc:
        attest.published_image(bundle)
    assert str(exc.value) == (
        f"{bundle.source}: subject[0] is a local image id ({bundle.digest[:19]}), not a "
        "published image digest: push the image (`imagefactory push rocm62-patched`), then "
        "make its bundle again (`imagefactory share rocm62-patched`)")
    data = json.loads(json.dumps(_bundle(host, tmp_path).data))
    data["subject"][0]["name"] = "imagefactory"  # no registry host
    named = reader.from_text(json.dumps(data), "b.json")
    with pytest.raises(JobError, match=re.escape(
            "subject[0].name 'imagefactory' is not a repository in a registry")):
        attest.published_image(named)


def test_attest_refusals_before_any_registry(host: Host, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = _bundle(host, tmp_path)
    key = tmp_path / "cosign.key"
    key.write_text("not read")
    with pytest.raises(UsageError, match="set COSIGN_PASSWORD to the password of"):
        attest.attest(bundle, key, environ={})
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(JobError, match="cosign is not installed"):
        attest.attest(bundle, key, environ={"COSIGN_PASSWORD": ""})
    with pytest.raises(JobError, match="cosign is not installed"):
        attest.verify(bundle, key)


def _cli(args: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(args)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue() + err.getvalue()
    return 0, out.getvalue() + err.getvalue()


@pytest.mark.parametrize(("args", "message"), [
    (["--attest", "--verify", "--key", "K"], "give one of --check, --attest and --verify"),
    (["--check", "--attest", "--key", "K"], "give one of --check, --attest and --verify"),
    (["--key", "K"], "--key goes with --attest"),
    (["--attest"], "--key goes with --attest"),
    (["--verify"], "--key goes with --attest"),
])
def test_share_options_refused_in_one_line(tmp_path: Path, args: list[str],
                                           message: str) -> None:
    key = tmp_path / "cosign.key"
    key.write_text("x")
    argv = ["--config", str(ROOT / "variants.yaml"), "share", str(tmp_path / "b.json"),
            *[str(key) if a == "K" else a for a in args]]
    code, out = _cli(argv)
    assert code == 2 and out.strip().count("\n") == 0, out
    assert out.startswith(f"imagefactory: error: {message}"), out
    assert sorted(os.listdir(tmp_path)) == ["cosign.key"]
