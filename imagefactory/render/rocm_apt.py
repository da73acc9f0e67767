"""Which repo.radeon.com apt distribution ("suite") serves a ROCm release: one rule, here.

AMD's own ROCm/ROCm-docker dev Dockerfiles show the history: `xenial` up to ROCm 4.1
(commit 9e9a8fd, 4.1), `ubuntu` from 4.2 to 5.2 (f01f263, 4.2; 288cb05, the 5.2.3 images:
`apt/$ROCM_VERSION/ ubuntu main`), the Ubuntu codename from 5.3 on (1875cf7 `focal`,
a22917e `jammy`). PyTorch's install_rocm.sh switches at 5.3 the same way.
tests/render/test_apt_suite.py checks the rule against every version of those files.
"""

from __future__ import annotations

import re

from ..errors import ConfigError
from ..matrix.loader import Variant

_RELEASE = re.compile(r"(\d{1,3})\.(\d{1,3})(?:\.\d{1,3})*")


def apt_suite(rocm: str, codename: str) -> str:
    """The distribution of https://repo.radeon.com/rocm/apt/<rocm> for Ubuntu `codename`.

    Raises ValueError for a version that is not numeric (`6.2`, `5.2.3`)."""
    match = _RELEASE.fullmatch(rocm)
    if match is None:
        raise ValueError(f"ROCm version {rocm!r} is not numeric like 5.2.3")
    release = (int(match[1]), int(match[2]))
    if release < (4, 2):
        return "xenial"
    if release < (5, 3):
        return "ubuntu"
    return codename


def apt_suite_for(variant: Variant, config_path: str) -> str:
    """The suite for `variant`'s ROCm apt lines, or "" for a variant without ROCm or without
    an Ubuntu codename in its recipe (it has no repo.radeon.com line)."""
    if variant.rocm is None or "codename" not in variant.recipe:
        return ""
    try:
        return apt_suite(variant.rocm, str(variant.recipe["codename"]))
    except ValueError as exc:
        raise ConfigError(config_path, variant.line, f"variants.{variant.name}.rocm",
                          str(exc)) from None
