"""The strict reader of result bundles: a bundle may come from anyone.

Before the structure is looked at, the text must be a bounded regular file, UTF-8, JSON
without NaN/Infinity, duplicate keys (`"result": "FAILED", "result": "PASSED"` reads as
either, depending on the parser), numbers too large to be measurements, or nesting deeper
than any bundle has. Then every field is checked against BUNDLE (the same description the
published schema, schemas/result-bundle.v1.json, is rendered from); unknown fields are
refused, so a bundle carries nothing this version does not know and show. Every refusal is
one line: the file, the field, the problem.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convcheck.vocabulary import VERDICTS

from ..errors import ConfigError
from ..safety import clean, read_bytes
from ..schema import (
    DIGEST,
    GFX,
    NAME,
    SHA256,
    STATUS,
    VARIANT_NAME,
    Arr,
    Bool,
    Enum,
    Int,
    Map,
    Node,
    Num,
    Obj,
    Opt,
    SchemaError,
    Str,
    document,
)
from .bundle import (
    CONFIG_NAME,
    PREDICATE_TYPE,
    RESULTS,
    SCHEMA,
    SCHEMA_ID,
    STATEMENT_TYPE,
    SUBJECT_KINDS,
)

MAX_BUNDLE_BYTES = 2 << 20  # a full conv check bundle is ~60 KiB
MAX_DEPTH = 12  # a valid bundle nests 8 deep
_MAX_DIGITS = 20

HEX16 = r"0x[0-9a-f]{4}"
TIME = (r"|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
        r"(Z|[+-][0-9]{2}:[0-9]{2})?")  # ISO 8601, or empty in results that lack it
TEST_NAME = Str(260, r"(check|conv)/[^\n]{1,255}")
TEXT = Str(200)
VERSION = Opt(Str(100))


def _subject_matches_kind(subject: dict[str, Any], where: str) -> None:
    kind = subject["annotations"]["kind"]
    image_id = subject["annotations"].get("image_id")
    if kind == "image-id" and image_id != "sha256:" + subject["digest"]["sha256"]:
        raise SchemaError(f"{where}.annotations.image_id", "an image-id subject's digest is "
                                                           "its image id")
    if kind != "host-torch" and image_id is None:
        raise SchemaError(f"{where}.annotations.image_id", "missing")


SUBJECT = Obj({
    "name": Str(255, r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}"),
    "digest": Obj({"sha256": Str(64, SHA256)}),
    "annotations": Obj({"kind": Enum(SUBJECT_KINDS)},
                       {"image_id": Str(71, DIGEST), "files": Int()}),
}, also=_subject_matches_kind)

CONFIGURATION = Obj({
    "name": Enum((CONFIG_NAME,)),
    "annotations": Obj({
        "variant": Str(63, VARIANT_NAME),
        "profile": Opt(Str(63, NAME)),
        "env": Map(Str(1000), key=r"[A-Za-z_][A-Za-z0-9_]{0,127}"),
        "flags": Obj({"scope": Enum(("full", "quick", "subset")), "quick": Bool(),
                      "cold": Bool(), "device": Enum(("cpu", "cuda"))}),
    }),
})

GPU = Obj({
    "gfx": Opt(Str(8, GFX)),
    "gfx_target_version": Opt(Int(0, 999999)),
    "pci": Obj({"vendor": Str(6, HEX16), "device": Str(6, HEX16),
                "subsystem_vendor": Opt(Str(6, HEX16)), "subsystem_device": Opt(Str(6, HEX16)),
                "revision": Opt(Str(4, r"0x[0-9a-f]{2}"))}),
    "name": Opt(TEXT),
    "subsystem_name": Opt(TEXT),
    "name_source": Opt(Enum(("pci.ids", "imagefactory"))),
    "vram_bytes": Opt(Int(0, (1 << 53) - 1)),
    "vbios": Opt(Str(64)),
    "firmware": Map(Int(0, (1 << 32) - 1), key=r"kfd_(fw_version|sdma_fw_version)", max=2),
    "pcie_atomics": Opt(Bool()),
}, {"firmware_blocks": Map(Str(10, r"0x[0-9a-f]{8}"), key=r"[a-z0-9_]{1,40}_fw_version",
                           max=64)})

CASE = Obj({
    "case": Str(200), "status": Str(40, STATUS), "area": Str(64),
    "dtype": Str(32), "verdict": Enum(tuple(VERDICTS)),
    "seconds": Opt(Num()), "compile_seconds": Opt(Num()), "run_seconds": Opt(Num()),
    "max_abs_err": Opt(Num()), "detail": Str(2000),
})

IMAGEFACTORY = Obj({
    "schema": Enum((SCHEMA,)),
    "version": Str(40),
    "variant": Str(63, VARIANT_NAME),
    "profile": Opt(Str(63, NAME)),
    "scope": Enum(("full", "quick", "subset")),
    "image_id": Str(71, DIGEST),
    "started_at": Str(40, TIME),
    "finished_at": Str(40, TIME),
    "reported": Obj({"torch": VERSION, "hip": VERSION, "rocm": VERSION, "gpu": Opt(TEXT),
                     "isa": Opt(Str(8, GFX)), "device": Enum(("cpu", "cuda"))}),
    "host_id": Str(32, r"[0-9a-f]{32}"),
    "host": Obj({"kernel": Opt(Str(64)), "cpu": Opt(TEXT), "amdgpu_module": Opt(Str(64)),
                 "kfd": Bool(), "gpus": Arr(GPU, 16)}),
    "cases": Arr(CASE, 5000),
    "checks": Arr(Obj({"name": Str(200), "passed": Bool(), "detail": Str(2000)}), 2000),
})


def _one_config(predicate: dict[str, Any], where: str) -> None:
    configs = predicate["configuration"]
    if len(configs) != 1:
        raise SchemaError(f"{where}.configuration", "expected exactly one configuration")
    ann, ours = configs[0]["annotations"], predicate["imagefactory"]
    for key in ("variant", "profile"):
        if ann[key] != ours[key]:
            raise SchemaError(f"{where}.configuration[0].annotations.{key}",
                              f"differs from {where}.imagefactory.{key}")


PREDICATE = Obj({
    "result": Enum(RESULTS),
    "configuration": Arr(CONFIGURATION, 1, min=1),
    "passedTests": Arr(TEST_NAME, 10_000),
    "warnedTests": Arr(TEST_NAME, 10_000),
    "failedTests": Arr(TEST_NAME, 10_000),
    "imagefactory": IMAGEFACTORY,
}, also=_one_config)


def _image_subject(statement: dict[str, Any], where: str) -> None:
    if len(statement["subject"]) != 1:  # an empty list passes Arr's bound; index it never
        raise SchemaError("subject", "expected exactly one subject")
    subject = statement["subject"][0]
    ours = statement["predicate"]["imagefactory"]
    if subject["annotations"]["kind"] != "host-torch" and \
            subject["annotations"]["image_id"] != ours["image_id"]:
        raise SchemaError("subject[0].annotations.image_id",
                          "differs from predicate.imagefactory.image_id")


BUNDLE: Node = Obj({
    "_type": Enum((STATEMENT_TYPE,)),
    "subject": Arr(SUBJECT, 1, min=1),
    "predicateType": Enum((PREDICATE_TYPE,)),
    "predicate": PREDICATE,
}, also=_image_subject)


def schema_document() -> dict[str, Any]:
    return document(BUNDLE, SCHEMA_ID, "imagefactory result bundle, version 1",
                    "An in-toto Statement v1 whose predicate is the in-toto Test Result "
                    "v0.1 of one `imagefactory test` run, with the full case results and "
                    "the host's hardware facts under predicate.imagefactory.")


@dataclass(frozen=True)
class Bundle:
    """A bundle that passed the reader, with what the report counts by."""

    data: dict[str, Any]
    source: str

    @property
    def ours(self) -> dict[str, Any]:
        result: dict[str, Any] = self.data["predicate"]["imagefactory"]
        return result

    @property
    def subject(self) -> dict[str, Any]:
        result: dict[str, Any] = self.data["subject"][0]
        return result

    @property
    def digest(self) -> str:
        return "sha256:" + str(self.subject["digest"]["sha256"])

    @property
    def kind(self) -> str:
        return str(self.subject["annotations"]["kind"])

    @property
    def result(self) -> str:
        return str(self.data["predicate"]["result"])

    @property
    def host_id(self) -> str:
        return str(self.ours["host_id"])


class BundleError(ConfigError):
    """A bundle refused by the reader: one line naming the file, the field and the problem
    (exit 2: the input is wrong, not the job)."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(clean(source), None, "", clean(message))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {clean(key)[:40]!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_DIGITS:
        raise ValueError(f"number with {len(text)} digits")
    return int(text)


def _float(text: str) -> float:
    if len(text) > 40:
        raise ValueError(f"number written with {len(text)} characters")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


def _depth(value: Any, limit: int) -> int:
    """How deep `value` nests, stopping past `limit` (iterative: no recursion to exhaust)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def parse(text: str, source: str) -> Any:
    """Strict JSON: one line naming the problem (and its line) for anything else."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant,
                          parse_int=_int, parse_float=_float)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{source}:{exc.lineno}", f"not JSON ({exc.msg})") from None
    except ValueError as exc:
        raise BundleError(source, f"not strict JSON ({exc})") from None
    except RecursionError:
        raise BundleError(source, f"nested deeper than {MAX_DEPTH} levels") from None


def from_text(text: str, source: str) -> Bundle:
    data = parse(text, source)
    if _depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise BundleError(source, f"nested deeper than {MAX_DEPTH} levels")
    try:
        checked = BUNDLE.check(data, "")
    except SchemaError as exc:
        raise BundleError(source, f"not a result bundle: {exc}") from None
    return Bundle(checked, source)


def from_bytes(data: bytes, source: str) -> Bundle:
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(source, f"too large ({len(data)} bytes; the limit is "
                                  f"{MAX_BUNDLE_BYTES})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(source, f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset "
                                  f"{exc.start})") from None
    return from_text(text, source)


def load(path: Path) -> Bundle:
    """The bundle in `path`, else BundleError (one line)."""
    try:
        data = read_bytes(path, MAX_BUNDLE_BYTES)
    except ConfigError as exc:
        raise BundleError(str(path), str(exc).split(": ", 1)[-1]) from None
    return from_bytes(data, str(path))
