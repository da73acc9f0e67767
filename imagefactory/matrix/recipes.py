"""Typed recipes: one frozen dataclass per family, validated when variants.yaml is loaded.

A recipe holds a family's build settings; templates only print its values. Each field says
what it is through `kind(...)` (a pattern and a name for error messages), so a value that
the shell or Dockerfile syntax would read as more than one word (a space, a quote, `;`, `$`,
a newline) never gets past loading, and `list` refuses exactly what `render` would.

Adding a family: write a dataclass deriving from `Recipe`, decorate it with
`@family("<name>")`, declare each key with its type (str, int, bool, tuple[str, ...],
Mapping[str, str]) and `kind(...)`; required keys have no default. Unknown keys are errors.
The class is the whole family (`Recipe`'s class variables and `problems`): its template and
stages, its ROCm rules and its checks of the variant.
The families defined here are the built-in ones (`BUILTIN_FAMILIES`); an installed
distribution may add more through the `imagefactory.families` entry-point group
(matrix/plugins.py), with the same decorator, never replacing a name already taken.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ..schema import GFX
from ..schema import SHA256 as _SHA256

if TYPE_CHECKING:  # the loader builds recipes: a runtime import would be a cycle
    from .loader import Variant

# Where a family's problem is, under the variant (`("recipe", "channel")`), and what it is.
Problem = tuple[tuple[str | int, ...], str]
TEMPLATE_SUFFIX = ".Dockerfile.j2"

# --- what a value may be --------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A value class: the pattern every value must match in full, and its name."""

    pattern: re.Pattern[str]
    what: str

    def check(self, value: str) -> str | None:
        """None when `value` is one; else why not."""
        if not self.pattern.fullmatch(value):
            return f"{value!r} is not a valid {self.what}"
        return None


def _k(pattern: str, what: str) -> Kind:
    return Kind(re.compile(pattern), what)


# Every pattern is a single shell/Dockerfile word: no whitespace, quotes, `$`, `\`, `;`,
# `&`, `|`, `<`, `>`, `(`, `)`, `*`, `?`, backtick, `#` (a comment in a Dockerfile line).
VERSION = _k(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}", "version")
NUMBER = _k(r"[1-9][0-9]{0,3}", "number (1-9999)")
SHA1 = _k(r"[0-9a-f]{40}", "git commit (40 lowercase hex digits)")
SHA256 = _k(_SHA256, "sha256 (64 lowercase hex digits)")
GIT_REF = _k(r"(?!.*\.\.)(?!.*//)[A-Za-z0-9][A-Za-z0-9._/-]{0,99}(?<![./])", "git ref")
WORD = _k(r"[a-z][a-z0-9-]{0,31}", "name (lowercase letters, digits, -)")
CODENAME = _k(r"[a-z]{2,20}", "distribution codename")
UBUNTU = _k(r"[0-9]{2}\.[0-9]{2}", "Ubuntu release (NN.NN)")
GFX_LIST = _k(rf"{GFX}(;{GFX}){{0,15}}", "GPU target list (gfxNNNN;...)")
ABS_PATH = _k(r"(/(?!\.{1,2}(?:/|$))[A-Za-z0-9._+-]+){1,16}", "absolute path (no . or ..)")
URL = _k(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%+:@=,-]*)*",
         "http(s) URL")
DATE = _k(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", "date (YYYY-MM-DD)")
# Debian: name (policy 5.6.1) with an optional =version (epoch:upstream-revision).
DEB_PACKAGE = _k(r"[a-z0-9][a-z0-9+.-]{1,99}(=([0-9]{1,5}:)?[A-Za-z0-9.+~-]{1,100})?",
                 "Debian package (name or name=version)")
# PEP 508 name, optional extras, one exact or ranged version specifier.
PIP_REQUIREMENT = _k(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,99})(\[[A-Za-z0-9._,-]{1,100}\])?"
                     r"((==|>=|<=|~=|!=)[A-Za-z0-9.+!_-]{1,64})?",
                     "pip requirement (name==version)")
CMAKE_FLAG = _k(r"-D[A-Za-z_][A-Za-z0-9_]{0,99}(:[A-Z]{1,16})?=[A-Za-z0-9_./+,:=@%-]{0,200}",
                "cmake flag (-DNAME=value)")
ENV_ASSIGN = _k(r"[A-Za-z_][A-Za-z0-9_]{0,99}=[A-Za-z0-9_./+,:=@%-]{0,200}",
                "environment assignment (NAME=value)")
WHEEL_TAG = _k(r"[a-z0-9][a-z0-9.]{0,31}", "wheel local version tag (rocm6.2)")
STAGE = _k(r"[a-z][a-z0-9-]{0,31}", "build stage name (lowercase letters, digits, -)")
REPO = _k(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", "repository name")
PATCH_AT = _k(r"[A-Za-z0-9_-][A-Za-z0-9._/-]{0,199}\.patch@[0-9a-f]{40}",
              "patch@commit (path.patch@40 hex digits)")
LOCAL_VERSION = _k(r"\+[a-z0-9][a-z0-9.]{0,31}", "wheel local version (+rocm7.14.0)")
EXTRAS = _k(r"[a-z0-9-]{1,40}(,[a-z0-9-]{1,40}){0,15}", "pip extras (a,b,...)")
YES_NO = _k(r"true|false", "true or false")  # only names booleans in messages


def kind(k: Kind, doc: str = "") -> dict[str, Any]:
    """Field metadata: `field(metadata=kind(SHA1))` (see `required`/`optional`)."""
    return {"kind": k, "doc": doc}


def required(k: Kind) -> Any:
    return dataclasses.field(metadata=kind(k))


def optional(k: Kind, default: str | int | bool | tuple[str, ...] | None = None) -> Any:
    return dataclasses.field(default=default, metadata=kind(k))


# --- the base class and the registry ----------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """Base of every family's recipe. Mapping-style access (`recipe["key"]`, `"key" in
    recipe`) reads the same fields, an unset optional one as absent. Templates read
    attributes; the renderer's environment reads a None one as undefined (it fails)."""

    # A family is one unit, as a repo2docker buildpack is: its recipe class holds its
    # fields and, below, the rest the pipeline asks of it. Nothing outside the class
    # branches on a family's name.
    family: ClassVar[str] = ""
    # The family's template prints the variant's `rocm` (apt pins, install prefixes, the
    # rocm wheel's version): the loader refuses a variant of it that sets none.
    needs_rocm: ClassVar[bool] = False
    # Its `rocm` may name a pre-release (a nightly's 7.15.0a20260712), not only 6.2.4.
    rocm_prerelease: ClassVar[bool] = False
    # Its Dockerfile template under the project's dockerfiles/templates ("": the family's
    # name + .Dockerfile.j2), and the stages that template defines (names a recipe's own
    # stages may not take).
    template: ClassVar[str] = ""
    template_stages: ClassVar[tuple[str, ...]] = ("runtime",)

    @classmethod
    def template_name(cls) -> str:
        return cls.template or cls.family + TEMPLATE_SUFFIX

    def problems(self, variant: Variant) -> Iterator[Problem]:
        """What the family requires of the whole variant beyond its recipe's own fields
        (pins that must agree with rocm, torch, gfx_targets): the loader reports the first
        one at its path, file:line. None by default."""
        return iter(())

    def __getitem__(self, key: str) -> Any:
        if key.startswith("_") or key not in _field_names(type(self)):
            raise KeyError(key)
        value = getattr(self, key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in _field_names(type(self)) and \
            getattr(self, key) is not None

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default  # noqa: SIM401 (this is get)

    def keys(self) -> Iterator[str]:
        return (k for k in _field_names(type(self)) if k in self)


R = TypeVar("R", bound=type[Recipe])
_T = TypeVar("_T")
# Every registered family: the built-in ones below, then those of plugins (matrix/plugins.py
# loads them; read the whole registry through plugins.families()).
FAMILIES: dict[str, type[Recipe]] = {}


class FamilyTaken(Exception):
    """`family(name)` for a name already registered: a family is never replaced."""

    def __init__(self, name: str) -> None:
        super().__init__(f"family '{name}' is already registered")
        self.name = name


def family(name: str) -> Callable[[R], R]:
    """Register the decorated recipe dataclass as family `name` (the public way to add one,
    here or in a plugin module). A name already registered raises `FamilyTaken`."""
    def register(cls: R) -> R:
        if name in FAMILIES:
            raise FamilyTaken(name)
        cls.family = name
        FAMILIES[name] = cls
        return cls
    return register


def _field_names(cls: type[Recipe]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


# --- families ---------------------------------------------------------------------------


@family("cpu")
@dataclass(frozen=True, kw_only=True)
class CpuRecipe(Recipe):
    apt_packages: tuple[str, ...] = required(DEB_PACKAGE)


@family("rocm-wheel")
@dataclass(frozen=True, kw_only=True)
class RocmWheelRecipe(Recipe):
    wheel_tag: str = required(WHEEL_TAG)


@dataclass(frozen=True, kw_only=True)
class _UbuntuRocm(Recipe):
    """Keys every ROCm family that builds on an Ubuntu rocm/dev image shares."""

    needs_rocm: ClassVar[bool] = True

    codename: str = required(CODENAME)
    ubuntu: str = required(UBUNTU)
    max_jobs: int = required(NUMBER)
    runtime_packages: tuple[str, ...] = required(DEB_PACKAGE)


@dataclass(frozen=True, kw_only=True)
class _TorchSource(_UbuntuRocm):
    """PyTorch + torchvision from source (rocm-macros.j2 torch_stages)."""

    template_stages: ClassVar[tuple[str, ...]] = ("rocm-base", "torch-builder",
                                                  "vision-builder", "runtime")

    torch_commit: str = required(SHA1)
    torchvision_sha256: str = required(SHA256)
    build_pip: tuple[str, ...] = required(PIP_REQUIREMENT)
    build_env: tuple[str, ...] = optional(ENV_ASSIGN, ())
    # PYTORCH_ROCM_ARCH: required, the template has no default to print (#26: an unset
    # optional field rendered as `None`).
    torch_arch: str = required(GFX_LIST)


@family("rocm-torch-source")
@dataclass(frozen=True, kw_only=True)
class RocmTorchSourceRecipe(_TorchSource):
    # Point apt at repo.radeon.com's release (rocm-macros.j2 rocm_apt) before building.
    apt_rewrite: bool = optional(YES_NO, False)


@dataclass(frozen=True, kw_only=True)
class RocmLib:
    """One ROCm library rebuilt from source: its stage, where its source is, the commit the
    clone must be (tag rocm-<version>), and its cmake flags."""

    name: str = required(STAGE)  # the build stage and /stage/<name> install folder
    repo: str = required(REPO)  # github.com/ROCm/<repo>
    commit: str = required(SHA1)
    cmake: tuple[str, ...] = optional(CMAKE_FLAG, ())


@dataclass(frozen=True)
class LibStage:
    """A library's build stage and the stage it builds FROM (for templates to print)."""

    base: str
    lib: RocmLib


@family("rocm-libs-source")
@dataclass(frozen=True, kw_only=True)
class RocmLibsSourceRecipe(_TorchSource):
    # Built in this order, each stage FROM the previous one (the first FROM `rocm-base`).
    libs: tuple[RocmLib, ...] = required(STAGE)
    xuhuisheng_commit: str = required(SHA1)
    tensile_patch_sha256: str = required(SHA256)
    tensile_commit: str = required(SHA1)
    patches_verified: tuple[str, ...] = optional(PATCH_AT, ())

    BASE_STAGE: ClassVar[str] = "rocm-base"

    def __post_init__(self) -> None:
        names = [lib.name for lib in self.libs]
        for i, name in enumerate(names):
            if name in names[:i] or name in self.template_stages:
                raise RecipeProblem(("libs", i, "name"), f"stage name '{name}' is already "
                                                         "taken")

    @property
    def stages(self) -> tuple[LibStage, ...]:
        bases = [self.BASE_STAGE, *(lib.name for lib in self.libs[:-1])]
        return tuple(LibStage(b, lib) for b, lib in zip(bases, self.libs, strict=True))

    @property
    def last_stage(self) -> str:
        """The stage the PyTorch build continues from."""
        return self.libs[-1].name if self.libs else self.BASE_STAGE

    def lib(self, name: str) -> RocmLib:
        return next(lib for lib in self.libs if lib.name == name)


@family("rocm-miopen-patched")
@dataclass(frozen=True, kw_only=True)
class RocmMiopenPatchedRecipe(_UbuntuRocm):
    template_stages: ClassVar[tuple[str, ...]] = ("miopen-builder", "runtime")
    wheel_tag: str = required(WHEEL_TAG)
    miopen_version: str = required(VERSION)
    miopen_tag: str = required(GIT_REF)
    miopen_commit: str = required(SHA1)
    miopen_prefix: str = required(ABS_PATH)
    miopen_cmake: tuple[str, ...] = required(CMAKE_FLAG)
    patches_verified: tuple[str, ...] = optional(PATCH_AT, ())


# TheRock's multi-arch wheel indexes: the release channel is the default, nightly is only
# ever the user's explicit choice (recipe.channel). Legacy multi-arch locations per
# ROCm/TheRock docs/packaging/legacy_multi_arch_releases.md (1a70157f2c26).
THEROCK_INDEXES = MappingProxyType({
    "release": "https://repo.amd.com/rocm/whl-multi-arch/",
    "nightly": "https://rocm.nightlies.amd.com/whl-multi-arch/",
})
# From ROCm 10.0 stable and 10.1 nightlies on, the stream-specific repo.amd.com layout's
# aggregate index (ROCm/TheRock RELEASES.md at 1a70157f2c26, "Installing multi-arch
# releases"; the same page's legacy table keeps 10.0.0 release candidates on the old hosts).
THEROCK_INDEXES_NEXT = MappingProxyType({
    "release": "https://stable.repo.amd.com/rocm/whl-next/",
    "nightly": "https://nightly.repo.amd.com/rocm/whl-next/",
})
THEROCK_NEXT_FROM = 10  # the first ROCm major on the repo.amd.com layout
# TheRock publishes a `device-<isa>` extra per GPU target (RELEASES.md, "Supported Python
# [device-*] install extras", ROCm/TheRock 418cd5f63abb, tag therock-7.14).
THEROCK_DEVICE_TARGETS = frozenset({
    "gfx900", "gfx906", "gfx908", "gfx90a", "gfx942", "gfx950", "gfx1010", "gfx1011",
    "gfx1012", "gfx1030", "gfx1031", "gfx1032", "gfx1033", "gfx1034", "gfx1035", "gfx1036",
    "gfx1100", "gfx1101", "gfx1102", "gfx1103", "gfx1150", "gfx1151", "gfx1152", "gfx1153",
    "gfx1200", "gfx1201",
})


def therock_index(channel: str, rocm: str | None) -> str:
    """The index a TheRock channel publishes the given ROCm release to."""
    major = (rocm or "0").split(".", 1)[0]
    indexes = (THEROCK_INDEXES_NEXT if major.isdigit() and int(major) >= THEROCK_NEXT_FROM
               else THEROCK_INDEXES)
    return indexes[channel]


@family("therock")
@dataclass(frozen=True, kw_only=True)
class TheRockRecipe(Recipe):
    needs_rocm: ClassVar[bool] = True
    rocm_prerelease: ClassVar[bool] = True  # nightlies are 7.15.0a20260712
    channel: str = required(WORD)
    python_packages: tuple[str, ...] = required(DEB_PACKAGE)
    # What the template prints into the pip line; problems() checks each agrees with rocm
    # and gfx_targets.
    local_version: str = required(LOCAL_VERSION)
    extras: str = required(EXTRAS)
    device_packages: tuple[str, ...] = required(WORD)

    def problems(self, variant: Variant) -> Iterator[Problem]:
        """The pins: a known channel whose index is the one used, a device extra per GPU
        target, exact ROCm / torch / torchvision versions."""
        v = variant
        if self.channel not in THEROCK_INDEXES:
            yield (("recipe", "channel"),
                   f"recipe.channel must be one of {', '.join(THEROCK_INDEXES)} "
                   f"(got {self.channel!r}); nightly is never implied")
            return
        index = therock_index(self.channel, v.rocm)
        if v.torch.source != "wheel" or v.torch.index != index:
            yield (("torch", "index"),
                   f"channel '{self.channel}' installs from {index} for ROCm {v.rocm} "
                   f"(torch.source wheel), got {v.torch.index!r}")
        if not v.gfx_targets:
            yield (("gfx_targets",), "a therock variant names its GPU targets: each becomes "
                                     "a device-<gfx> extra")
        for i, gfx in enumerate(v.gfx_targets):
            if gfx not in THEROCK_DEVICE_TARGETS:
                yield ("gfx_targets", i), f"TheRock publishes no device-{gfx} extra"
        if v.rocm is None or v.torch.torchvision is None:
            yield (), "a therock variant pins rocm (the rocm-sdk version) and torch.torchvision"
            return
        # The template prints these as they are; they must say what the pins above say.
        expected: dict[str, str | tuple[str, ...]] = {
            "local_version": f"+rocm{v.rocm}",
            "extras": ",".join(f"device-{gfx}" for gfx in v.gfx_targets),
            "device_packages": tuple(f"{prefix}-{gfx}" for gfx in v.gfx_targets
                                     for prefix in ("rocm-sdk-device", "amd-torch-device",
                                                    "amd-torchvision-device")),
        }
        for key, want in expected.items():
            if self[key] != want:
                shown = list(want) if isinstance(want, tuple) else want
                yield ("recipe", key), (f"must be {shown!r} (from rocm and gfx_targets), "
                                        f"got {self[key]!r}")


@family("debian-rocm")
@dataclass(frozen=True, kw_only=True)
class DebianRocmRecipe(Recipe):
    template_stages: ClassVar[tuple[str, ...]] = ("rocm-runtime", "toolchain", "torch-builder",
                                                  "vision-builder", "runtime")
    suite: str = required(CODENAME)
    llvm: str = required(NUMBER)
    snapshot_date: str = required(DATE)
    archive: str = required(URL)
    runtime_packages: tuple[str, ...] = required(DEB_PACKAGE)
    toolchain_packages: tuple[str, ...] = required(DEB_PACKAGE)
    builder_packages: tuple[str, ...] = required(DEB_PACKAGE)
    python_packages: tuple[str, ...] = required(DEB_PACKAGE)
    max_jobs: int = required(NUMBER)
    build_pip: tuple[str, ...] = required(PIP_REQUIREMENT)
    runtime_pip: tuple[str, ...] = optional(PIP_REQUIREMENT, ())
    torch_commit: str = required(SHA1)
    torchvision_sha256: str = required(SHA256)
    build_env: tuple[str, ...] = optional(ENV_ASSIGN, ())


# The families this package defines, whatever plugins add: the shipped JSON Schema of
# variants.yaml is rendered from these alone (matrix/schema.py), so it is the same on every
# machine.
BUILTIN_FAMILIES: Mapping[str, type[Recipe]] = MappingProxyType(dict(FAMILIES))


# --- loading ----------------------------------------------------------------------------


class RecipeProblem(Exception):
    """A bad recipe value: the key path below `recipe` and what is wrong."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def field_specs(cls: type[Any]) -> list[tuple[dataclasses.Field[Any], Any, bool]]:
    """(field, its type, required) for each key of the recipe class."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        needed = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out.append((f, hints[f.name], needed))
    return out


def build(cls: type[_T], raw: Mapping[str, Any],
          text: Callable[[Any, tuple[str | int, ...], Kind], str],
          at: tuple[str | int, ...] = ()) -> _T:
    """A `cls` (a recipe, or an entry of one such as RocmLib) from the YAML mapping `raw`.
    `text(value, path, kind)` validates one string (the loader's: type, forbidden
    characters, pattern) and raises its own error; `at` is where `raw` sits in the recipe."""
    what = f"family '{cls.family}'" if issubclass(cls, Recipe) else cls.__name__
    specs = {f.name: (f, t, req) for f, t, req in field_specs(cls)}
    for key in raw:
        if key not in specs:
            import difflib

            close = difflib.get_close_matches(str(key), list(specs), n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise RecipeProblem((*at, key), f"unknown key '{key}' for {what}{hint}")
    values: dict[str, Any] = {}
    for name, (f, tp, req) in specs.items():
        if name not in raw or raw[name] is None:
            if req:
                raise RecipeProblem(at, f"missing required key '{name}' ({what})")
            continue
        values[name] = _value(raw[name], tp, (*at, name), f.metadata["kind"], text)
        if req and values[name] == ():  # a required list means at least one entry
            raise RecipeProblem((*at, name), f"needs at least one entry ({what})")
    return cls(**values)


def _value(value: Any, tp: Any, path: tuple[str | int, ...], k: Kind,
           text: Callable[[Any, tuple[str | int, ...], Kind], str]) -> Any:
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return _value(value, args[0], path, k, text)
    if tp is bool:
        if not isinstance(value, bool):
            raise RecipeProblem(path, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool):
            raise RecipeProblem(path, f"expected a number, got {value!r}")
        return int(text(str(value) if isinstance(value, int) else value, path, k))
    if tp is str:
        return text(value, path, k)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise RecipeProblem(path, f"expected a mapping, got {type(value).__name__}")
        return build(tp, value, text, path)
    if origin is tuple:
        if not isinstance(value, list):
            raise RecipeProblem(path, f"expected a list, got {type(value).__name__}")
        return tuple(_value(v, args[0], (*path, i), k, text) for i, v in enumerate(value))
    if origin in (Mapping, dict):
        if not isinstance(value, dict):
            raise RecipeProblem(path, f"expected a mapping, got {type(value).__name__}")
        return MappingProxyType({text(key, (*path, key), WORD): text(v, (*path, key), k)
                                 for key, v in value.items()})
    raise TypeError(f"recipe field type {tp!r} is not supported")  # a programming error
