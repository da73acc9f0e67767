"""The publish record, `<results>/<variant>.publish.json`: what `push` published (the
verified `repository@digest`) and from which tested image.

publish/publisher.py writes it; three readers take it: the bundle's subject
(share/bundle.py), the report's published digests (report/merge.py) and a failed push
marking the last record stale (publisher.py). It is described once here, RECORD, in the
lowest layer those readers share (share < report, publish), and schemas/publish-record.v1.json
is rendered from it. Reading is strict as the test result's is: a bounded regular file,
strict JSON, then every field this version names is checked against RECORD, with
schema.py's shared patterns (variant name, digests, tags, repository). Fields it does not
name are carried along (a newer writer's). Only `variant` and `digest` are required: a
record without the rest (an older or a hand-written one) still says what was published,
and a reader that needs more (the bundle: repository and image id) asks for it.

Free text copied from the test result (versions, times) is bounded as the result's reader
bounds it (verify/results.py), so every record written from a result reads back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import JobError
from ..reference import NAME as REPOSITORY_NAME
from ..reference import TAG
from ..safety import MAX_RESULT_BYTES, escape_control, json_loads, read_text
from ..schema import (
    DIGEST,
    GFX,
    NAME,
    SHA256,
    VARIANT_NAME,
    Arr,
    Bool,
    Int,
    Map,
    Node,
    Obj,
    Opt,
    SchemaError,
    Str,
    document,
)

SCHEMA_ID = "https://github.com/imagefactory/imagefactory/schemas/publish-record.v1.json"
SUFFIX = ".publish.json"
_TEXT = Str(65_536, controls=True)  # verify/results.py's bound on a result's free text
_VERSION = Opt(_TEXT)

# publisher.summary: the part of the test result a reader of the record needs.
SUMMARY = Obj({}, {
    "passed": Bool(),
    "image_id": Str(71, DIGEST),
    "host": Opt(Str(8, GFX)),
    "profile": Opt(Str(63, NAME)),
    "device": _TEXT,
    "quick": Bool(),
    "checks": Obj({}, {"total": Int(), "failed": Int()}, extra=True),
    "conv": Map(Int(), key=None, max=100_000),
    "started_at": _TEXT,
    "finished_at": _TEXT,
}, extra=True)

RECORD: Node = Obj({
    "variant": Str(63, VARIANT_NAME),
    "digest": Str(71, DIGEST),
}, {
    "repository": Str(255, REPOSITORY_NAME),
    "registry": Str(255),
    "tags": Arr(Str(128, TAG), 100),
    "reference": Str(400, rf"(?:{REPOSITORY_NAME})@{DIGEST}"),
    "image_id": Str(71, DIGEST),
    "inputs_hash": Opt(Str(64, SHA256)),
    "image_version": _TEXT,
    "torch_declared": _VERSION,
    "torch_reported": _VERSION,
    "rocm_declared": _VERSION,
    "rocm_reported": _VERSION,
    "tests_skipped": Bool(),
    "test": Opt(SUMMARY),
    "layers": Map(Obj({}, {"uploaded": Int(), "reused": Int()}, extra=True), key=TAG, max=100),
    "pushed_at": _TEXT,
    "imagefactory": _TEXT,
    "note": _TEXT,
    # publisher._mark_stale: a later push of another image failed
    "stale": Bool(),
    "stale_since": _TEXT,
    "stale_reason": _TEXT,
}, extra=True)


@dataclass(frozen=True)
class PublishRecord:
    """A record that passed RECORD: the fields its readers use, and the whole document (to
    rewrite it with what this version does not name kept)."""

    variant: str
    digest: str
    repository: str | None = None
    image_id: str | None = None
    tags: tuple[str, ...] = ()
    stale: bool = False
    data: Mapping[str, Any] = field(default_factory=dict, compare=False)


def record_path(results_dir: Path, variant: str) -> Path:
    return results_dir / f"{variant}{SUFFIX}"


def parse(data: Any, source: str) -> PublishRecord:
    """The record in `data` (parsed JSON), else a one-line JobError naming `source` and the
    field."""
    try:
        fields = RECORD.check(data, "")
    except SchemaError as exc:
        raise JobError(escape_control(f"{source}: not a publish record: {exc}")) from None
    return PublishRecord(fields["variant"], fields["digest"], fields.get("repository"),
                         fields.get("image_id"), tuple(fields.get("tags", ())),
                         fields.get("stale", False), data)


def load(path: Path) -> PublishRecord | None:
    """The record in `path` (None when there is none), else a one-line JobError."""
    if not os.path.lexists(path):
        return None
    text = read_text(path, MAX_RESULT_BYTES, error=JobError)  # bounded, regular, UTF-8
    try:
        data = json_loads(text)
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        where = f"{path}:{line}" if line else str(path)
        raise JobError(escape_control(f"{where}: not JSON "
                                      f"({getattr(exc, 'msg', str(exc))})")) from None
    except RecursionError:
        raise JobError(escape_control(f"{path}: nested too deeply")) from None
    return parse(data, str(path))


def schema_document() -> dict[str, Any]:
    return document(RECORD, SCHEMA_ID, "imagefactory publish record, version 1",
                    "What `imagefactory push` published for one variant, as it writes "
                    "<results>/<variant>.publish.json: the verified repository@digest, the "
                    "tags, the tested image id and a summary of its test result. Fields "
                    "this schema does not name are allowed and carried along.")
