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
from imagefactory.matrix.loader import parse_matrix
from imagefactory.matrix.yamlsource import load
from imagefactory.project import Project
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
