"""The bundle reader on hostile input: every refusal is one BundleError line (exit 2), never
another exception; whatever it accepts, the published schema accepts too."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import fuzzing
import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from share_host import Host

from imagefactory.share import bundle as bundles
from imagefactory.share import reader
from imagefactory.share.run import make_for
from imagefactory.verify.results import TestResult

ROOT = Path(__file__).parent.parent.parent
VALIDATOR = jsonschema.Draft202012Validator(
    json.loads((ROOT / "schemas" / "result-bundle.v1.json").read_text()))
RESULT = TestResult.load_path(ROOT / "tests/fixtures/results/rocm62-patched.json")


@pytest.fixture
def valid(host: Host) -> dict[str, Any]:
    assert RESULT is not None
    return make_for(RESULT, ROOT / "tests/fixtures/results", None, roots=host.roots,
                    state=host.state)


def _refused_in_one_line(text: str) -> reader.Bundle | None:
    try:
        return reader.from_text(text, "bundle.json")
    except reader.BundleError as exc:
        line = str(exc)
        assert "\n" not in line and line.startswith("bundle.json"), line
        assert exc.exit_code == 2
        return None


def _paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            out += _paths(v, (*at, i))
    return out


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=30) | st.sampled_from(fuzzing.NASTY),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


@pytest.mark.parametrize("field", ["subject", "configuration"])
def test_an_empty_subject_or_configuration_list_is_refused(valid: dict[str, Any],
                                                          field: str) -> None:
    """Found by the fuzz below: `Arr(.., 1)` bounded the lists at one item but not at
    least one, and the cross-field check then indexed an empty list (a traceback)."""
    doc = copy.deepcopy(valid)
    (doc if field == "subject" else doc["predicate"])[field] = []
    assert _refused_in_one_line(json.dumps(doc)) is None
    assert not VALIDATOR.is_valid(doc)


@given(data=st.data())
def test_any_field_replaced(valid: dict[str, Any], data: st.DataObject) -> None:
    paths = _paths(valid)[1:]
    at = data.draw(st.sampled_from(paths))
    doc = copy.deepcopy(valid)
    target = doc
    for key in at[:-1]:
        target = target[key]
    if data.draw(st.booleans()) and isinstance(target, dict):
        del target[at[-1]]
    else:
        target[at[-1]] = data.draw(JSON)
    got = _refused_in_one_line(json.dumps(doc))
    if got is not None:  # accepted: then the published schema agrees
        VALIDATOR.validate(got.data)


@given(key=st.sampled_from(["_type", "result", "variant", "host_id"]))
def test_duplicate_keys_refused(valid: dict[str, Any], key: str) -> None:
    text = bundles.to_json(valid)
    needle = f'"{key}": '
    assert needle in text
    doubled = text.replace(needle, f'{needle}"x", {needle}', 1)
    assert _refused_in_one_line(doubled) is None


@given(token=st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400",
                              "1" * 25, "9" * 5000, "1." + "0" * 60]))
def test_bad_numbers_refused(valid: dict[str, Any], token: str) -> None:
    text = bundles.to_json(valid).replace('"schema": 1', f'"schema": {token}', 1)
    assert _refused_in_one_line(text) is None


@given(depth=st.integers(min_value=13, max_value=200_000), kind=st.sampled_from("[{"))
@fuzzing.examples(ci=15)
def test_deep_nesting_refused(depth: int, kind: str) -> None:
    text = ("[" * depth + "]" * depth) if kind == "[" else ('{"a":' * depth + "1" + "}" * depth)
    assert _refused_in_one_line(text) is None


@given(text=st.text(max_size=200) | st.sampled_from(fuzzing.NASTY))
def test_arbitrary_text(text: str) -> None:
    assert _refused_in_one_line(text) is None


def test_oversize_and_non_utf8(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (reader.MAX_BUNDLE_BYTES + 1))
    with pytest.raises(reader.BundleError, match="too large"):
        reader.load(big)
    with pytest.raises(reader.BundleError, match="not UTF-8"):
        reader.from_bytes(b'{"a": "\xff"}', "x.json")
    with pytest.raises(reader.BundleError, match="no such file"):
        reader.load(tmp_path / "absent.json")


@given(field=st.sampled_from(["variant", "profile", "finished_at", "host_id", "image_id"]),
       value=st.sampled_from(fuzzing.NASTY))
def test_string_fields_fuzzed(valid: dict[str, Any], field: str, value: str) -> None:
    doc = copy.deepcopy(valid)
    doc["predicate"]["imagefactory"][field] = value
    assert _refused_in_one_line(json.dumps(doc)) is None


def test_tampered_image_id_refused(valid: dict[str, Any]) -> None:
    doc = copy.deepcopy(valid)
    doc["predicate"]["imagefactory"]["image_id"] = "sha256:" + "e" * 64
    with pytest.raises(reader.BundleError, match=r"differs from predicate\.imagefactory"):
        reader.from_text(json.dumps(doc), "t.json")
