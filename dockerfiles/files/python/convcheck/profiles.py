"""Env profiles the children run under (a copy of variants.yaml's `profiles:`; a host test
keeps the two in sync, since the image has no YAML parser)."""

from __future__ import annotations

PROFILES: dict[str, dict[str, str]] = {
    "override": {"HSA_OVERRIDE_GFX_VERSION": "10.3.0"},
    "rdna1-tuning": {
        "MIOPEN_DEBUG_CONV_IMPLICIT_GEMM": "0",
        "MIOPEN_DEBUG_CONV_WINOGRAD": "0",
        "MIOPEN_DEBUG_CONV_DIRECT": "0",
    },
    "find-fast": {"MIOPEN_FIND_MODE": "FAST"},
    "im2col": {"IMAGEFACTORY_CONV_IM2COL": "1"},
    "triton-no-buffer-ops": {"AMDGCN_USE_BUFFER_OPS": "0"},
}


def profile_env(spec: str | None) -> dict[str, str]:
    """The env of one profile or of several joined by commas ("override,find-fast")."""
    env: dict[str, str] = {}
    if not spec:
        return env
    for name in (part.strip() for part in spec.split(",")):
        if name not in PROFILES:
            known = ", ".join(sorted(PROFILES))
            raise ValueError(f"unknown profile {name!r} (known: {known})")
        env.update(PROFILES[name])
    return env
