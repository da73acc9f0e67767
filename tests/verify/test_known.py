"""Known failures applied to conv check results: known, fixed, regression, ok."""

from __future__ import annotations

import textwrap

from hypothesis import given
from hypothesis import strategies as st

from imagefactory.matrix.loader import parse_matrix
from imagefactory.verify.known import FIXED, KNOWN, OK, REGRESSION, annotate, counts, judge, passes

MATRIX = textwrap.dedent("""\
    repository: imagefactory
    profiles:
      find-fast:
        env: {MIOPEN_FIND_MODE: FAST}
    variants:
      v:
        family: cpu
        description: d
        base: debian:bookworm-slim
        torch: {version: "1.13.1", source: debian}
        profiles: [find-fast]
        recipe: {apt_packages: [python3-torch]}
        known_failures:
          - cases: ["conv2d-*-bwd"]
            reason: backward has no kernel
            source: https://example.org/a
          - cases: ["matmul-*"]
            reason: only with find-fast
            source: https://example.org/b
            profiles: [find-fast]
        expect: {}
    """)
VARIANT = parse_matrix(MATRIX, "variants.yaml", families={"cpu"}).get("v")


def test_each_case_gets_its_verdict() -> None:
    got = judge(VARIANT, [("conv2d-k3-c64-64x64-bwd", "no-kernel"),
                          ("conv2d-k1-c64-64x64-bwd", "ok"),
                          ("conv2d-k3-c64-64x64-fwd", "hang"),
                          ("conv2d-k3-c64-64x64-fwd", "ok"),
                          ("matmul-512-fwd", "no-kernel")])
    assert [v.verdict for v in got] == [KNOWN, FIXED, REGRESSION, OK, REGRESSION]
    assert got[0].known is not None and got[0].known.source == "https://example.org/a"
    assert counts(got) == {OK: 1, FIXED: 1, KNOWN: 1, REGRESSION: 2}
    assert not passes(got)


def test_profile_scoped_known_failure() -> None:
    (v,) = judge(VARIANT, [("matmul-512-fwd", "no-kernel")], profile="find-fast")
    assert v.verdict == KNOWN and v.known is not None and v.known.reason == "only with find-fast"


def test_only_known_failures_pass_and_no_cases_do_not() -> None:
    assert passes(judge(VARIANT, [("conv2d-k3-c64-64x64-bwd", "crash"),
                                  ("conv2d-k3-c64-64x64-fwd", "ok")]))
    assert not passes([])


def test_annotate_adds_verdict_reason_and_source() -> None:
    (v,) = judge(VARIANT, [("conv2d-k3-c64-64x64-bwd", "no-kernel")])
    out = annotate({"case": "conv2d-k3-c64-64x64-bwd", "status": "no-kernel"}, v)
    assert out == {"case": "conv2d-k3-c64-64x64-bwd", "status": "no-kernel",
                   "verdict": KNOWN, "known_reason": "backward has no kernel",
                   "known_source": "https://example.org/a"}


@given(st.lists(st.tuples(st.sampled_from(["conv2d-k3-c64-64x64-bwd", "matmul-512-fwd",
                                           "conv1d-k3-c64-1024-fwd"]),
                          st.sampled_from(["ok", "hang", "no-kernel", "wrong-result"])),
                max_size=8),
       st.sampled_from([None, "find-fast"]))
def test_verdict_follows_status_and_declaration(cases, profile) -> None:
    for (case, status), v in zip(cases, judge(VARIANT, cases, profile), strict=True):
        declared = VARIANT.known_failure(case, profile) is not None
        assert v.verdict == {(True, True): FIXED, (True, False): OK,
                             (False, True): KNOWN, (False, False): REGRESSION}[
            (status == "ok", declared)]
