"""Recipe families contributed by installed distributions (#26), in the manner of pytest's
plugins and repo2docker's buildpacks: the entry-point group `imagefactory.families`.

Each entry point names a module; importing it registers its families with the public
decorator, `imagefactory.matrix.recipes.family`, exactly as the built-in families are
registered. A distribution declares it in its pyproject.toml:

    [project.entry-points."imagefactory.families"]
    mine = "my_package.families"

The group is read once per process (`families()`, on the first matrix load), in the order
of the entry points' names. A plugin that fails to import, registers a name already taken
(a built-in family, or another plugin's), or registers something that is not a recipe
(a frozen `Recipe` dataclass of typed, `kind(...)`-annotated fields under a lowercase
name) is a `PluginError`: one line naming the entry point and its distribution, exit 2.
The failure stands for the rest of the process, and the registry is left as it was before
that plugin. A plugin family's template is looked up like any other
(`dockerfiles/templates/` of the project, `Recipe.template_name()`); the shipped JSON Schema
of variants.yaml describes the built-in families only (recipes.BUILTIN_FAMILIES).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..errors import ConfigError
from ..log import one_line
from . import recipes
from .recipes import Recipe

GROUP = "imagefactory.families"
logger = logging.getLogger(__name__)


class PluginError(ConfigError):
    """A family plugin that cannot be used: the entry point, and why (exit 2)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(where, None, "", message)


@dataclass
class _State:
    loaded: bool = False
    failure: PluginError | None = None
    # family name -> the entry point that registered it (for a later plugin's clash)
    origins: dict[str, str] = field(default_factory=dict)


_STATE = _State()


def families() -> Mapping[str, type[Recipe]]:
    """Every family: the built-in ones and those of the installed plugins (loaded on the
    first call). Raises the `PluginError` of a broken plugin, on every call."""
    load()
    return MappingProxyType(recipes.FAMILIES)


def load() -> None:
    state = _STATE
    if state.failure is not None:
        raise state.failure
    if state.loaded:
        return
    # Set first: a plugin that loads a matrix while it is imported sees the registry so far.
    state.loaded = True
    for ep in _entry_points():
        try:
            _load_one(ep, state)
        except PluginError as exc:
            state.failure = exc
            raise


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=GROUP), key=lambda e: (e.name, e.value))


def _describe(ep: importlib.metadata.EntryPoint) -> str:
    dist = ep.dist
    owner = f" of {dist.name} {dist.version}" if dist is not None else ""
    return f"family plugin '{ep.name} = {ep.value}' ({GROUP} entry point{owner})"


def _load_one(ep: importlib.metadata.EntryPoint, state: _State) -> None:
    where = _describe(ep)
    before = dict(recipes.FAMILIES)

    def refuse(message: str) -> PluginError:
        recipes.FAMILIES.clear()
        recipes.FAMILIES.update(before)
        return PluginError(where, message)

    try:
        ep.load()
    except recipes.FamilyTaken as exc:
        if exc.name in recipes.BUILTIN_FAMILIES:
            why = "which is built in (a plugin cannot replace a built-in family)"
        elif exc.name in state.origins:
            why = f"which {state.origins[exc.name]} registered already"
        else:
            why = "which is registered already"
        raise refuse(f"registers family '{exc.name}', {why}") from None
    except (Exception, SystemExit) as exc:
        raise refuse(f"failed to load: {one_line(exc)}") from None
    added = [name for name in recipes.FAMILIES if name not in before]
    for name in added:
        problem = _not_a_recipe(name, recipes.FAMILIES[name])
        if problem:
            raise refuse(f"family '{name}': {problem}")
    for name in added:
        state.origins[name] = f"'{ep.name} = {ep.value}'"
    logger.debug("%s: families %s", where, ", ".join(added) or "none")


def _not_a_recipe(name: str, cls: object) -> str | None:
    """None when `cls` can be a family `name` as the built-in ones are; else why not."""
    if recipes.WORD.check(name):
        return "the name is not lowercase letters, digits and - (it names the template file)"
    if not (isinstance(cls, type) and issubclass(cls, Recipe) and dataclasses.is_dataclass(cls)
            and cls.__dataclass_params__.frozen):  # type: ignore[attr-defined]
        return "not a frozen dataclass deriving from imagefactory.matrix.recipes.Recipe"
    from .schema import recipe_node  # the loader's types are the schema's (schema imports us)

    try:
        recipe_node(cls, complete=True)
    except Exception as exc:
        return ("every field needs a recipe type (str, int, bool, tuple[str, ...], "
                f"Mapping[str, str]) and kind(...) metadata: {one_line(exc)}")
    return None
