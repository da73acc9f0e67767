"""The result of `imagefactory test` for one variant: `<results dir>/<variant>.json`.

`push` gates on it and `report` builds the compatibility matrix from it, so the fields they
read (`variant`, `image_id`, `passed`, `conv[].case/status/seconds`, `host`, `profile`) are a
contract: add fields freely, never rename or drop these. `schema` counts breaking changes.

Reading is strict (a result file may come from anywhere): the file is a bounded regular
file, JSON without NaN/Infinity, `schema` must be the one this version writes, and every
field this code declares is checked by RESULT, the schema.py node derived from the
dataclasses' annotations (`passed` is a JSON true or false, never "false") with the shared
patterns of schema.py for the names, GPU targets, image id and statuses. The published
schema, schemas/test-result.v1.json, is rendered from the same node. Fields this version
does not know are ignored, so a newer writer can add optional fields without breaking older
readers; declare a new field here with its type and it is checked from then on.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from convcheck.vocabulary import KNOWN, OK, PASSING

from .. import schema as s
from ..errors import JobError
from ..safety import (
    MAX_RESULT_BYTES,
    escape_control,
    json_dumps,
    json_loads,
    read_text,
    write_atomic,
)

SCHEMA = 1
# The statuses a passing case has: convcheck's own words (convcheck/vocabulary.py).
PASSING_STATUSES = PASSING
_MAX_ITEMS = 100_000
_MAX_TEXT = 65_536
SCHEMA_ID = "https://github.com/imagefactory/imagefactory/schemas/test-result.v1.json"


class ResultError(ValueError):
    """A result that does not follow the schema: the field and what is wrong."""

    def __init__(self, field_: str, message: str) -> None:
        super().__init__(f"{field_}: {message}" if field_ else message)
        self.field = field_


@dataclass(frozen=True)
class Check:
    """One testinfra check (or a setup step such as starting the container)."""

    name: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class ConvCase:
    """One conv check case as convcheck reports it; `status` is a convcheck class (ok, hang,
    aperture-violation, memory-fault, no-kernel, invalid-isa, miopen-error, crash,
    wrong-result; since issue 16 also skipped, gpu-hang, illegal-instruction, gpu-exception,
    out-of-memory, not-run; since issue 27 compile-error) or `error` when the case could not
    run at all."""

    case: str
    status: str
    seconds: float | None = None
    gflops: float | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    detail: str = ""
    # Against the variant's known_failures (verify/known.py): ok | fixed | known | regression;
    # empty in results written before known failures existed. Declared here so their types
    # are checked when read.
    verdict: str = ""
    known_reason: str = ""
    known_source: str = ""
    compile_seconds: float | None = None  # first call minus a steady one: kernel builds, Find
    run_seconds: float | None = None  # one steady-state call
    area: str = ""  # what it tells users: convolutions, fp16, attention... (convcheck AREAS)
    dtype: str = "float32"
    budget_extended: float = 0.0  # seconds added because it was still busy at its timeout

    @property
    def ok(self) -> bool:
        """Passed: ok, or skipped (a feature this image's torch does not have)."""
        return self.status in PASSING_STATUSES

    @property
    def agrees_with_pass(self) -> bool:
        """A case a passing result may contain: ran fine, skipped (a feature this torch
        lacks), or failed exactly as the variant declares (a known failure)."""
        return self.status in PASSING_STATUSES or (self.verdict == KNOWN and self.status
                                                   != OK)

    @property
    def known(self) -> bool:
        """Failed, as the variant declares it does."""
        return not self.ok and self.verdict == KNOWN

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConvCase:
        """Strict: raises ResultError naming the field (convcheck's JSON is untrusted; its
        status is checked where a stored result is read)."""
        return typing.cast(ConvCase, _read(_CONVCHECK_CASE, data))


@dataclass(frozen=True)
class TestResult:
    """Everything one `imagefactory test VARIANT` run found out."""

    __test__ = False  # not a pytest test class, despite the name

    variant: str
    image_id: str
    passed: bool
    checks: tuple[Check, ...]
    conv: tuple[ConvCase, ...]
    host: str | None  # GPU arch of the host (gfx1010...), None when there is no AMD GPU
    profile: str | None
    image_tag: str = ""
    inputs_hash: str | None = None
    device: str = "cpu"  # what the conv check ran on: cpu | cuda (ROCm's torch device name)
    devices: tuple[str, ...] = ()  # HOST:CONTAINER mappings passed to the container
    quick: bool = False
    # full: every case of the check; quick: --quick; subset: --cases. Only a full run is
    # stored as <variant>.json (what push gates on); the others go beside it.
    scope: str = "full"
    torch: str | None = None  # as the image reports it (conv check JSON)
    declared_torch: str | None = None  # as variants.yaml declares it; shown when it differs
    hip: str | None = None
    # The ROCm release as the image reports it (verify/manifest.py rocm_release: /opt/rocm,
    # else Debian's HIP runtime package, else TheRock's wheels); None for a CPU image, one
    # that says none, or a result written before this field.
    rocm: str | None = None
    gpu: str | None = None  # the GPU torch saw, if any
    conv_summary: Mapping[str, int] = field(default_factory=dict)
    conv_verdicts: Mapping[str, int] = field(default_factory=dict)  # ok/fixed/known/regression
    started_at: str = ""  # ISO 8601, UTC
    finished_at: str = ""
    seconds: float = 0.0  # the whole run
    suite_seconds: float = 0.0  # the testinfra suite
    conv_seconds: float = 0.0  # the conv check, as seen from the host
    # convcheck's "what works" per area: {area: {verdict, ok, failed, unchecked, classes}}
    conv_works: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    gpu_reset: str | None = None  # convcheck's line when a GPU reset stopped the run
    miopen_cache: str | None = None  # the volume holding MIOpen's caches between runs
    cold: bool = False  # that volume was emptied before this run
    # The GPU code audit (verify/gpucode): {"inventory": Inventory.brief(), "check":
    # CodeCheck.to_dict(), "seconds": ...}; None for a CPU variant or an older result.
    gpu_code: Mapping[str, Any] | None = None
    schema: int = SCHEMA

    @property
    def failed_checks(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)

    @property
    def failed_cases(self) -> tuple[ConvCase, ...]:
        return tuple(c for c in self.conv if not c.ok)

    @property
    def regressions(self) -> tuple[ConvCase, ...]:
        """Failed cases no known failure covers."""
        return tuple(c for c in self.conv if not c.ok and not c.known)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["checks"] = [asdict(c) for c in self.checks]
        out["conv"] = [asdict(c) for c in self.conv]
        out["devices"] = list(self.devices)
        out["conv_summary"] = dict(self.conv_summary)
        out["conv_verdicts"] = dict(self.conv_verdicts)
        out["conv_works"] = {k: dict(v) for k, v in self.conv_works.items()}
        return out

    def to_json(self) -> str:
        return json_dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> TestResult:
        """Strict: raises ResultError naming the field."""
        if not isinstance(data, dict):
            raise ResultError("", f"expected a JSON object, got {_json_kind(data)}")
        schema = data.get("schema")
        if type(schema) is not int:
            raise ResultError("schema", f"expected the number {SCHEMA}, got "
                                        f"{_json_kind(schema)}")
        if schema != SCHEMA:
            raise ResultError("schema", f"version {schema} is not supported (this "
                                        f"imagefactory reads version {SCHEMA})")
        if "scope" not in data and data.get("quick") is True:
            # Written before `scope` existed: a --quick run said only `quick: true`, and
            # must not read as the full check.
            data = {**data, "scope": "quick"}
        return typing.cast(TestResult, _read(RESULT, data))

    @classmethod
    def from_json(cls, text: str) -> TestResult:
        return cls.from_dict(json_loads(text))

    @classmethod
    def load(cls, results_dir: Path, variant: str, scope: str = "full") -> TestResult | None:
        """The stored result of `variant` (of its full run unless `scope` says otherwise),
        or None when there is none."""
        return cls.load_path(result_path(results_dir, variant, scope), variant)

    @classmethod
    def load_path(cls, path: Path, variant: str | None = None, *,
                  check_variant: bool = True) -> TestResult | None:
        """The result in `path` (None when there is none), else one-line JobError. With
        `variant`, errors say to test it again and, unless check_variant is False (the
        publish gate checks it as a rule of its own), a result of another variant is one."""
        if not os.path.lexists(path):
            return None
        again = f"; run `imagefactory test {variant}` again" if variant else ""
        text = read_text(path, MAX_RESULT_BYTES, error=JobError)
        try:
            data = json_loads(text)
        except ValueError as exc:
            line = getattr(exc, "lineno", None)
            where = f"{path}:{line}" if line else str(path)
            msg = getattr(exc, "msg", str(exc))
            raise JobError(escape_control(f"{where}: not JSON ({msg}){again}")) from None
        except RecursionError:
            raise JobError(escape_control(f"{path}: nested too deeply{again}")) from None
        try:
            result = cls.from_dict(data)
        except ResultError as exc:
            raise JobError(escape_control(f"{path}: not a test result: {exc}{again}")
                           ) from None
        if variant is not None and check_variant and result.variant != variant:
            raise JobError(escape_control(f"{path}: holds the result of variant "
                                          f"'{result.variant}', not '{variant}'{again}"))
        return result

    def save(self, results_dir: Path) -> Path:
        """Write atomically, so a reader (push, report) never sees half a file."""
        return write_atomic(result_path(results_dir, self.variant, self.scope), self.to_json(),
                            error=JobError)


def profile_label(name: str | None) -> str:
    """How a result's profile is named to people: the test's output and the report agree."""
    return name or "none"


SCOPES = ("full", "quick", "subset")


def result_path(results_dir: Path, variant: str, scope: str = "full") -> Path:
    """<variant>.json for a full run; <variant>.quick.json / .subset.json beside it, so a
    quick run never replaces the full result that push relies on."""
    if scope not in SCOPES:
        raise ValueError(f"unknown result scope {scope!r}")
    return results_dir / (f"{variant}.json" if scope == "full" else f"{variant}.{scope}.json")


def stored_results(results_dir: Path) -> list[tuple[Path, str, str]]:
    """(path, variant, scope) of every result file in `results_dir`, the full run of a
    variant only when it has one (a quick or subset run stands in for a variant never run in
    full). Push records and a report written into the folder are not results."""
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(results_dir.glob("*.json")):
        name = path.name[: -len(".json")]
        if name.endswith(".publish") or name == "compatibility":
            continue
        variant, _, scope = name.rpartition(".")
        if not variant or scope not in SCOPES[1:]:
            variant, scope = name, "full"
        found.setdefault(variant, {})[scope] = path
    out = []
    for variant, by_scope in found.items():
        scope = next(s for s in SCOPES if s in by_scope)
        out.append((by_scope[scope], variant, scope))
    return out


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _read(node: s.Node, data: Any) -> Any:
    try:
        return node.check(data, "")
    except s.SchemaError as exc:
        raise ResultError(exc.where, exc.message) from None


# --- the shape of a stored result, derived from the dataclasses above --------------------


def _node(tp: Any) -> s.Node:
    """The node of one annotation: what the JSON value must be, and what it reads as."""
    if tp is Any:  # a free-form JSON value (already parsed strictly: no NaN, bounded size)
        return s.Any_()
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(tp) if o is not type(None)]
        return s.Opt(_node(options[0]))
    if tp is bool:
        return s.Bool()
    if tp is int:
        return s.Int()
    if tp is float:
        return s.Make(s.Num(), float)
    if tp is str:  # free text: escaped where it is printed
        return s.Str(_MAX_TEXT, controls=True)
    if origin is tuple:
        (item,) = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return s.Make(s.Arr(_node(item), _MAX_ITEMS), tuple)
    if origin in (Mapping, dict):
        _, vt = typing.get_args(tp)
        return s.Map(_node(vt), key=None, max=_MAX_ITEMS)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _shape(tp)
    raise TypeError(f"unsupported result field type {tp!r}")  # a programming error


def _shape(cls: type, overrides: Mapping[str, s.Node] | None = None,
           required: tuple[str, ...] = ()) -> s.Node:
    """A `cls` dataclass from a JSON object: each declared field checked against its
    annotation (or its override); unknown keys ignored; fields with defaults optional."""
    hints = typing.get_type_hints(cls)
    needed: dict[str, s.Node] = {}
    optional: dict[str, s.Node] = {}
    for f in fields(cls):
        node = (overrides or {}).get(f.name) or _node(hints[f.name])
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        (needed if missing or f.name in required else optional)[f.name] = node
    return s.Make(s.Obj(needed, optional, extra=True), lambda values: cls(**values))


def _named(pattern: str, max_: int, what: str) -> s.Str:
    # Names that end up in tags, file names and terminal lines have their shape checked.
    return s.Str(max_, pattern, message="{value!r} is not a valid " + what)


_CONVCHECK_CASE = _shape(ConvCase)
RESULT = _shape(TestResult, {
    "schema": s.Enum((SCHEMA,)),  # from_dict says which version it reads first
    "variant": _named(s.VARIANT_NAME, 63, "variant"),
    "image_id": s.Str(71, s.DIGEST, message="expected sha256:<64 hex digits>"),
    "profile": s.Opt(_named(s.NAME, 63, "profile")),
    "host": s.Opt(_named(s.GFX, 8, "host")),
    "scope": s.Str(8, "|".join(SCOPES), message=f"expected one of {', '.join(SCOPES)}"),
    "conv": s.Make(s.Arr(_shape(ConvCase, {
        "status": s.Str(40, s.STATUS, message="{value!r} is not a status (lowercase-words)"),
    }), _MAX_ITEMS), tuple),
}, required=("schema",))


def schema_document() -> dict[str, Any]:
    return s.document(RESULT, SCHEMA_ID, f"imagefactory test result, schema {SCHEMA}",
                      "What one `imagefactory test VARIANT` run found out, as stored in "
                      "<results>/<variant>.json (.quick.json, .subset.json): what `push` "
                      "gates on and `report` reads. Fields this schema does not name are "
                      "allowed (a newer writer's) and ignored.")
