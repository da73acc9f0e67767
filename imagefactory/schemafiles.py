"""The published JSON Schemas under schemas/: which document each file holds.

`python -m imagefactory.schemafiles` rewrites them; the tests fail while a committed file
differs from what its owner renders (tests/matrix/test_variants_schema.py, the bundle and
compatibility tests, tests/verify/test_result_schema.py for the test result and the publish
record).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .matrix.schema import schema_document as variants_schema
from .report.merge import schema_document as compatibility_schema
from .safety import json_dumps
from .share.reader import schema_document as bundle_schema
from .share.record import schema_document as record_schema
from .verify.results import schema_document as result_schema

FILES: dict[str, Callable[[], dict[str, Any]]] = {
    "variants.schema.json": variants_schema,
    "result-bundle.v1.json": bundle_schema,
    "compatibility.v1.json": compatibility_schema,
    "test-result.v1.json": result_schema,
    "publish-record.v1.json": record_schema,
}


def text(name: str) -> str:
    """The exact text of schemas/`name`."""
    return json_dumps(FILES[name](), indent=2) + "\n"


def write(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in FILES:
        (out / name).write_text(text(name))
        written.append(out / name)
    return written


if __name__ == "__main__":  # pragma: no cover - a maintainer's tool; its output is tested
    for path in write(Path("schemas")):
        print(f"written: {path}")
