"""Hypothesis profiles shared by the fuzz tests (tests/<package>/test_fuzz_*.py).

`ci` (the default) keeps each fuzz test to a few seconds; HYPOTHESIS_PROFILE=long runs
many more examples, e.g. once before a release or after touching an input surface.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow,
                                                       HealthCheck.function_scoped_fixture]}
settings.register_profile("ci", max_examples=60, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("long", max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "5000")),
                          **_COMMON)  # type: ignore[arg-type]
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def examples(ci: int) -> settings:
    """A slower test's own example count under `ci`; the profile's count otherwise."""
    return settings(max_examples=ci) if PROFILE == "ci" else settings()

# Characters that break lines somewhere (Python's splitlines, Docker, terminals) or hide.
NASTY = ["\n", "\r", "\r\n", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029",
         "\x00", "\x1b[31m", "\u202e", "\ufeff", "\\", "`", "$", '"', "'", ";", "&&", "|",
         " ", "\t", "..", "/", "/etc/shadow", "../../../../etc/passwd", "*", "#", "--from=x",
         "COPY", "ADD", "RUN", "<<EOF", "${X}", "\\\n", "é", "\ud7ff"]
