"""A result bundle: one test result as an in-toto Statement anyone can check and count.

The Statement (https://in-toto.io/Statement/v1) names as its subject exactly what was tested:
the image by repository and digest when it was published (the publish record beside the
result says which digest that image id was pushed as), else the local image by its tag and
image id; or a host torch by its version and a hash of its installed files. The predicate is
in-toto's Test Result (https://in-toto.io/attestation/test-result/v0.1): PASSED / WARNED /
FAILED, the configuration (variant, profile, env, flags) and the test names by outcome. The
full case results and the host facts go in the predicate's `imagefactory` field, which
readers that only know the standard predicate ignore. schemas/result-bundle.v1.json is the
published schema; share/reader.py reads bundles strictly.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from convcheck.vocabulary import OK, REGRESSION

from .. import __version__
from ..errors import JobError
from ..host import facts as host_facts
from ..safety import (
    escape_control,
    json_dumps,
    write_atomic,
)
from ..verify.results import TestResult
from .hostid import host_id, personal_words, scrub, scrubber
from .record import PublishRecord, record_path
from .record import load as load_record

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://in-toto.io/attestation/test-result/v0.1"
SCHEMA = 1
SCHEMA_ID = "https://github.com/imagefactory/imagefactory/schemas/result-bundle.v1.json"
CONFIG_NAME = "imagefactory:configuration"
BUNDLES_DIR = "bundles"
SUBJECT_KINDS = ("image-digest", "image-id", "host-torch")
RESULTS = ("PASSED", "WARNED", "FAILED")
_DETAIL = 2000  # a case's detail is a hint, not a log


def bundle_path(results_dir: Path, variant: str, scope: str = "full") -> Path:
    """<results>/bundles/<variant>.json (.quick/.subset.json): in a folder of their own, so
    the readers of <results>/*.json never take a bundle for a result."""
    name = f"{variant}.json" if scope == "full" else f"{variant}.{scope}.json"
    return results_dir / BUNDLES_DIR / name


def publish_record(results_dir: Path, result: TestResult) -> PublishRecord | None:
    """The publish record of this very image (same image id, a repository named), if it
    was pushed from here; a record that does not read (share/record.py) is none."""
    path = record_path(results_dir, result.variant)
    if not path.is_file():
        return None
    try:
        record = load_record(path)
    except JobError:
        return None
    if record is None or record.image_id != result.image_id or not record.repository:
        return None
    return record


def image_subject(result: TestResult, record: PublishRecord | None) -> dict[str, Any]:
    if record is not None and record.repository:
        return {"name": record.repository,
                "digest": {"sha256": record.digest.removeprefix("sha256:")},
                "annotations": {"kind": "image-digest", "image_id": result.image_id}}
    repo = result.image_tag.rpartition(":")[0] if ":" in result.image_tag else result.image_tag
    return {"name": repo or "local", "digest": {"sha256": result.image_id.removeprefix("sha256:")},
            "annotations": {"kind": "image-id", "image_id": result.image_id}}


def host_torch_subject(version: str, torch_dir: Path) -> dict[str, Any]:
    """A torch installed on the host: its version and a sha256 over its files (relative path
    and content hash of each, sorted), so the same install gives the same subject anywhere."""
    lines = []
    for root, dirs, files in os.walk(torch_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            path = Path(root, name)
            if path.is_symlink() or not path.is_file():
                continue
            h = hashlib.sha256()
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            lines.append(f"{path.relative_to(torch_dir).as_posix()}\0{h.hexdigest()}\n")
    total = hashlib.sha256("".join(lines).encode()).hexdigest()
    return {"name": f"pypi:torch@{version}", "digest": {"sha256": total},
            "annotations": {"kind": "host-torch", "files": len(lines)}}


def outcome(result: TestResult) -> str:
    """FAILED: the run failed; WARNED: it passed, but with known failures, skipped cases or
    not every case run; PASSED: every check and every case ran and passed."""
    if not result.passed:
        return "FAILED"
    if result.scope != "full" or any(c.status != "ok" for c in result.conv):
        return "WARNED"
    return "PASSED"


def make(result: TestResult, *, env: Mapping[str, str], subject: dict[str, Any],
         roots: host_facts.Roots = host_facts.SYSTEM, state: Path | None = None
         ) -> dict[str, Any]:
    """The bundle of `result` tested on this host (facts read now, through `roots`)."""
    words = scrubber(personal_words(roots.proc))

    def text(value: str | None, limit: int = 200) -> str | None:
        return None if value is None else scrub(escape_control(value), words)[:limit]

    passed: list[str] = []
    warned: list[str] = []
    failed: list[str] = []
    for check in result.checks:
        (passed if check.passed else failed).append(f"check/{text(check.name)}")
    for c in result.conv:
        name = f"conv/{text(c.case)}"
        if c.status == "ok":
            passed.append(name)
        elif c.ok or c.known:
            warned.append(name)
        else:
            failed.append(name)
    cases = [{"case": text(c.case), "status": c.status, "area": text(c.area, 64) or "",
              "dtype": text(c.dtype, 32) or "",
              "verdict": c.verdict or (OK if c.ok else REGRESSION),
              "seconds": c.seconds, "compile_seconds": c.compile_seconds,
              "run_seconds": c.run_seconds, "max_abs_err": c.max_abs_err,
              "detail": text(c.detail, _DETAIL) or ""} for c in result.conv]
    checks = [{"name": text(c.name), "passed": c.passed, "detail": text(c.detail, _DETAIL) or ""}
              for c in result.checks]
    facts = host_facts.collect(roots)
    for key in ("kernel", "cpu"):
        facts[key] = text(facts[key])
    for gpu in facts["gpus"]:
        for key in ("name", "subsystem_name", "vbios"):
            gpu[key] = text(gpu[key])
    configuration = [{
        "name": CONFIG_NAME,
        "annotations": {
            "variant": result.variant, "profile": result.profile,
            "env": {k: text(v, 1000) for k, v in sorted(env.items())},
            "flags": {"scope": result.scope, "quick": result.quick, "cold": result.cold,
                      "device": result.device},
        },
    }]
    return {
        "_type": STATEMENT_TYPE,
        "subject": [subject],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "result": outcome(result),
            "configuration": configuration,
            "passedTests": passed,
            "warnedTests": warned,
            "failedTests": failed,
            "imagefactory": {
                "schema": SCHEMA,
                "version": __version__,
                "variant": result.variant,
                "profile": result.profile,
                "scope": result.scope,
                "image_id": result.image_id,
                "started_at": result.started_at,
                "finished_at": result.finished_at,
                "reported": {"torch": text(result.torch), "hip": text(result.hip),
                             "rocm": text(result.rocm), "gpu": text(result.gpu),
                             "isa": result.host, "device": result.device},
                "host_id": host_id(state),
                "host": facts,
                "cases": cases,
                "checks": checks,
            },
        },
    }


def to_json(bundle: Mapping[str, Any]) -> str:
    return json_dumps(bundle, indent=2) + "\n"


def write(bundle: Mapping[str, Any], path: Path) -> Path:
    return write_atomic(path, to_json(bundle), error=JobError)
