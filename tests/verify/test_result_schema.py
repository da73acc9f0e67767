"""The published schemas of the stored test result and the publish record
(schemas/test-result.v1.json, schemas/publish-record.v1.json): current, valid JSON Schema,
met by every result the fixtures hold and the writers write, and never stricter than the
readers. tests/conftest.py checks every result and record the rest of the suite writes."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from imagefactory import schemafiles
from imagefactory.errors import JobError
from imagefactory.share import record as records
from imagefactory.verify.results import Check, ConvCase, TestResult

ROOT = Path(__file__).resolve().parents[2]
RESULT = json.loads((ROOT / "schemas" / "test-result.v1.json").read_text())
RECORD = json.loads((ROOT / "schemas" / "publish-record.v1.json").read_text())
IMAGE = "sha256:" + "a" * 64
DIGEST = "sha256:" + "c" * 64


@pytest.mark.parametrize(("name", "schema"), [("test-result.v1.json", RESULT),
                                               ("publish-record.v1.json", RECORD)])
def test_committed_schemas_are_current(name: str, schema: dict) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    assert (ROOT / "schemas" / name).read_text() == schemafiles.text(name), \
        f"schemas/{name} is stale: python -m imagefactory.schemafiles"


def _fixture_results() -> list[Path]:
    return sorted((ROOT / "tests" / "fixtures" / "results").glob("*.json"))


@pytest.mark.parametrize("path", _fixture_results(), ids=lambda p: p.name)
def test_every_fixture_result_meets_the_schema(path: Path) -> None:
    data = json.loads(path.read_text())
    jsonschema.Draft202012Validator(RESULT).validate(data)
    assert TestResult.load_path(path) is not None


def test_a_written_result_meets_the_schema(tmp_path: Path) -> None:
    result = TestResult(
        variant="rocm62-native", image_id=IMAGE, passed=True,
        checks=(Check("python version", True, "3.11.2\nand more"),),
        conv=(ConvCase("conv3x3", "ok", 0.5, 1.2, 1e-6, 1e-5, verdict="ok"),
              ConvCase("int8-mm", "crash", None, detail="Traceback\n...", verdict="known")),
        host="gfx1010", profile="im2col", devices=("/dev/kfd:/dev/kfd",),
        conv_summary={"ok": 1, "crash": 1}, conv_works={"convolutions": {"verdict": "yes"}},
        gpu_code={"check": {"ok": True}, "seconds": 1.5}, scope="quick", quick=True)
    data = json.loads(result.save(tmp_path).read_text())
    jsonschema.Draft202012Validator(RESULT).validate(data)


@pytest.mark.parametrize("change", [
    {"passed": "false"}, {"variant": "cpu.quick"}, {"image_id": "aaaa"},
    {"host": "gfx1010; rm"}, {"scope": "most"}, {"schema": 2},
    {"conv": [{"case": "c", "status": "Ok"}]}, {"checks": [{"name": "x", "passed": 1}]},
])
def test_what_the_schema_refuses_the_reader_refuses(change: dict) -> None:
    data = json.loads((ROOT / "tests" / "fixtures" / "results" / "rocm62-native.json")
                      .read_text())
    data.update(change)
    assert list(jsonschema.Draft202012Validator(RESULT).iter_errors(data))
    with pytest.raises(ValueError):
        TestResult.from_dict(data)


def test_a_minimal_record_reads_and_meets_the_schema(tmp_path: Path) -> None:
    data = {"variant": "cpu", "image_id": IMAGE, "repository": "ghcr.io/owner/imagefactory",
            "digest": DIGEST, "added_later": [1]}
    jsonschema.Draft202012Validator(RECORD).validate(data)
    path = records.record_path(tmp_path, "cpu")
    path.write_text(json.dumps(data))
    record = records.load(path)
    assert record is not None and (record.repository, record.digest, record.image_id) == (
        "ghcr.io/owner/imagefactory", DIGEST, IMAGE)
    assert record.data == data and records.load(tmp_path / "none.publish.json") is None


@pytest.mark.parametrize(("change", "expected"), [
    ({"digest": "sha256:abc"}, "digest: 'sha256:abc' is not of the form"),
    ({"variant": None}, "variant: expected a string, got null"),
    ({"tags": "cpu"}, "tags: expected a list"),
    ({"stale": "yes"}, "stale: expected true or false"),
])
def test_a_bad_record_is_one_line_naming_file_and_field(tmp_path: Path, change: dict,
                                                        expected: str) -> None:
    path = records.record_path(tmp_path, "cpu")
    data = {"variant": "cpu", "digest": DIGEST, **change}
    path.write_text(json.dumps(data))
    assert list(jsonschema.Draft202012Validator(RECORD).iter_errors(data))
    with pytest.raises(JobError) as info:
        records.load(path)
    assert str(info.value).startswith(f"{path}: not a publish record: {expected}")
    path.write_text("{\n  oops")
    with pytest.raises(JobError, match=rf"{path}:2: not JSON"):
        records.load(path)
