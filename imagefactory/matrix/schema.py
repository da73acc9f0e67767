"""The JSON Schema of variants.yaml (schemas/variants.schema.json), so editors check the
matrix as it is typed. It is rendered from what the loader reads: its key sets
(loader.TOP_KEYS, VARIANT_KEYS, ...), its patterns, and each built-in family's recipe
dataclass (recipes.BUILTIN_FAMILIES), so a new key or family changes the schema and the
freshness test says so. Families of plugins (matrix/plugins.py) are not in it, loaded or
not: the shipped file is the same on every machine, and a matrix using a plugin's family is
checked by the loader alone.

The loader stays the reader (file:line errors, `extends`, cross-field rules); the schema
says what one entry can say on its own:
- every entry: its keys, and the type and form of every value it writes (an abstract
  entry's values too, as the entries extending it will read them);
- an entry that extends nothing and is not abstract: the required fields, exactly one of
  base / base_variant, torch's index or ref for its source, its family's required recipe
  keys and rocm where the family needs one;
- an entry that names its family: only that family's recipe keys, and the numeric rocm of
  every family but therock.
What needs another entry (an inherited family, `extends` and profile names that exist,
base_variant cycles) or arithmetic over fields (TheRock's pins) only the loader checks.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from ..reference import NAME as REPOSITORY_NAME
from ..reference import NAME_TOTAL_MAX, TAG
from ..schema import (
    AllOf,
    AnyOf,
    Arr,
    Bool,
    Enum,
    Int,
    Map,
    Node,
    Not,
    Obj,
    Opt,
    Str,
    When,
    document,
    has,
    where_set,
)
from . import loader, recipes

SCHEMA_ID = "https://github.com/imagefactory/imagefactory/schemas/variants.schema.json"
MAX_TEXT = 1000  # loader._Reader.text
# loader._UNSAFE: what would break out of its place in a Dockerfile (newlines, NUL and the
# other controls are refused by every Str).
TEXT = Str(MAX_TEXT, r'[^"\\$`]*')
_BIG = 100_000  # lists and mappings the loader does not bound (the file is bounded)


def _text(pattern: str | None = None) -> Str:
    return Str(MAX_TEXT, pattern) if pattern is not None else TEXT


def _env() -> Node:
    return Opt(Map(TEXT, key=loader._ENV_KEY.pattern, max=_BIG))


def _names() -> str:
    """A variant name that is not one of the tool's own file names."""
    reserved = "|".join(sorted(loader.RESERVED_VARIANT_NAMES))
    return rf"(?!(?:{reserved})$){loader._VARIANT_NAME.pattern}"


# --- recipes ------------------------------------------------------------------------------


def _value(tp: Any, k: recipes.Kind) -> Node:
    """The node of one recipe value of type `tp` (recipes._value reads the same types)."""
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return _value(args[0], k)
    if tp is bool:
        return Bool()
    if tp is int:
        if k is not recipes.NUMBER:
            raise TypeError(f"no integer range for recipe kind {k.what!r}")
        # A number, or its digits as a string ("8"): the loader reads both.
        return AnyOf((Int(1, 9999), _text(k.pattern.pattern)))
    if tp is str:
        return _text(k.pattern.pattern)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return recipe_node(tp, complete=True)
    if origin is tuple:
        return Arr(_value(args[0], k), max=_BIG)
    if origin in (Mapping, dict):
        return Map(_text(k.pattern.pattern), key=recipes.WORD.pattern.pattern, max=_BIG)
    raise TypeError(f"recipe field type {tp!r} has no schema")  # a programming error


def _fields(cls: type[Any]) -> dict[str, tuple[Node, bool]]:
    """Each key: its value's node (null where the loader reads null as unset) and whether
    it is required."""
    out = {}
    for f, tp, needed in recipes.field_specs(cls):
        node = _value(tp, f.metadata["kind"])
        if needed and isinstance(node, Arr):  # a required list has at least one entry
            node = dataclasses.replace(node, min=1)
        out[f.name] = (node if needed else Opt(node), needed)
    return out


def recipe_node(cls: type[Any], complete: bool) -> Obj:
    """A recipe (or a recipe's entry) of `cls`; `complete`: its required keys present."""
    fields = _fields(cls)
    required = {k: n for k, (n, needed) in fields.items() if needed and complete}
    optional = {k: n for k, (n, _) in fields.items() if k not in required}
    return Obj(required, optional)


def _any_family_recipe() -> Obj:
    """A recipe whose family is inherited: the keys of any family, each of the forms it has
    in the families that have it."""
    forms: dict[str, list[Node]] = {}
    for cls in recipes.BUILTIN_FAMILIES.values():
        for key, (node, _) in _fields(cls).items():
            if node not in forms.setdefault(key, []):
                forms[key].append(node)
    return Obj({}, {k: v[0] if len(v) == 1 else AnyOf(tuple(v))
                    for k, v in sorted(forms.items())})


# --- a variant entry ----------------------------------------------------------------------

_ROCM = _text(loader._ROCM_PRERELEASE.pattern)  # therock's nightlies; the others: numeric
_ROCM_NUMERIC = _text(loader._ROCM_VERSION.pattern)
_NAME = _text(loader._NAME.pattern)
_VERSION = _text(loader._VERSION.pattern)
_BASE = Str(MAX_TEXT, rf"{REPOSITORY_NAME}:{TAG}(?:@sha256:[0-9a-f]{{64}})?")

TORCH = Obj({}, {
    "version": _VERSION,
    "source": Enum(loader._TORCH_SOURCES),
    "index": Opt(_text(loader._URL.pattern)),
    "ref": Opt(_text(loader._GIT_REF.pattern)),
    "torchvision": Opt(_VERSION),
})
TORCH_COMPLETE = AllOf((
    has("version", "source"),
    When(has(source=Enum(("wheel",))), has(index=_text())),
    When(has(source=Enum(("source",))), has(ref=_text())),
))
EXPECT = Obj({}, {
    "python": Opt(_VERSION),
    "torch": Opt(_VERSION),
    "hip": Opt(_VERSION),
    "files": Opt(Arr(_text(loader._ABS_PATH.pattern), max=_BIG)),
    "env": _env(),
})
# loader._known_failures: a reason that says something (not blank).
KNOWN_FAILURE = Obj({
    "cases": Arr(_text(loader._CASE_GLOB.pattern), max=_BIG, min=1),
    "reason": _text(r'[^"\\$`]*[^\s"\\$`][^"\\$`]*'),
    "source": _text(loader._PUBLIC_URL.pattern),
}, {"profiles": Opt(Arr(_NAME, max=_BIG))})


def _same_keys(what: str, nodes: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    """The loader gained or lost a key the schema has not: fail the render of the schema."""
    if set(nodes) != set(keys):
        raise AssertionError(f"{what} keys {sorted(set(nodes) ^ set(keys))} differ between "
                             "matrix/loader.py and matrix/schema.py")


def _entry_values() -> Obj:
    values: dict[str, Node] = {
        "abstract": Bool(),
        "extends": _text(loader._VARIANT_NAME.pattern),
        "family": Enum(tuple(sorted(recipes.BUILTIN_FAMILIES))),
        "description": TEXT,
        "base": _BASE,
        "base_variant": Opt(_text(loader._VARIANT_NAME.pattern)),
        "rocm": Opt(_ROCM),
        "torch": TORCH,
        "gfx_targets": Opt(Arr(_text(loader._GFX.pattern), max=_BIG)),
        "profiles": Opt(Arr(_NAME, max=_BIG)),
        "default_profile": Opt(_NAME),
        "env": _env(),
        "recipe": Opt(_any_family_recipe()),
        "expect": EXPECT,
        "known_failures": Opt(Arr(KNOWN_FAILURE, max=_BIG)),
    }
    _same_keys("variant", values, loader.VARIANT_KEYS)
    _same_keys("torch", TORCH.optional, loader.TORCH_KEYS)
    _same_keys("expect", EXPECT.optional, loader.EXPECT_KEYS)
    _same_keys("known failure", {**KNOWN_FAILURE.required, **KNOWN_FAILURE.optional},
               loader.KNOWN_FAILURE_KEYS)
    return Obj({}, values)


_ABSTRACT = has(abstract=Enum((True,)))
COMPLETE = AllOf((Not(_ABSTRACT, "abstract"), Not(has("extends"), "extends another entry")))


def _family(name: str, cls: type[recipes.Recipe]) -> list[Node]:
    named = has(family=Enum((name,)))
    rules: list[Node] = [When(named, where_set(recipe=Opt(recipe_node(cls, complete=False))))]
    if not cls.rocm_prerelease:
        rules.append(When(named, where_set(rocm=Opt(_ROCM_NUMERIC))))
    full = recipe_node(cls, complete=True)
    needs: Node = has(recipe=full) if full.required else has(recipe=Opt(full))
    if cls.needs_rocm:
        needs = AllOf((needs, has(rocm=_ROCM)))
    rules.append(When(AllOf((named, COMPLETE)), needs))
    return rules


def variant_node() -> Node:
    one_base = AllOf((AnyOf((has("base"), has("base_variant"))),
                      Not(has("base", "base_variant"), "both base and base_variant")))
    complete = AllOf((has(*loader.REQUIRED_VARIANT_KEYS), one_base, has(torch=TORCH_COMPLETE)))
    return AllOf((
        _entry_values(),
        When(COMPLETE, complete),
        *(rule for name, cls in sorted(recipes.BUILTIN_FAMILIES.items())
          for rule in _family(name, cls)),
    ))


def matrix_node() -> Obj:
    profile = Obj({}, {"description": TEXT, "env": _env()})
    _same_keys("profile", profile.optional, loader.PROFILE_KEYS)
    top: dict[str, tuple[Node, bool]] = {
        "repository": (Str(NAME_TOTAL_MAX, REPOSITORY_NAME), True),
        "source": (Opt(_text(loader._URL.pattern)), False),
        "profiles": (Opt(Map(profile, key=loader._NAME.pattern, max=_BIG)), False),
        "variants": (Map(variant_node(), key=_names(), max=_BIG, min=1), True),
    }
    _same_keys("top-level", top, loader.TOP_KEYS)
    return Obj({k: n for k, (n, req) in top.items() if req},
               {k: n for k, (n, req) in top.items() if not req})


def schema_document() -> dict[str, Any]:
    return document(
        matrix_node(), SCHEMA_ID, "imagefactory variants.yaml",
        "The image matrix: env profiles and variants (one image each), read by "
        "`imagefactory list/render/build`. The loader checks more than this schema can "
        "(inherited fields, names that must exist, TheRock's pins): `imagefactory list` "
        "has the last word.")

