"""The publish gate, as a whitelist: an image is published only when every rule below holds.

Nothing a result file says is taken on trust. The file is read strictly (verify/results.py:
typed fields, no duplicate keys, no NaN), and then each rule compares it with what is known
without it: the image the engine holds, the inputs hash the matrix renders *now*, the
variant's default profile and its declared known failures as variants.yaml says them today.
A verdict stored in the file (`"verdict": "known"`) is never read: whether a failed case is a
known failure is decided again from the matrix.

A rule is a name and a function that returns the problem (a phrase) or None. They run in
order and the first problem refuses the image; later rules may rely on earlier ones (most
need a result at all). `RULES` is the whole of the condition: adding a way to publish means
adding it here, where the tests enumerate it (tests/publish/test_gate_rules.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..engine.images import BuiltImage
from ..matrix.loader import Variant
from ..verify.results import PASSING_STATUSES, TestResult, profile_label


@dataclass(frozen=True)
class Evidence:
    """What the gate weighs for one variant, gathered before any rule runs."""

    variant: Variant
    built: BuiltImage
    rendered_hash: str  # the inputs hash of the variant as the matrix declares it now
    result: TestResult | None
    path: Path  # the result file read (or looked for)
    partial: str | None = None  # "quick"/"subset": the scope of a lesser result on disk
    allow_quick: bool = False


Check = Callable[[Evidence], str | None]


@dataclass(frozen=True)
class Rule:
    name: str
    check: Check


def _has_result(e: Evidence) -> str | None:
    if e.result is not None:
        return None
    if e.partial:
        return (f"image {e.built.short_id} has only a {e.partial} test result; run the full "
                "check first, or push with --allow-quick")
    return f"image {e.built.short_id} has no test result ({e.path} does not exist)"


def _of_this_variant(e: Evidence) -> str | None:
    assert e.result is not None
    if e.result.variant != e.variant.name:
        return f"{e.path} holds the result of variant '{e.result.variant}'"
    return None


def _of_this_image(e: Evidence) -> str | None:
    assert e.result is not None
    if e.result.image_id != e.built.image_id:
        tested = e.result.image_id.removeprefix("sha256:")[:12] or "?"
        return (f"{e.path} is for image {tested}, not the current image {e.built.short_id} "
                "(rebuilt since it was tested)")
    return None


def _built_from_the_matrix_now(e: Evidence) -> str | None:
    if e.built.inputs_hash != e.rendered_hash:
        return (f"image {e.built.short_id} was built from inputs {_short(e.built.inputs_hash)},"
                f" but variants.yaml and the templates now give {_short(e.rendered_hash)}; "
                f"rebuild it")
    return None


def _tested_those_inputs(e: Evidence) -> str | None:
    assert e.result is not None
    if e.result.inputs_hash != e.built.inputs_hash:
        return (f"{e.path} was tested with inputs {_short(e.result.inputs_hash)}, the image "
                f"has {_short(e.built.inputs_hash)}")
    return None


def _full_scope(e: Evidence) -> str | None:
    assert e.result is not None
    if e.result.scope == "full" and not e.result.quick:
        return None
    if e.allow_quick and e.result.scope in ("quick", "subset"):
        return None
    return f"{e.path} holds a {e.result.scope} run, not the full check (or --allow-quick)"


def _default_profile(e: Evidence) -> str | None:
    assert e.result is not None
    want = e.variant.default_profile.name if e.variant.default_profile else None
    if e.result.profile != want:
        return (f"{e.path} was tested under profile {profile_label(e.result.profile)}, the "
                f"variant's default is {profile_label(want)}: a published image is tested "
                "as users run it")
    return None


def _says_passed(e: Evidence) -> str | None:
    assert e.result is not None
    if e.result.passed is not True:
        return f"image {e.built.short_id} failed its tests{_list(_failures(e))}"
    return None


def _checks_all_passed(e: Evidence) -> str | None:
    assert e.result is not None
    if not e.result.checks:
        return f"{e.path} says passed but holds no checks"
    failed = [c.name for c in e.result.checks if not c.passed]
    if failed:
        return f"{e.path} says passed, but {len(failed)} check(s) in it failed{_list(failed)}"
    return None


def _cases_present_and_unique(e: Evidence) -> str | None:
    assert e.result is not None
    if not e.result.conv:
        return f"{e.path} says passed but holds no conv check cases"
    seen: set[str] = set()
    for c in e.result.conv:
        if c.case in seen:
            return f"{e.path} lists conv case {c.case!r} twice"
        seen.add(c.case)
    return None


def _cases_pass_or_are_declared(e: Evidence) -> str | None:
    assert e.result is not None
    bad = _failures(e, cases_only=True)
    if bad:
        return (f"{e.path} says passed, but {len(bad)} case(s) in it failed and variants.yaml "
                f"declares no known failure for them{_list(bad)}")
    return None


# What the image reported goes into the descriptive tag (identity.publish_tags): a version
# only (PEP 440 with a local part for torch, like 2.5.1+rocm6.2; TheRock's 7.15.0a20260712
# for ROCm), never a '-' that could make one variant's tag read as another's.
_TORCH_VERSION = re.compile(r"[0-9][0-9A-Za-z.+]{0,63}")
_ROCM_VERSION = re.compile(r"[0-9][0-9A-Za-z.]{0,31}")


def _reported_versions_are_versions(e: Evidence) -> str | None:
    assert e.result is not None
    for what, value, pattern in (("torch", e.result.torch, _TORCH_VERSION),
                                 ("rocm", e.result.rocm, _ROCM_VERSION)):
        if value is not None and not pattern.fullmatch(value):
            return f"{e.path} reports {what} {value[:40]!r}, which is not a version"
    return None


RULES: tuple[Rule, ...] = (
    Rule("result-exists", _has_result),
    Rule("same-variant", _of_this_variant),
    Rule("same-image", _of_this_image),
    Rule("built-from-current-matrix", _built_from_the_matrix_now),
    Rule("tested-same-inputs", _tested_those_inputs),
    Rule("full-scope", _full_scope),
    Rule("default-profile", _default_profile),
    Rule("passed", _says_passed),
    Rule("checks-passed", _checks_all_passed),
    Rule("cases-present", _cases_present_and_unique),
    Rule("cases-pass-or-declared", _cases_pass_or_are_declared),
    Rule("reported-versions", _reported_versions_are_versions),
)


def first_problem(e: Evidence) -> tuple[str, str] | None:
    """(rule name, problem) of the first rule that does not hold, or None: publishable."""
    for rule in RULES:
        problem = rule.check(e)
        if problem is not None:
            return rule.name, problem
    return None


def case_passes(variant: Variant, profile: str | None, case: str, status: str) -> bool:
    """A case a passing result may hold: ok, skipped (a feature this torch lacks), or failed
    as variants.yaml declares today under the profile it ran with."""
    return status in PASSING_STATUSES or variant.known_failure(case, profile) is not None


def _failures(e: Evidence, cases_only: bool = False) -> list[str]:
    assert e.result is not None
    out = [] if cases_only else [c.name for c in e.result.checks if not c.passed]
    out += [f"conv {c.case}: {c.status}" for c in e.result.conv
            if not case_passes(e.variant, e.result.profile, c.case, c.status)]
    return out


def _list(items: list[str]) -> str:
    if not items:
        return ""
    return f" ({', '.join(items[:3])}{', ...' if len(items) > 3 else ''})"


def _short(inputs_hash: str | None) -> str:
    return inputs_hash[:12] if inputs_hash else "(none)"
