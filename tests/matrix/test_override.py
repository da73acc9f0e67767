"""Whether a variant runs under the gfx1030 override is decided once (Variant.override,
matrix/loader.py, #26); `run`'s pick, doctor's ranking and the GPU code check read it."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagefactory.doctor.run import recommend
from imagefactory.host.gpuinfo import Gpu
from imagefactory.matrix.loader import OVERRIDE_KEY, Matrix, override_in, parse_matrix
from imagefactory.verify.gpucode.check import runtime_isas

MATRIX = textwrap.dedent("""\
    repository: x
    profiles:
      override: {env: {HSA_OVERRIDE_GFX_VERSION: "10.3.0"}}
      tuning: {env: {MIOPEN_FIND_MODE: FAST}}
      unset: {env: {HSA_OVERRIDE_GFX_VERSION: ""}}
    variants:
      common:
        abstract: true
        family: rocm-wheel
        base: ubuntu:20.04
        rocm: "5.2.3"
        gfx_targets: [gfx1010]
        torch: {version: "1.13.1", source: wheel, index: https://download.pytorch.org/whl/rocm5.2}
        recipe: {wheel_tag: rocm5.2}
        expect: {}
      by-default: {extends: common, description: d, profiles: [override, tuning, unset],
                   default_profile: override}
      offered: {extends: common, description: d, profiles: [tuning, override]}
      in-env: {extends: common, description: d, profiles: [tuning],
               env: {HSA_OVERRIDE_GFX_VERSION: "10.3.0"}}
      native: {extends: common, description: d, profiles: [tuning]}
    """)


@pytest.fixture(scope="module")
def matrix() -> Matrix:
    return parse_matrix(MATRIX, "m.yaml")


def test_the_decision(matrix: Matrix) -> None:
    v = matrix.get
    assert v("by-default").override() == "10.3.0" and v("by-default").uses_override()
    assert not v("by-default").uses_override("tuning")  # a profile replaces the default
    assert not v("by-default").uses_override("unset")  # set but empty: not an override
    assert not v("offered").uses_override() and v("offered").uses_override("override")
    assert v("offered").offers_override and not v("native").offers_override
    assert v("in-env").uses_override("tuning")  # the variant's own env, under any profile
    assert v("in-env").offers_override


def test_the_callers_read_the_same_decision(matrix: Matrix) -> None:
    for variant in matrix.variants:
        for profile in (None, *(p.name for p in variant.profiles)):
            env = variant.runtime_env(profile)
            assert override_in(env) == variant.override(profile)
            # the GPU code check runs the code as gfx1030 exactly when the override is on
            isas = runtime_isas(variant.gfx_targets, env)
            assert (isas == ("gfx1030",)) == variant.uses_override(profile), (variant.name,
                                                                              profile)
    # doctor: for an RDNA1 card, an image run under the override is said to be, and ranks
    # after those with native code
    recs = recommend(matrix, [Gpu(node=1, arch="gfx1010", device_id=0x731F, render_minor=128)])
    said = {r.variant: r.reason for r in recs}
    assert "through the `override` profile" in said["by-default"]
    assert "through the `override` profile" in said["in-env"]
    assert "no override" in said["native"] and "no override" in said["offered"]
    order = [r.variant for r in recs]
    assert order.index("native") < order.index("by-default")


@given(st.dictionaries(st.sampled_from([OVERRIDE_KEY, "X", "HSA"]),
                       st.sampled_from(["", "10.3.0", "9.0.0"])))
def test_override_in_is_set_and_not_empty(env: dict[str, str]) -> None:
    assert override_in(env) == (env.get(OVERRIDE_KEY) or None)
