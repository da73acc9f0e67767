"""What a test does when something it needs is missing: skip, or fail where the run must
prove it (IMAGEFACTORY_REQUIRE_DOCKER=1, which scripts/test.sh and so CI set: a missing
engine, socat or buildx plugin there is a broken set-up, not a reason to skip half the
suite)."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_ENV = "IMAGEFACTORY_REQUIRE_DOCKER"


def required() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


def missing(why: str) -> NoReturn:
    """Skip with `why`, or fail with it under IMAGEFACTORY_REQUIRE_DOCKER=1."""
    if required():
        pytest.fail(f"{why}; {REQUIRE_ENV}=1 (scripts/test.sh) requires it: "
                    "run scripts/setup-test-env.sh")
    pytest.skip(why)
