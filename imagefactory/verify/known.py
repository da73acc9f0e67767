"""Known failures (variants.yaml `known_failures`) applied to conv check results.

Every case gets a verdict besides its class (status):
  ok          ran and matched, as expected
  fixed       ran and matched, although the variant declares it a known failure
  known       failed, and the variant declares it a known failure (with reason and source)
  regression  failed, and nothing declares it: the failures that fail a run
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from convcheck.vocabulary import FIXED, KNOWN, OK, PASSING, REGRESSION, VERDICTS

from ..matrix.loader import KnownFailure, Variant

# The verdicts (with what each means) and the passing classes are convcheck's words
# (convcheck/vocabulary.py), shared with the report and the gate.


@dataclass(frozen=True)
class Verdict:
    case: str
    verdict: str
    known: KnownFailure | None = None


def verdict(status: str, known: KnownFailure | None) -> str:
    if status in PASSING:
        return FIXED if known and status == "ok" else OK
    return KNOWN if known else REGRESSION


def judge(variant: Variant, cases: Iterable[tuple[str, str]],
          profile: str | None = None) -> list[Verdict]:
    """(case id, status) pairs -> verdicts, in order."""
    out = []
    for case, status in cases:
        known = variant.known_failure(case, profile)
        out.append(Verdict(case, verdict(status, known), known))
    return out


def counts(verdicts: Iterable[Verdict]) -> dict[str, int]:
    c = Counter(v.verdict for v in verdicts)
    return {k: c[k] for k in VERDICTS if c[k]}


def passes(verdicts: Iterable[Verdict]) -> bool:
    """A conv check passes when it ran cases and none of them regressed."""
    seen = list(verdicts)
    return bool(seen) and all(v.verdict != REGRESSION for v in seen)


def annotate(case: Mapping[str, object], v: Verdict) -> dict[str, object]:
    """The result-JSON form of a case: its fields plus verdict and, when declared, the
    known failure's reason and source."""
    out = dict(case)
    out["verdict"] = v.verdict
    out["known_reason"] = v.known.reason if v.known else ""
    out["known_source"] = v.known.source if v.known else ""
    return out
