"""Making the bundle of a stored result: what `imagefactory test` does after saving each
result, and what `imagefactory share` does for an existing one."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import ImagefactoryError
from ..host.facts import SYSTEM, Roots
from ..matrix.loader import Variant
from ..verify.results import TestResult
from . import bundle as bundles

log = logging.getLogger(__name__)


def env_of(variant: Variant | None, profile: str | None) -> dict[str, str]:
    """The environment the test ran under, as the matrix declares it: the variant's env and
    its profile's (never the host's environment)."""
    if variant is None:
        return {}
    env = dict(variant.env)
    try:
        chosen = variant.profile(profile)
    except ImagefactoryError:  # a profile the matrix no longer has: the variant's env only
        chosen = None
    if chosen is not None:
        env.update(chosen.env)
    return env


def make_for(result: TestResult, results_dir: Path, variant: Variant | None, *,
             roots: Roots = SYSTEM, state: Path | None = None) -> dict[str, Any]:
    record = bundles.publish_record(results_dir, result)
    return bundles.make(result, env=env_of(variant, result.profile),
                        subject=bundles.image_subject(result, record), roots=roots,
                        state=state)


def write_beside(result: TestResult, results_dir: Path, variant: Variant | None, *,
                 roots: Roots = SYSTEM, state: Path | None = None) -> Path:
    """<results>/bundles/<variant>.json for the result just saved in `results_dir`."""
    data = make_for(result, results_dir, variant, roots=roots, state=state)
    path = bundles.write(data, bundles.bundle_path(results_dir, result.variant, result.scope))
    log.debug("bundle written: %s", path)
    return path
