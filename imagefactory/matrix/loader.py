"""variants.yaml -> a validated, immutable `Matrix` of `Variant`s.

Every value that ends up in a Dockerfile is checked here, so templates can print it as is:
a newline, a quote, a backslash or a `$` in a value would let it break out of its place
(start a new instruction, continue a line, expand a build variable).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .. import schema
from ..errors import ConfigError
from ..paths import CRASHES_DIR, LOGS_DIR, STAGES_DIR, STATE_DIR
from ..reference import ReferenceError, check_repository, parse_reference
from ..safety import MAX_CONFIG_BYTES, escape_control, first_control, read_text
from . import plugins, recipes, yamlsource
from .recipes import Recipe, RecipeProblem
from .yamlsource import Located, dotted

_P = tuple[str | int, ...]  # a field's path in the YAML document

# Values printed into Dockerfiles: one line, no quoting/escaping/expansion characters.
_UNSAFE = re.compile(r'[\n\r"\\$`\x00]')
# Every pattern is applied with fullmatch: a `$` anchor also matches before a final newline.
# The names and GPU targets every reader shares are schema.py's (defined once there).
_NAME = re.compile(schema.NAME)  # profile and family names
# A variant's name becomes file and folder names (schema.VARIANT_NAME: no dot), and is none
# of the names the tool itself writes beside them.
_VARIANT_NAME = re.compile(schema.VARIANT_NAME)
RESERVED_VARIANT_NAMES = frozenset({
    "compatibility",  # report/writer.py: compatibility.json, COMPATIBILITY.md, .png
    "templates", "files",  # dockerfiles/templates, dockerfiles/files
    "docker-bake",  # dockerfiles/docker-bake.json
    STAGES_DIR, "manifests",  # results/stages/, results/manifests/
    STATE_DIR.lstrip("."), LOGS_DIR, CRASHES_DIR,
})
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_GFX = re.compile(schema.GFX)
# What render/rocm_apt.py derives the apt suite from: load refuses what render would.
_ROCM_VERSION = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}(\.[0-9]{1,3}){0,2}")
# TheRock's nightlies are PEP 440 pre-releases (7.15.0a20260712); no apt suite derives from
# them, so only that family takes one.
_ROCM_PRERELEASE = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}(\.[0-9]{1,3}){0,2}((a|b|rc)[0-9]{1,10})?")
_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%+:@=,-]*)*")
_GIT_REF = re.compile(r"(?!.*\.\.)(?!.*//)[A-Za-z0-9][A-Za-z0-9._/-]{0,99}(?<![./])")
_ABS_PATH = re.compile(r"(/(?!\.{1,2}(?:/|$))[A-Za-z0-9._+-]+){1,32}")
_TORCH_SOURCES = ("wheel", "source", "debian")
# Conv check case ids are lowercase words, digits and dashes; a glob adds * ? [ ].
_CASE_GLOB = re.compile(r"[a-z0-9*?\[\]!._-]{1,80}")
_PUBLIC_URL = re.compile("https://[^\\s\"'\\\\$`]+")  # no identity escapes: ECMA-262 too
# The ROCm runtime reports the GPU as this version instead (10.3.0: gfx1030, RDNA2), so the
# image's gfx1030 code runs on an RDNA1 card. Whether a variant runs under it is decided by
# Variant.override / override_in, nowhere else.
OVERRIDE_KEY = "HSA_OVERRIDE_GFX_VERSION"


def override_in(env: Mapping[str, str]) -> str | None:
    """The GFX version an environment makes the runtime report, or None (unset or empty)."""
    return env.get(OVERRIDE_KEY) or None


TOP_KEYS = ("repository", "source", "profiles", "variants")
PROFILE_KEYS = ("description", "env")
VARIANT_KEYS = (
    "abstract", "extends", "family", "description", "base", "base_variant", "rocm", "torch",
    "gfx_targets", "profiles", "default_profile", "env", "recipe", "expect", "known_failures",
)
KNOWN_FAILURE_KEYS = ("cases", "reason", "source", "profiles")
TORCH_KEYS = ("version", "source", "index", "ref", "torchvision")
EXPECT_KEYS = ("python", "torch", "hip", "files", "env")
REQUIRED_VARIANT_KEYS = ("family", "description", "torch", "expect")


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class ImageRef:
    """A base image: `name:tag`, optionally pinned by digest."""

    name: str
    tag: str
    digest: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}" + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.ref


@dataclass(frozen=True)
class Torch:
    """Which PyTorch a variant carries and where it comes from."""

    version: str
    source: str  # wheel | source | debian
    index: str | None = None  # wheel index URL (source == wheel)
    ref: str | None = None  # git ref to build (source == source)
    torchvision: str | None = None


@dataclass(frozen=True)
class Expect:
    """Facts the variant's smoke tests must find inside the built image."""

    python: str | None = None
    torch: str | None = None
    hip: str | None = None
    files: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: _frozen({}))


@dataclass(frozen=True)
class KnownFailure:
    """A gap the variant is known to have: conv check cases (globs) expected to fail, why,
    and the public page that says so. A matching failure is reported as known, not as a
    regression; a matching case that passes is reported as fixed."""

    cases: tuple[str, ...]
    reason: str
    source: str
    profiles: tuple[str, ...] = ()  # only under these env profiles; empty: under any

    def matches(self, case_id: str, profile: str | None = None) -> bool:
        if self.profiles and profile not in self.profiles:
            return False
        return any(fnmatch.fnmatchcase(case_id, g) for g in self.cases)


@dataclass(frozen=True)
class Profile:
    """A named set of environment variables (`profiles:`: override, rdna1-tuning, ...)."""

    name: str
    description: str
    env: Mapping[str, str]


@dataclass(frozen=True)
class Variant:
    """One image of the matrix. Immutable: it flows through render, build, test and publish."""

    name: str
    family: str
    description: str
    base: ImageRef | None
    base_variant: str | None
    rocm: str | None
    torch: Torch
    gfx_targets: tuple[str, ...]
    profiles: tuple[Profile, ...]
    default_profile: Profile | None
    env: Mapping[str, str]
    recipe: Recipe
    expect: Expect
    line: int | None = None  # where it is declared, for error messages
    file: str = "variants.yaml"  # the matrix file it comes from (--config)
    known_failures: tuple[KnownFailure, ...] = ()

    def known_failure(self, case_id: str, profile: str | None = None) -> KnownFailure | None:
        """The first known failure that covers `case_id` under `profile`, if any."""
        return next((k for k in self.known_failures if k.matches(case_id, profile)), None)

    def profile(self, name: str | None) -> Profile | None:
        """The profile called `name` (None: the default), or an error naming the choices."""
        if name is None:
            return self.default_profile
        for p in self.profiles:
            if p.name == name:
                return p
        choices = ", ".join(p.name for p in self.profiles) or "none"
        raise ConfigError(self.file, self.line, f"variants.{self.name}.profiles",
                          f"variant '{self.name}' has no profile '{name}' (it offers: {choices})")

    def runtime_env(self, profile: str | None = None) -> dict[str, str]:
        """The environment the image runs with: variant env, then the chosen profile's."""
        env = dict(self.env)
        chosen = self.profile(profile)
        if chosen:
            env.update(chosen.env)
        return env

    def override(self, profile: str | None = None) -> str | None:
        """The GFX version the image runs as under `profile` (None: its default), when that
        environment sets the override; else None (its code runs as its gfx_targets)."""
        return override_in(self.runtime_env(profile))

    def uses_override(self, profile: str | None = None) -> bool:
        return self.override(profile) is not None

    @property
    def offers_override(self) -> bool:
        """Whether some way of running it (a profile it offers, or its own env) is under
        the override."""
        return override_in(self.env) is not None or any(
            override_in(p.env) is not None for p in self.profiles)


@dataclass(frozen=True)
class Matrix:
    """The whole of variants.yaml."""

    path: Path
    repository: str
    source: str | None
    profiles: Mapping[str, Profile]
    variants: tuple[Variant, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variants)

    def get(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise ConfigError(str(self.path), None, "variant",
                          f"unknown variant '{name}'{suggest(name, self.names)}")

    def select(self, names: Iterable[str]) -> tuple[Variant, ...]:
        return tuple(self.get(n) for n in names)


def suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Reader:
    """Typed access to the raw YAML with errors that carry file, line and field."""

    def __init__(self, doc: Located, variant: str | None = None,
                 origin: Mapping[str, str] | None = None) -> None:
        self.doc = doc
        self.variant = variant
        self.origin = origin or {}

    def fail(self, path: _P, message: str) -> ConfigError:
        field_ = dotted(path)
        # A value inherited through `extends` is reported where it is written.
        if (self.variant and len(path) > 2 and path[:2] == ("variants", self.variant)
                and self.origin.get(str(path[2]), self.variant) != self.variant):
            source = self.origin[str(path[2])]
            path = ("variants", source, *path[2:])
            field_ = f"{dotted(path)} (inherited by {self.variant})"
        # Keys and values quoted back may hold anything: escaped, so the error stays one line.
        return ConfigError(self.doc.file, self.doc.line(path), escape_control(field_),
                           escape_control(message))

    def keys(self, value: Any, path: _P, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if key not in allowed:
                raise self.fail((*path, key), f"unknown key '{key}'{suggest(key, allowed)}")
        return value

    def text(self, value: Any, path: _P, pattern: re.Pattern[str] | None = None,
             what: str = "") -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(path, f"expected a string, got {_kind(value)}")
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {_kind(value)} {value!r} "
                                  f"(quote it: \"{value}\")")
        bad = _UNSAFE.search(value)
        if bad:
            raise self.fail(path, f"{_char(bad.group())} is not allowed: the value is printed "
                                  "into a Dockerfile and would break out of its place")
        ctl = first_control(value)
        if ctl is not None:
            raise self.fail(path, f"invisible or control character U+{ord(ctl):04X} is not "
                                  "allowed: Docker and this tool would split lines differently")
        if len(value) > 1000:
            raise self.fail(path, f"longer than 1000 characters ({len(value)})")
        if pattern and not pattern.fullmatch(value):
            raise self.fail(path, f"{value!r} is not a valid {what or 'value'}")
        return value

    def opt_text(self, value: Any, path: _P, pattern: re.Pattern[str] | None = None,
                 what: str = "") -> str | None:
        return None if value is None else self.text(value, path, pattern, what)

    def text_list(self, value: Any, path: _P, pattern: re.Pattern[str] | None = None,
                  what: str = "") -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list, got {_kind(value)}")
        return tuple(self.text(v, (*path, i), pattern, what) for i, v in enumerate(value))

    def env(self, value: Any, path: _P) -> Mapping[str, str]:
        if value is None:
            return _frozen({})
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping of NAME: value, got {_kind(value)}")
        out = {}
        for key, val in value.items():
            if not isinstance(key, str) or not _ENV_KEY.fullmatch(key):
                raise self.fail((*path, key), f"'{key}' is not a valid environment variable name")
            out[key] = self.text(val, (*path, key))
        return _frozen(out)


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", list: "a list",
            dict: "a mapping", type(None): "nothing (null)", str: "a string"}.get(
        type(value), type(value).__name__)


def _char(c: str) -> str:
    return {"\n": "a newline", "\r": "a carriage return", '"': "a double quote",
            "\\": "a backslash", "$": "'$'", "`": "a backtick", "\x00": "a NUL byte"}[c]


def load_matrix(path: Path, families: Iterable[str] | None = None) -> Matrix:
    """Load and validate `path`. `families`: the template families that exist, if known."""
    text = read_text(path, MAX_CONFIG_BYTES)
    return parse_matrix(text, str(path), path, families)


def parse_matrix(text: str, file: str, path: Path | None = None,
                 families: Iterable[str] | None = None) -> Matrix:
    doc = yamlsource.load(text, file)
    r = _Reader(doc)
    top = r.keys(doc.data, (), TOP_KEYS)
    for key in ("repository", "variants"):
        if key not in top:
            raise r.fail((), f"missing required key '{key}'")
    repository = r.text(top["repository"], ("repository",))
    try:
        check_repository(repository)
    except ReferenceError as exc:
        raise r.fail(("repository",), str(exc)) from None
    source = r.opt_text(top.get("source"), ("source",), _URL, "URL")
    profiles = _profiles(r, {} if top.get("profiles") is None else top["profiles"])
    raw_variants = top["variants"]
    if not isinstance(raw_variants, dict) or not raw_variants:
        raise r.fail(("variants",), "expected a non-empty mapping of variant name to settings")
    for name in raw_variants:
        r.text(name, ("variants", name), _VARIANT_NAME,
               "variant name (lowercase letters, digits, _ -; no dot)")
        if name in RESERVED_VARIANT_NAMES:
            raise r.fail(("variants", name), f"'{name}' is a name the tool uses for its own "
                                             "files and folders; choose another")
        r.keys(raw_variants[name], ("variants", name), VARIANT_KEYS)
        # Read before `extends` is resolved: a non-boolean (`abstract: "no"`) would be
        # taken as true and the entry skipped unchecked.
        if not isinstance(raw_variants[name].get("abstract", False), bool):
            raise r.fail(("variants", name, "abstract"), "expected true or false, got "
                         f"{_kind(raw_variants[name]['abstract'])}")
    family_set = set(families) if families is not None else None
    variants = []
    for name in raw_variants:
        merged, origin = _resolve_extends(r, raw_variants, name)
        if merged.get("abstract"):
            continue
        variants.append(_variant(_Reader(doc, name, origin), name, merged, profiles,
                                 family_set))
    known = {v.name for v in variants}
    for v in variants:
        if v.base_variant is not None and v.base_variant not in known:
            raise r.fail(("variants", v.name, "base_variant"),
                         f"unknown variant '{v.base_variant}'{suggest(v.base_variant, known)}")
    _check_base_cycles(r, variants)
    return Matrix(path or Path(file), repository, source, _frozen(profiles), tuple(variants))


def _profiles(r: _Reader, raw: Any) -> dict[str, Profile]:
    if not isinstance(raw, dict):
        raise r.fail(("profiles",), f"expected a mapping, got {_kind(raw)}")
    out = {}
    for name, body in raw.items():
        path = ("profiles", name)
        r.text(name, path, _NAME, "profile name")
        body = r.keys(body, path, PROFILE_KEYS)
        out[name] = Profile(name, r.text(body.get("description", ""), (*path, "description")),
                            r.env(body.get("env"), (*path, "env")))
    return out


def _resolve_extends(r: _Reader, raw: dict[str, Any],
                     name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge `name` over the chain of variants it extends (mappings merge, the rest replaces).

    Also returns, per field, the variant whose entry set it, so an error in an inherited
    value points at the line where it is written.
    """
    chain = [name]
    while "extends" in raw[chain[-1]]:
        parent = raw[chain[-1]]["extends"]
        path = ("variants", chain[-1], "extends")
        parent = r.text(parent, path, _VARIANT_NAME, "variant name")
        if parent not in raw:
            raise r.fail(path, f"extends unknown variant '{parent}'{suggest(parent, raw)}")
        if parent in chain:
            cycle = " -> ".join([*chain, parent])
            raise r.fail(path, f"extends cycle: {cycle}")
        chain.append(parent)
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for link in reversed(chain):
        own = {k: v for k, v in raw[link].items() if k != "extends"}
        # base and base_variant are alternatives: setting one replaces an inherited other.
        for key, other in (("base", "base_variant"), ("base_variant", "base")):
            if key in own:
                merged.pop(other, None)
        merged = _deep_merge(merged, own)
        origin.update(dict.fromkeys(own, link))
    merged["abstract"] = raw[name].get("abstract", False)  # abstractness is not inherited
    return merged, origin


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _variant(r: _Reader, name: str, raw: dict[str, Any], profiles: dict[str, Profile],
             families: set[str] | None) -> Variant:
    path = ("variants", name)
    for key in REQUIRED_VARIANT_KEYS:
        if key not in raw:
            raise r.fail(path, f"missing required field '{key}'")
    family = r.text(raw["family"], (*path, "family"), _NAME, "family name")
    cls = plugins.families().get(family)  # None: _recipe says there is no such family
    if families is not None and family not in families:
        template = cls.template_name() if cls else family + recipes.TEMPLATE_SUFFIX
        raise r.fail((*path, "family"),
                     f"unknown family '{family}'{suggest(family, families)}: no template "
                     f"dockerfiles/templates/{template}")
    if ("base" in raw) == ("base_variant" in raw):
        raise r.fail(path, "exactly one of 'base' (an image) or 'base_variant' (a variant "
                           "whose image to build FROM) is required")
    base = None
    if "base" in raw:
        ref = r.text(raw["base"], (*path, "base"))
        try:
            parsed = parse_reference(ref)
            if parsed.tag is None:
                raise ReferenceError("no tag")
        except ReferenceError as exc:
            raise r.fail((*path, "base"), f"{ref!r} is not a pinned image reference "
                                          f"(name:tag, optionally @sha256:<64 hex>): {exc}"
                         ) from None
        base = ImageRef(parsed.name, parsed.tag, parsed.digest)
    base_variant = r.opt_text(raw.get("base_variant"), (*path, "base_variant"), _VARIANT_NAME,
                              "variant name")
    torch = _torch(r, raw["torch"], (*path, "torch"))
    offered = _profile_refs(r, raw.get("profiles"), (*path, "profiles"), profiles)
    default = None
    if raw.get("default_profile") is not None:
        dp = r.text(raw["default_profile"], (*path, "default_profile"), _NAME, "profile name")
        if dp not in {p.name for p in offered}:
            raise r.fail((*path, "default_profile"),
                         f"'{dp}' is not one of this variant's profiles "
                         f"({', '.join(p.name for p in offered) or 'none'})")
        default = profiles[dp]
    if cls is not None and cls.needs_rocm and raw.get("rocm") is None:
        raise r.fail((*path, "rocm"), f"family '{family}' builds against a ROCm release: "
                     "set rocm (like 6.2.4)")
    variant = Variant(
        name=name,
        family=family,
        description=r.text(raw["description"], (*path, "description")),
        base=base,
        base_variant=base_variant,
        rocm=r.opt_text(raw.get("rocm"), (*path, "rocm"), _ROCM_PRERELEASE,
                        "ROCm version (like 7.14.0 or a nightly's 7.15.0a20260712)")
        if cls is not None and cls.rocm_prerelease else
        r.opt_text(raw.get("rocm"), (*path, "rocm"), _ROCM_VERSION,
                   "ROCm version (numeric, like 6.2.4)"),
        torch=torch,
        gfx_targets=r.text_list(raw.get("gfx_targets"), (*path, "gfx_targets"), _GFX,
                                "GPU target (gfxNNNN)"),
        profiles=offered,
        default_profile=default,
        env=r.env(raw.get("env"), (*path, "env")),
        recipe=_recipe(r, family, raw.get("recipe"), (*path, "recipe")),
        expect=_expect(r, raw["expect"], (*path, "expect")),
        line=r.doc.line(path),
        file=r.doc.file,
        known_failures=_known_failures(r, raw.get("known_failures"), (*path, "known_failures"),
                                       offered),
    )
    # The family's own requirements of the whole variant (recipes.Recipe.problems).
    for where, message in variant.recipe.problems(variant):
        raise r.fail((*path, *where), message)
    return variant


def _known_failures(r: _Reader, raw: Any, path: tuple[str | int, ...],
                    offered: tuple[Profile, ...]) -> tuple[KnownFailure, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise r.fail(path, f"expected a list of known failures, got {_kind(raw)}")
    names = {p.name for p in offered}
    out = []
    for i, item in enumerate(raw):
        here = (*path, i)
        item = r.keys(item, here, KNOWN_FAILURE_KEYS)
        for key in ("cases", "reason", "source"):
            if key not in item:
                raise r.fail(here, f"missing required field '{key}'")
        cases = r.text_list(item["cases"], (*here, "cases"), _CASE_GLOB,
                            "case glob (conv check case ids: a-z 0-9 - . _ and * ? [ ])")
        if not cases:
            raise r.fail((*here, "cases"), "expected at least one case glob")
        reason = r.text(item["reason"], (*here, "reason"))
        if not reason.strip():
            raise r.fail((*here, "reason"), "the reason must say why the cases fail")
        source = r.text(item["source"], (*here, "source"), _PUBLIC_URL,
                        "public https:// URL of the evidence")
        profiles = r.text_list(item.get("profiles"), (*here, "profiles"), _NAME, "profile name")
        for j, name in enumerate(profiles):
            if name not in names:
                raise r.fail((*here, "profiles", j),
                             f"'{name}' is not one of this variant's profiles "
                             f"({', '.join(sorted(names)) or 'none'})")
        out.append(KnownFailure(cases, reason, source, profiles))
    return tuple(out)


def _torch(r: _Reader, raw: Any, path: _P) -> Torch:
    raw = r.keys(raw, path, TORCH_KEYS)
    for key in ("version", "source"):
        if key not in raw:
            raise r.fail(path, f"missing required field '{key}'")
    source = r.text(raw["source"], (*path, "source"))
    if source not in _TORCH_SOURCES:
        raise r.fail((*path, "source"), f"'{source}' is not one of {', '.join(_TORCH_SOURCES)}"
                                        f"{suggest(source, _TORCH_SOURCES)}")
    torch = Torch(
        version=r.text(raw["version"], (*path, "version"), _VERSION, "version"),
        source=source,
        index=r.opt_text(raw.get("index"), (*path, "index"), _URL, "URL"),
        ref=r.opt_text(raw.get("ref"), (*path, "ref"), _GIT_REF, "git ref"),
        torchvision=r.opt_text(raw.get("torchvision"), (*path, "torchvision"), _VERSION,
                               "version"),
    )
    needs: dict[str, Callable[[Torch], str | None]] = {"wheel": lambda t: t.index,
                                                      "source": lambda t: t.ref}
    if source in needs and needs[source](torch) is None:
        key = "index" if source == "wheel" else "ref"
        raise r.fail(path, f"missing required field '{key}' (torch.source is '{source}')")
    return torch


def _profile_refs(r: _Reader, raw: Any, path: _P,
                  profiles: dict[str, Profile]) -> tuple[Profile, ...]:
    names = r.text_list(raw, path)
    for i, n in enumerate(names):
        if n not in profiles:
            raise r.fail((*path, i), f"unknown env profile '{n}'{suggest(n, profiles)}")
    return tuple(profiles[n] for n in names)


def _recipe(r: _Reader, family: str, raw: Any, path: _P) -> Recipe:
    """The family's typed recipe (matrix/recipes.py): unknown keys and bad values fail here."""
    known = plugins.families()
    cls = known.get(family)
    if cls is None:
        raise r.fail((*path[:-1], "family"),
                     f"family '{family}' has no recipe schema{suggest(family, known)}"
                     " (add its dataclass to imagefactory/matrix/recipes.py, or install the "
                     f"plugin that provides it: entry-point group {plugins.GROUP})")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise r.fail(path, f"expected a mapping, got {_kind(raw)}")

    def text(value: Any, at: _P, kind: recipes.Kind) -> str:
        out = r.text(value, (*path, *at))
        problem = kind.check(out)
        if problem:
            raise r.fail((*path, *at), problem)
        return out

    try:
        return recipes.build(cls, raw, text)
    except RecipeProblem as exc:
        raise r.fail((*path, *exc.path), exc.message) from None


def _expect(r: _Reader, raw: Any, path: _P) -> Expect:
    raw = r.keys(raw, path, EXPECT_KEYS)
    return Expect(
        python=r.opt_text(raw.get("python"), (*path, "python"), _VERSION, "version"),
        torch=r.opt_text(raw.get("torch"), (*path, "torch"), _VERSION, "version"),
        hip=r.opt_text(raw.get("hip"), (*path, "hip"), _VERSION, "version"),
        files=r.text_list(raw.get("files"), (*path, "files"), _ABS_PATH,
                          "absolute path (no . or .. parts)"),
        env=r.env(raw.get("env"), (*path, "env")),
    )


def _check_base_cycles(r: _Reader, variants: list[Variant]) -> None:
    parent = {v.name: v.base_variant for v in variants}
    for v in variants:
        seen = [v.name]
        nxt = parent[v.name]
        while nxt is not None:
            if nxt in seen:
                raise r.fail(("variants", v.name, "base_variant"),
                             f"base_variant cycle: {' -> '.join([*seen, nxt])}")
            seen.append(nxt)
            nxt = parent[nxt]
