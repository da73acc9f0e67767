"""The publish gate as a whitelist (#25): each rule in publish/gate.py RULES is broken one at a
time from a publishable result and must be the one that refuses it; generated results publish
exactly when an independent statement of the whitelist says they may."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagefactory.engine.images import BuiltImage
from imagefactory.errors import JobError
from imagefactory.identity import MAX_TAG, TagTooLong, publish_tags
from imagefactory.publish.gate import RULES
from imagefactory.publish.publisher import Plan, gate, shared_tags
from imagefactory.safety import json_loads
from imagefactory.verify.results import TestResult

IMAGE = "sha256:" + "a" * 64
HASH = "b" * 64
VARIANT = "therock-gfx1010"  # has profiles (rdna1-tuning...) and declared known failures


def publishable() -> dict[str, Any]:
    return {"schema": 1, "variant": VARIANT, "image_id": IMAGE, "passed": True,
            "checks": [{"name": "torch imports", "passed": True}],
            "conv": [{"case": "conv2d-k3", "status": "ok"},
                     {"case": "int8-mm-256-fwd", "status": "crash"}],  # declared known
            "host": None, "profile": None, "inputs_hash": HASH, "scope": "full",
            "torch": "2.7.1+rocm7.0.0", "rocm": "7.0.0"}


def _write(tmp_path: Path, data: Any, name: str = VARIANT) -> None:
    text = data if isinstance(data, str) else json.dumps(data)
    (tmp_path / f"{name}.json").write_text(text)


def _gate(project: Any, tmp_path: Path, *, image: str = IMAGE, label: str | None = HASH,
          rendered: str = HASH, allow_quick: bool = False) -> TestResult | None:
    built = BuiltImage(project.matrix.get(VARIANT), image, "x:t", label)
    return gate(built, tmp_path, skip_tests=False, allow_quick=allow_quick,
                rendered_hash=rendered)


def _rule(project: Any, tmp_path: Path, **kwargs: Any) -> str:
    with pytest.raises(JobError) as info:
        _gate(project, tmp_path, **kwargs)
    text = str(info.value)
    assert "\n" not in text and info.value.exit_code == 1
    return text.rsplit("[gate rule ", 1)[1].split("]", 1)[0]


def _without(key: str) -> Any:
    def change(d: dict[str, Any]) -> None:
        del d[key]
    return change


# rule -> how to break only it (a change to the result, or arguments to the gate)
BREAKS: dict[str, tuple[Any, dict[str, Any]]] = {
    "result-exists": ("delete", {}),
    "same-variant": (lambda d: d.update(variant="therock-gfx1012"), {}),
    "same-image": (lambda d: d.update(image_id="sha256:" + "c" * 64), {}),
    "built-from-current-matrix": (None, {"label": "d" * 64}),  # an image of older inputs
    "tested-same-inputs": (lambda d: d.update(inputs_hash="e" * 64), {}),
    "full-scope": (lambda d: d.update(scope="subset"), {}),
    "default-profile": (lambda d: d.update(profile="rdna1-tuning"), {}),
    "passed": (lambda d: d.update(passed=False), {}),
    "checks-passed": (lambda d: d["checks"].append({"name": "hip", "passed": False}), {}),
    "cases-present": (lambda d: d.update(conv=[]), {}),
    "cases-pass-or-declared": (lambda d: d["conv"].append(
        {"case": "conv2d-k7", "status": "hang", "verdict": "known"}), {}),
    "reported-versions": (lambda d: d.update(torch="2.5-evil"), {}),
}


def test_every_rule_has_a_break() -> None:
    assert [r.name for r in RULES] == list(BREAKS)


def test_the_publishable_result_publishes(project, tmp_path: Path) -> None:
    _write(tmp_path, publishable())
    assert _gate(project, tmp_path) is not None


@pytest.mark.parametrize("rule", list(BREAKS))
def test_each_rule_alone_refuses(project, tmp_path: Path, rule: str) -> None:
    change, kwargs = BREAKS[rule]
    data = publishable()
    if change != "delete":
        if change is not None:
            change(data)
        _write(tmp_path, data)
    assert _rule(project, tmp_path, **kwargs) == rule


def test_a_legacy_quick_result_without_scope_is_not_full(project, tmp_path: Path) -> None:
    data = publishable()
    del data["scope"]
    data["quick"] = True
    _write(tmp_path, data)
    assert _rule(project, tmp_path) == "full-scope"
    data["scope"] = "full"  # and a file that says both is not full either
    _write(tmp_path, data)
    assert _rule(project, tmp_path) == "full-scope"


def test_duplicate_keys_are_refused_not_read_one_way(project, tmp_path: Path) -> None:
    text = json.dumps(publishable()).replace('"passed": true', '"passed": false, "passed": true',
                                             1)
    _write(tmp_path, text)
    with pytest.raises(JobError, match=r"not JSON \(duplicate key 'passed'\)"):
        _gate(project, tmp_path)
    with pytest.raises(ValueError, match="duplicate key"):
        json_loads('{"a": {"b": 1, "b": 2}}')


def test_a_quick_run_publishes_only_when_allowed(project, tmp_path: Path) -> None:
    data = publishable()
    data["scope"] = "quick"
    (tmp_path / f"{VARIANT}.quick.json").write_text(json.dumps(data))
    assert _rule(project, tmp_path) == "result-exists"
    assert _gate(project, tmp_path, allow_quick=True) is not None


def test_a_tag_that_would_be_cut_is_refused(project) -> None:
    v = project.matrix.get(VARIANT)
    long_torch = "2." + "1" * (MAX_TAG - 10)
    with pytest.raises(TagTooLong):
        publish_tags(v, HASH, torch=long_torch)
    assert all(len(t) <= MAX_TAG for t in publish_tags(v, HASH, torch="2.7.1"))


def test_two_variants_sharing_a_tag_are_refused(project) -> None:
    a, b = project.matrix.get("therock-gfx1010"), project.matrix.get("therock-gfx1012")
    plans = [Plan(BuiltImage(v, IMAGE, "x", HASH), "imagefactory", "r/imagefactory",
                  (v.name, "same"), None, False) for v in (a, b)]
    assert shared_tags(plans) == [
        "therock-gfx1012: not publishing: r/imagefactory:same is also the tag of "
        "therock-gfx1010 [gate rule tags-unique]"]
    assert shared_tags(plans[:1]) == []


# --- every generated result: published exactly when the whitelist, stated again, allows ----

CASES = ["conv2d-k3", "int8-mm-256-fwd", "sdpa-flash-fwd", "matmul-fp16"]
STATUSES = ["ok", "skipped", "crash", "hang", "not-run"]
DECLARED = {"int8-mm-256-fwd", "sdpa-flash-fwd"}  # therock-gfx1010's known failures


results = st.fixed_dictionaries({
    "schema": st.just(1),
    "variant": st.sampled_from([VARIANT, "therock-gfx1012"]),
    "image_id": st.sampled_from([IMAGE, "sha256:" + "c" * 64]),
    "passed": st.booleans(),
    "checks": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["a", "b"]),
                                              "passed": st.booleans()}), max_size=3),
    "conv": st.lists(st.fixed_dictionaries({
        "case": st.sampled_from(CASES), "status": st.sampled_from(STATUSES),
        "verdict": st.sampled_from(["", "ok", "known", "regression", "fixed"])}), max_size=4),
    "host": st.none(),
    "profile": st.sampled_from([None, "rdna1-tuning", "im2col"]),
    "inputs_hash": st.sampled_from([HASH, "e" * 64, None]),
    "torch": st.sampled_from([None, "2.7.1+rocm7.0.0", "2.7-x", "1" * 70]),
}, optional={"scope": st.sampled_from(["full", "quick", "subset"]), "quick": st.booleans()})


def allowed(d: dict[str, Any], label: str, rendered: str, allow_quick: bool) -> bool:
    """The whitelist in plain words, written apart from publish/gate.py."""
    scope = d.get("scope", "quick" if d.get("quick") is True else "full")
    cases = [c["case"] for c in d["conv"]]
    torch = d["torch"]
    return (d["variant"] == VARIANT and d["image_id"] == IMAGE and label == rendered
            and d["inputs_hash"] == label
            and ((scope == "full" and d.get("quick") is not True)
                 or (allow_quick and scope in ("quick", "subset")))
            and d["profile"] is None and d["passed"] is True
            and bool(d["checks"]) and all(c["passed"] for c in d["checks"])
            and bool(cases) and len(set(cases)) == len(cases)
            and all(c["status"] in ("ok", "skipped") or c["case"] in DECLARED
                    for c in d["conv"])
            and (torch is None or ("-" not in torch and len(torch) <= 64)))


@settings(max_examples=400, deadline=None)
@given(d=results, label=st.sampled_from([HASH, "d" * 64]),
       allow_quick=st.booleans())
def test_no_result_outside_the_whitelist_publishes(project, tmp_path_factory, d: dict[str, Any],
                                                   label: str, allow_quick: bool) -> None:
    tmp_path = tmp_path_factory.mktemp("gate")
    _write(tmp_path, d)
    want = allowed(d, label, HASH, allow_quick)
    try:
        got = _gate(project, tmp_path, label=label, allow_quick=allow_quick) is not None
    except JobError as exc:
        assert "\n" not in str(exc)
        got = False
    assert got == want, d
