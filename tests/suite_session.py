"""This test session's id, in every name the suite gives to what it creates in the engine
(repositories, registry tags) and in a label on every tracked container, so the session
can find exactly its own leftovers on an engine other sessions share."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

SESSION = uuid.uuid4().hex[:8]


def unique(kind: str) -> str:
    """A repository name of this session: iftest-<session>-<kind>-<random>."""
    return f"iftest-{SESSION}-{kind}-{uuid.uuid4().hex[:6]}"


def _cpu_config() -> Path:
    """The repository's variants.yaml under this session's repository name: the suite's cpu
    image is `iftest-<session>-cpu:cpu`, which no other session can move (the shared
    `imagefactory:cpu` tag can be, by any other build of the cpu variant)."""
    repo = Path(__file__).resolve().parent.parent
    text = (repo / "variants.yaml").read_text()
    assert "\nrepository: imagefactory\n" in text
    path = Path(tempfile.gettempdir()) / f"iftest-{SESSION}" / "variants.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace("\nrepository: imagefactory\n",
                                 f"\nrepository: iftest-{SESSION}-cpu\n"))
    return path


CPU_CONFIG = _cpu_config()
