"""The published JSON Schema of variants.yaml (schemas/variants.schema.json, #26): current,
valid by the metaschema, met by the shipped matrix under two independent validators (the
jsonschema library and the check-jsonschema CLI), and never stricter than the loader: what
the loader accepts the schema accepts, and broken matrices the loader refuses that one entry
can show wrong on its own are refused by the schema too."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from fuzzing import NASTY
from hypothesis import example, given
from hypothesis import strategies as st

from imagefactory import schemafiles
from imagefactory.errors import ConfigError
from imagefactory.matrix import yamlsource
from imagefactory.matrix.loader import _deep_merge, parse_matrix
from imagefactory.matrix.schema import matrix_node
from imagefactory.schema import SchemaError

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "schemas" / "variants.schema.json"
SCHEMA = json.loads(SCHEMA_FILE.read_text())
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
NODE = matrix_node()
TEXT = (REPO / "variants.yaml").read_text()
SHIPPED = yamlsource.load(TEXT, "variants.yaml").data


def schema_errors(doc: Any) -> list[str]:
    """Both readings of the schema: the library's errors, and the node layer must agree on
    refusing (it renders the same description)."""
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(doc)]
    try:
        NODE.check(doc, "")
    except SchemaError as exc:
        assert errors, f"the node layer refuses ({exc}) what the published schema accepts"
    return errors


def loads(doc: Any) -> bool:
    try:
        parse_matrix(json.dumps(doc), "m.yaml")  # JSON is YAML; keeps every string exactly
    except ConfigError:
        return False
    return True


def test_committed_schema_is_current() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA_FILE.read_text() == schemafiles.text("variants.schema.json"), \
        "schemas/variants.schema.json is stale: python -m imagefactory.schemafiles"


def test_writer_writes_every_committed_schema(tmp_path: Path) -> None:
    written = schemafiles.write(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in (REPO / "schemas").iterdir())
    for path in written:
        assert path.read_text() == (REPO / "schemas" / path.name).read_text(), path.name


def test_shipped_matrix_meets_the_schema() -> None:
    assert loads(SHIPPED)
    assert schema_errors(SHIPPED) == []
    # what editors read: the file names its schema on its first line
    assert TEXT.splitlines()[0] == "# yaml-language-server: $schema=schemas/variants.schema.json"


def _check_jsonschema() -> str:
    exe = shutil.which("check-jsonschema", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    assert exe, "check-jsonschema is missing: pip install -e '.[test]'"
    return exe


def test_check_jsonschema_cli(tmp_path: Path) -> None:
    run = [_check_jsonschema(), "--schemafile", str(SCHEMA_FILE)]
    ok = subprocess.run([*run, str(REPO / "variants.yaml")], capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = copy.deepcopy(SHIPPED)
    broken["variants"]["cpu"]["recipe"]["apt_pakages"] = ["python3"]
    bad = tmp_path / "variants.yaml"
    bad.write_text(yaml.safe_dump(broken, sort_keys=False))
    out = subprocess.run([*run, str(bad)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "apt_pakages" in out.stdout + out.stderr


def _entry(**fields: Any) -> dict[str, Any]:
    """A complete cpu entry (extends nothing), with `fields` replacing or adding."""
    entry = copy.deepcopy(SHIPPED["variants"]["cpu"])
    entry.update(fields)
    return {k: v for k, v in entry.items() if v is not DROP}


DROP = object()


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(SHIPPED)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is DROP:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


# rocm62-native written out whole (over what it inherits), so it extends nothing
ROCM_ENTRY = _deep_merge(SHIPPED["variants"]["rocm-common"],
                         SHIPPED["variants"]["rocm62-native"])
del ROCM_ENTRY["extends"], ROCM_ENTRY["abstract"]

BROKEN = {
    "unknown top-level key": _with(("repositry",), "x"),
    "no variants": _with(("variants",), {}),
    "unknown profile key": _with(("profiles", "override", "environment"), {}),
    "env value not a string": _with(("profiles", "override", "env", "X"), 1),
    "env name not a name": _with(("profiles", "override", "env", "A-B"), "1"),
    "unknown variant key": _with(("variants", "cpu", "famly"), "cpu"),
    "reserved variant name": _with(("variants", "templates"), _entry()),
    "variant name with a dot": _with(("variants", "cpu.quick"), _entry()),
    "unknown family": _with(("variants", "cpu", "family"), "cpuu"),
    "abstract not a boolean": _with(("variants", "rocm-common", "abstract"), "no"),
    "complete entry without family": _with(("variants", "cpu", "family"), DROP),
    "complete entry without expect": _with(("variants", "cpu", "expect"), DROP),
    "neither base nor base_variant": _with(("variants", "cpu", "base"), DROP),
    "both base and base_variant": _with(("variants", "cpu", "base_variant"), "rocm62-native"),
    "base without a tag": _with(("variants", "cpu", "base"), "debian"),
    "base with a short digest": _with(("variants", "cpu", "base"), "debian:12@sha256:abc"),
    "description with a dollar": _with(("variants", "cpu", "description"), "costs $5"),
    "description over 1000 characters": _with(("variants", "cpu", "description"), "x" * 1001),
    "bad GPU target": _with(("variants", "rocm-common", "gfx_targets"), ["gfx10"]),
    "torch source not known": _with(("variants", "cpu", "torch", "source"), "conda"),
    "torch wheel without index": _with(("variants", "cpu", "torch"),
                                       {"version": "2.1", "source": "wheel"}),
    "unknown torch key": _with(("variants", "cpu", "torch", "commit"), "x"),
    "unknown expect key": _with(("variants", "cpu", "expect", "cuda"), "12"),
    "expect file not absolute": _with(("variants", "cpu", "expect", "files"), ["etc/x"]),
    "unknown recipe key": _with(("variants", "cpu", "recipe", "apt_pakages"), ["x"]),
    "required recipe key missing": _with(("variants", "cpu", "recipe"), {}),
    "required recipe list empty": _with(("variants", "cpu", "recipe", "apt_packages"), []),
    "recipe value with a space": _with(("variants", "cpu", "recipe", "apt_packages"),
                                       ["python3 curl"]),
    # an entry that extends another but names its family: that family's keys only
    "key of another family": _with(("variants", "rocm52-torch113", "recipe", "codename"),
                                   "focal"),
    # an entry whose family is inherited: the keys of some family
    "key of no family": _with(("variants", "therock-gfx1010", "recipe", "bogus"), "x"),
    "max_jobs zero": _with(("variants", "rocm62-native", "recipe", "max_jobs"), 0),
    "max_jobs a word": _with(("variants", "rocm62-native", "recipe", "max_jobs"), "many"),
    "bool recipe value a string": _with(("variants", "rocm52-torch20", "recipe", "apt_rewrite"),
                                        "yes"),
    "a nightly rocm outside therock": _with(("variants", "rocm62-native", "rocm"),
                                            "7.15.0a20260712"),
    # read as the entries extending it read it
    "bad value in an abstract entry": _with(
        ("variants", "therock-common", "recipe", "python_packages"), ["py thon"]),
    "ROCm family without rocm": _with(("variants", "rocm62-x"),
                                      {k: v for k, v in ROCM_ENTRY.items() if k != "rocm"}),
    "known failure without source": _with(
        ("variants", "therock-common", "known_failures", 0, "source"), DROP),
    "known failure with a blank reason": _with(
        ("variants", "therock-common", "known_failures", 0, "reason"), "  "),
    "known failure source not https": _with(
        ("variants", "therock-common", "known_failures", 0, "source"), "http://x.org/1"),
    "known failure with no cases": _with(
        ("variants", "therock-common", "known_failures", 0, "cases"), []),
    "lib entry without commit": _with(
        ("variants", "rocm54-source", "recipe", "libs", 0, "commit"), DROP),
}


def test_the_complete_rocm_entry_is_sound() -> None:
    """The base of the "ROCm family without rocm" case loads: only rocm is wrong there."""
    assert loads(_with(("variants", "rocm62-x"), ROCM_ENTRY))
    assert schema_errors(_with(("variants", "rocm62-x"), ROCM_ENTRY)) == []


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_matrix_is_refused_by_loader_and_schema(case: str) -> None:
    doc = BROKEN[case]
    assert not loads(doc), f"the loader accepts {case}"
    assert schema_errors(doc), f"the schema accepts {case}"


# What needs another entry or arithmetic over fields: only the loader sees it. Listed so a
# change in either side is noticed; the schema says so in its description.
ONLY_THE_LOADER = {
    "extends an unknown entry": _with(("variants", "cpu", "extends"), "nope"),
    "an unknown profile": _with(("variants", "cpu", "profiles"), ["nope"]),
    "base_variant unknown": _with(("variants", "cpu"), _entry(base=DROP, base_variant="nope")),
    "therock pin that disagrees": _with(("variants", "therock-gfx1010", "recipe", "extras"),
                                        "device-gfx1012"),
}


@pytest.mark.parametrize("case", list(ONLY_THE_LOADER))
def test_what_only_the_loader_checks(case: str) -> None:
    doc = ONLY_THE_LOADER[case]
    assert not loads(doc)
    assert schema_errors(doc) == []


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(SHIPPED)


nasty_text = st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=6)),
                      max_size=4).map("".join)
yaml_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | nasty_text,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(nasty_text, kids, max_size=3),
    max_leaves=8)


@given(path=st.sampled_from(PATHS), value=st.just(DROP) | yaml_value)
# optional keys deleted or null, the loader's other spellings of a value
@example(path=("source",), value=DROP)
@example(path=("source",), value=None)
@example(path=("profiles",), value=None)
@example(path=("profiles", "override", "description"), value=DROP)
@example(path=("variants", "cpu", "env"), value=None)
@example(path=("variants", "cpu", "gfx_targets"), value=None)
@example(path=("variants", "rocm62-native", "recipe", "build_env"), value=None)
@example(path=("variants", "rocm62-native", "recipe", "build_env"), value=[])
@example(path=("variants", "rocm52-torch20", "recipe", "max_jobs"), value=12)
@example(path=("variants", "rocm52-torch20", "recipe", "apt_rewrite"), value=None)
@example(path=("variants", "rocm52-torch113", "default_profile"), value=None)
@example(path=("variants", "rocm52-torch113", "expect", "env"), value=DROP)
@example(path=("variants", "rocm54-source", "recipe", "libs", 0, "cmake"), value=None)
@example(path=("variants", "therock-common", "known_failures", 0, "profiles"), value=None)
@example(path=("variants", "cpu", "env"), value={"A_1": "x y"})
def test_fuzz_what_the_loader_accepts_the_schema_accepts(path: tuple[Any, ...],
                                                         value: Any) -> None:
    """A value of the shipped matrix replaced or deleted: where the loader still loads the
    matrix, the schema accepts it (an optional key, a null the loader reads as unset, a
    number for a count)."""
    if value is DROP and isinstance(path[-1], int):
        value = None  # a list item: deleting one is only a shorter list
    doc = _with(path, value)
    if loads(doc):
        # what the loader read (JSON's Infinity is a YAML string)
        assert schema_errors(yamlsource.load(json.dumps(doc), "m.yaml").data) == []
