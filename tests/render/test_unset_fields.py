"""#26: removing a required recipe field fails at load with file:line, for every family; an
unset optional value is never printed as `None` (the template fails, naming the variant)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagefactory.errors import ConfigError
from imagefactory.matrix import recipes
from imagefactory.matrix.loader import parse_matrix
from imagefactory.project import Project
from imagefactory.render.renderer import Renderer

REPO = Path(__file__).resolve().parents[2]
SHIPPED = yaml.safe_load((REPO / "variants.yaml").read_text())
FILE = "edited.yaml"
FAMILIES = Project.locate(REPO / "variants.yaml").families


def _chain(doc: dict[str, Any], name: str) -> list[dict[str, Any]]:
    out, entry = [], doc["variants"][name]
    while True:
        out.append(entry)
        if "extends" not in entry:
            return out
        entry = doc["variants"][entry["extends"]]


def _one_per_family() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, entry in SHIPPED["variants"].items():
        if entry.get("abstract"):
            continue
        family = next(e["family"] for e in _chain(SHIPPED, name) if "family" in e)
        out.setdefault(family, name)
    return out


CASES = [(variant, f.name) for family, variant in sorted(_one_per_family().items())
         for f, _, needed in recipes.field_specs(recipes.FAMILIES[family]) if needed]


def test_every_shipped_family_is_covered() -> None:
    assert {recipes.FAMILIES[f].family for f in _one_per_family()} == set(_one_per_family())
    assert len(CASES) > 30


@pytest.mark.parametrize(("variant", "key"), CASES, ids=[f"{v}-{k}" for v, k in CASES])
def test_removing_a_required_recipe_field_names_file_and_line(variant: str, key: str) -> None:
    doc = copy.deepcopy(SHIPPED)
    for entry in _chain(doc, variant):
        entry.get("recipe", {}).pop(key, None)
    text = yaml.safe_dump(doc, sort_keys=False)
    with pytest.raises(ConfigError) as info:
        parse_matrix(text, FILE, families=FAMILIES)
    err = info.value
    assert err.path == FILE and err.line is not None and err.line > 1
    assert err.field.startswith("variants.") and "recipe" in err.field, str(err)
    assert key in str(err)
    assert "\n" not in str(err)


def _render(doc: dict[str, Any], name: str) -> str:
    matrix = parse_matrix(yaml.safe_dump(doc, sort_keys=False), FILE, families=FAMILIES)
    project = Project(REPO / "variants.yaml", REPO, REPO / "dockerfiles")
    object.__setattr__(project, "matrix", matrix)  # the cached_property slot
    return Renderer(project).render(matrix.get(name)).dockerfile


@pytest.mark.parametrize(("variant", "path"), [
    ("rocm52-torch113", ("torch", "torchvision")),  # rocm-wheel prints torchvision==...
    ("rocm62-patched", ("torch", "torchvision")),
])
def test_unset_optional_value_fails_render_instead_of_printing_none(
        variant: str, path: tuple[str, ...]) -> None:
    doc = copy.deepcopy(SHIPPED)
    for entry in _chain(doc, variant):
        node = entry
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    with pytest.raises(ConfigError) as info:
        _render(doc, variant)
    err = info.value
    assert err.path == FILE and err.line is not None, str(err)
    assert err.field == f"variants.{variant}" and path[-1] in err.message


@pytest.mark.parametrize("family", sorted(f for f, c in recipes.FAMILIES.items()
                                           if c.needs_rocm and f in _one_per_family()))
def test_a_rocm_family_without_rocm_fails_at_load(family: str) -> None:
    variant = _one_per_family()[family]
    doc = copy.deepcopy(SHIPPED)
    for entry in _chain(doc, variant):
        entry.pop("rocm", None)
    with pytest.raises(ConfigError) as info:
        parse_matrix(yaml.safe_dump(doc, sort_keys=False), FILE, families=FAMILIES)
    assert info.value.field == f"variants.{variant}.rocm" and info.value.line is not None


def test_shipped_matrix_renders_no_none() -> None:
    # A `None` the template writes itself (Python inside a RUN) is text, not a value printed
    # unset: a line holding None must stand as it is in a template.
    written = "\n".join(p.read_text() for p in (REPO / "dockerfiles" / "templates").glob("*.j2"))
    for name in _one_per_family().values():
        for line in _render(copy.deepcopy(SHIPPED), name).splitlines():
            assert "None" not in line or line.strip() in written, (name, line)
