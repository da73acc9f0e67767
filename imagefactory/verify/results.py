"""The result of `imagefactory test` for one variant: `<results dir>/<variant>.json`.

`push` gates on it and `report` builds the compatibility matrix from it, so the fields they
read (`variant`, `image_id`, `passed`, `conv[].case/status/seconds`, `host`, `profile`) are a
contract: add fields freely, never rename or drop these. `schema` counts breaking changes.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import JobError

SCHEMA = 1
DEFAULT_RESULTS_DIR = Path("results")


@dataclass(frozen=True)
class Check:
    """One testinfra check (or a setup step such as starting the container)."""

    name: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class ConvCase:
    """One conv check case as convcheck reports it; `status` is a design.md class (ok, hang,
    aperture-violation, memory-fault, no-kernel, invalid-isa, miopen-error, crash,
    wrong-result; since issue 16 also skipped, gpu-hang, illegal-instruction, gpu-exception,
    out-of-memory, not-run) or `error` when the case could not run at all."""

    case: str
    status: str
    seconds: float | None = None
    gflops: float | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    detail: str = ""
    # Against the variant's known_failures (verify/known.py): ok | fixed | known | regression;
    # empty in results written before known failures existed.
    verdict: str = ""
    known_reason: str = ""
    known_source: str = ""
    area: str = ""  # what it tells users: convolutions, fp16, attention... (convcheck AREAS)
    dtype: str = "float32"
    compile_seconds: float | None = None  # first call minus a steady one: kernel builds, Find
    run_seconds: float | None = None  # one steady-state call
    budget_extended: float = 0.0  # seconds added because it was still busy at its timeout

    @property
    def ok(self) -> bool:
        """Passed: ok, or skipped (a feature this image's torch does not have)."""
        return self.status in ("ok", "skipped")

    @property
    def known(self) -> bool:
        """Failed, as the variant declares it does."""
        return not self.ok and self.verdict == "known"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConvCase:
        return cls(**_pick(cls, data))


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
    hip: str | None = None
    gpu: str | None = None  # the GPU torch saw, if any
    conv_summary: Mapping[str, int] = field(default_factory=dict)
    conv_verdicts: Mapping[str, int] = field(default_factory=dict)  # ok/fixed/known/regression
    started_at: str = ""  # ISO 8601, UTC
    finished_at: str = ""
    seconds: float = 0.0  # the whole run
    suite_seconds: float = 0.0  # the testinfra suite
    conv_seconds: float = 0.0  # the conv check, as seen from the host
    # convcheck's "what works" per area: {area: {verdict, ok, failed, unchecked, classes}}
    conv_works: Mapping[str, Any] = field(default_factory=dict)
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
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestResult:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}  # newer writers may add fields
        values["checks"] = tuple(Check(**_pick(Check, c)) for c in data.get("checks", ()))
        values["conv"] = tuple(ConvCase.from_dict(c) for c in data.get("conv", ()))
        values["devices"] = tuple(data.get("devices", ()))
        values["conv_summary"] = dict(data.get("conv_summary") or {})
        values["conv_verdicts"] = dict(data.get("conv_verdicts") or {})
        works = data.get("conv_works")
        values["conv_works"] = {str(k): dict(v) for k, v in works.items()
                                if isinstance(v, Mapping)} if isinstance(works, Mapping) else {}
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> TestResult:
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, results_dir: Path, variant: str, scope: str = "full") -> TestResult | None:
        """The stored result of `variant` (of its full run unless `scope` says otherwise),
        or None when there is none."""
        path = result_path(results_dir, variant, scope)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise JobError(f"cannot read {path}: {exc.strerror}") from None
        try:
            return cls.from_json(text)
        except (ValueError, TypeError, KeyError) as exc:
            raise JobError(f"{path}: not a test result ({exc}); "
                           f"run `imagefactory test {variant}` again") from None

    def save(self, results_dir: Path) -> Path:
        """Write atomically, so a reader (push, report) never sees half a file."""
        results_dir.mkdir(parents=True, exist_ok=True)
        path = result_path(results_dir, self.variant, self.scope)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.variant}.", suffix=".json", dir=results_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.to_json())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


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


def _pick(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    known = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in known}
