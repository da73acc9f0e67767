"""This test session's id, in every name the suite gives to what it creates in the engine
(repositories, registry tags) and in a label on every tracked container, so the session
can find exactly its own leftovers on an engine other sessions share."""

from __future__ import annotations

import uuid

SESSION = uuid.uuid4().hex[:8]


def unique(kind: str) -> str:
    """A repository name of this session: iftest-<session>-<kind>-<random>."""
    return f"iftest-{SESSION}-{kind}-{uuid.uuid4().hex[:6]}"
