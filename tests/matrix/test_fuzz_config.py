"""Hostile variants.yaml against the loader (issue 12): any document either loads, and then
every variant renders (so `list` never accepts what `render` rejects), or is refused with
one ConfigError line naming the file given, never another exception."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fuzzing import NASTY, examples
from hypothesis import example, given
from hypothesis import strategies as st

from imagefactory.errors import ConfigError
from imagefactory.matrix.loader import RESERVED_VARIANT_NAMES, parse_matrix
from imagefactory.matrix.yamlsource import load
from imagefactory.project import Project
from imagefactory.reference import ReferenceError, parse_reference
from imagefactory.render.renderer import Renderer

REPO = Path(__file__).resolve().parents[2]
SHIPPED = yaml.safe_load((REPO / "variants.yaml").read_text())
FILE = "other-config.yaml"

nasty_text = st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=6)),
                      max_size=4).map("".join)
yaml_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | nasty_text,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(nasty_text, kids, max_size=3),
    max_leaves=8)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


PATHS = [p for p in _paths(SHIPPED) if p]
TEXT = (REPO / "variants.yaml").read_text()


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def _check(text: str) -> None:
    try:
        matrix = parse_matrix(text, FILE, families=Project.locate(REPO / "variants.yaml")
                              .families)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(FILE), message
        return
    # Loaded: every variant must render (config accepted it, so render must too).
    project = Project(REPO / "variants.yaml", REPO, REPO / "dockerfiles")
    object.__setattr__(project, "matrix", matrix)  # the cached_property slot
    renderer = Renderer(project)
    for v in matrix.variants:
        renderer.render(v)


@given(path=st.sampled_from(PATHS), value=yaml_value)
@example(path=("variants", "rocm54-source", "recipe", "libs"), value=[])  # found by the fuzz
def test_fuzz_config_value_replaced(path: tuple[Any, ...], value: Any) -> None:
    doc = copy.deepcopy(SHIPPED)
    _set(doc, path, value)
    _check(json.dumps(doc))  # JSON is YAML; keeps every string exactly


@examples(25)
@given(position=st.integers(0, len((REPO / "variants.yaml").read_text())),
       insert=st.sampled_from([*NASTY, "&a ", "*a", "!!binary ", ": ", "- ", "{", "[", "'",
                               '"', "<<: ", "? ", "%YAML 1.1\n", "---\n", "\t"]))
@example(position=TEXT.index('rocm: "5.4.3"') + len('rocm: "'), insert="COPY")  # found
def test_fuzz_config_text_mutated(position: int, insert: str) -> None:
    text = (REPO / "variants.yaml").read_text()
    _check(text[:position] + insert + text[position:])


@pytest.mark.parametrize("doc", [
    # 400 bytes that expand to 9^8 values through aliases ("billion laughs").
    "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n"
        for p, n in zip("abcdefg", "bcdefgh", strict=True)),
    "a: &a [*a]\n",
    "[" * 200_000 + "]" * 200_000,
    "- " * 100_000 + "x\n",
    "a: !!python/object/apply:os.system [echo]\n",
])
def test_bombs_are_refused_quickly(doc: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load(doc, FILE)
    assert time.perf_counter() - start < 2
    assert str(info.value).startswith(f"{FILE}:")


# --- #25: values the grammar refuses ----------------------------------------------------

_alnum = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=5)
_component = st.builds(lambda first, rest: first + "".join(s + a for s, a in rest), _alnum,
                       st.lists(st.tuples(st.sampled_from([".", "_", "__", "-", "--"]), _alnum),
                                max_size=2))
_domain = st.one_of(st.none(), st.sampled_from(["localhost:5000", "ghcr.io", "[::1]:5000",
                                                "reg-1.example.com:443", "Host.Example"]))
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digest = st.one_of(st.none(), st.just("sha256:" + "0123456789abcdef" * 4))


@st.composite
def references(draw: st.DrawFn) -> tuple[str, str, str, str | None]:
    domain = draw(_domain)
    path = "/".join(draw(st.lists(_component, min_size=1, max_size=3)))
    name = f"{domain}/{path}" if domain else path
    tag, digest = draw(_tag), draw(_digest)
    return name + ":" + tag + (f"@{digest}" if digest else ""), name, tag, digest


def _base_doc(ref: str) -> str:
    doc = copy.deepcopy(SHIPPED)
    doc["variants"]["cpu"]["base"] = ref
    return json.dumps(doc)  # JSON is YAML: the value goes in exactly as generated


@given(references())
def test_fuzz_reference_in_the_grammar_parses(ref: tuple[str, str, str, str | None]) -> None:
    text, name, tag, digest = ref
    parsed = parse_reference(text)
    assert (parsed.name, parsed.tag, parsed.digest) == (name, tag, digest)
    base = parse_matrix(_base_doc(text), FILE).get("cpu").base
    assert base is not None and str(base) == text


def _double_tag_colon(ref: str) -> str:
    """`name::tag`: the tag's colon, not the first one (an IPv6 domain's `[::1]` has more)."""
    head, at, digest = ref.partition("@")
    name, _, tag = head.rpartition(":")
    return f"{name}::{tag}{at}{digest}"


# Each turns a valid reference into one outside the grammar.
_BREAK = [
    lambda r: r + "\n", _double_tag_colon, lambda r: r.replace("/", "//", 1)
    if "/" in r else "/" + r, lambda r: "-" + r, lambda r: r.split(":")[0] + "-:x",
    lambda r: r.split(":")[0] + "..a:x", lambda r: r.split(":")[0] + "/:x",
    lambda r: "a" * 256 + r, lambda r: r.split("@")[0] + ":x" * 2,
    lambda r: r.split(":")[0] + ":" + "t" * 129, lambda r: r.split("@")[0] + "@sha256:abc",
]


@given(references(), st.sampled_from(range(len(_BREAK))))
def test_fuzz_reference_outside_the_grammar_is_refused(
        ref: tuple[str, str, str, str | None], which: int) -> None:
    bad = _BREAK[which](ref[0])
    with pytest.raises(ReferenceError):
        parse_reference(bad)
    with pytest.raises(ConfigError) as info:
        parse_matrix(_base_doc(bad), FILE)
    assert str(info.value).startswith(f"{FILE}:") and "variants.cpu.base" in str(info.value)


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True),
       st.sampled_from(["\n", "\r", "\r\n", " ", "\t", "=", "-", ".", "\x00", "\u2028"]))
def test_fuzz_env_key_with_a_trailing_character_is_refused(key: str, tail: str) -> None:
    doc = copy.deepcopy(SHIPPED)
    doc["variants"]["cpu"]["env"] = {key + tail: "1"}
    with pytest.raises(ConfigError) as info:
        parse_matrix(json.dumps(doc), FILE)
    assert str(info.value).startswith(f"{FILE}:") and "\n" not in str(info.value)


@given(st.one_of(st.sampled_from(sorted(RESERVED_VARIANT_NAMES)),
                 st.builds(lambda a, b: f"{a}.{b}", _alnum,
                           st.sampled_from(["quick", "subset", "publish", "json", "x"]))))
def test_fuzz_variant_name_colliding_with_the_tools_files_is_refused(name: str) -> None:
    doc = copy.deepcopy(SHIPPED)
    doc["variants"][name] = doc["variants"].pop("cpu")
    with pytest.raises(ConfigError) as info:
        parse_matrix(json.dumps(doc), FILE)
    assert str(info.value).startswith(f"{FILE}:") and f"variants.{name}" in str(info.value)
