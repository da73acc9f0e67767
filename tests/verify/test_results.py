"""TestResult: the JSON contract push and report read."""

from __future__ import annotations

import json

import pytest

from imagefactory.errors import JobError
from imagefactory.verify.results import (
    Check,
    ConvCase,
    TestResult,
    result_path,
    stored_results,
)


def _result(**over) -> TestResult:
    values = dict(
        variant="cpu", image_id="sha256:" + "a" * 64, passed=False,
        checks=(Check("python version", True, "3.11.2"), Check("torch version", False, "1.0")),
        conv=(ConvCase("conv3x3", "ok", 0.5, 1.2, 1e-6, 1e-5),
              ConvCase("conv7x7", "hang", 30.0, detail="no result in 30 s")),
        host="gfx1010", profile="im2col", devices=("/dev/kfd:/dev/kfd",),
        conv_summary={"ok": 1, "hang": 1},
    )
    values.update(over)
    return TestResult(**values)


def test_round_trip(tmp_path) -> None:
    r = _result()
    path = r.save(tmp_path)
    assert path == result_path(tmp_path, "cpu") == tmp_path / "cpu.json"
    assert TestResult.load(tmp_path, "cpu") == r
    assert TestResult.from_json(r.to_json()) == r
    assert [c.name for c in r.failed_checks] == ["torch version"]
    assert [c.case for c in r.failed_cases] == ["conv7x7"]


def test_contract_fields(tmp_path) -> None:
    data = json.loads(_result().to_json())
    for key in ("variant", "image_id", "passed", "checks", "conv", "host", "profile",
                "inputs_hash", "started_at", "finished_at", "seconds", "schema"):
        assert key in data
    assert set(data["conv"][0]) >= {"case", "status", "seconds", "max_abs_err", "max_rel_err"}
    assert set(data["checks"][0]) == {"name", "passed", "detail"}


def test_unknown_fields_are_ignored_and_missing_file_is_none(tmp_path) -> None:
    data = json.loads(_result().to_json())
    data["added_later"] = 1
    data["conv"][0]["added_later"] = 2
    assert TestResult.from_dict(data) == _result()
    assert TestResult.load(tmp_path, "nothing") is None


def test_garbage_is_a_job_error(tmp_path) -> None:
    (tmp_path / "cpu.json").write_text("{not json")
    with pytest.raises(JobError, match="imagefactory test cpu"):
        TestResult.load(tmp_path, "cpu")


def test_a_quick_run_never_replaces_the_full_result(tmp_path) -> None:
    full = _result(passed=True, conv=(), checks=())
    quick = _result(scope="quick", quick=True, image_id="sha256:" + "b" * 64)
    assert full.save(tmp_path) == tmp_path / "cpu.json"
    assert quick.save(tmp_path) == tmp_path / "cpu.quick.json"
    assert TestResult.load(tmp_path, "cpu") == full
    assert TestResult.load(tmp_path, "cpu", "quick") == quick
    # Readers (report, doctor) take the full run of a variant that has one...
    assert stored_results(tmp_path) == [(tmp_path / "cpu.json", "cpu", "full")]
    # ... and a quick or subset run of a variant never run in full.
    _result(variant="rocm62-native", scope="subset").save(tmp_path)
    (tmp_path / "cpu.publish.json").write_text("{}")
    (tmp_path / "compatibility.json").write_text("{}")
    assert sorted(stored_results(tmp_path)) == [
        (tmp_path / "cpu.json", "cpu", "full"),
        (tmp_path / "rocm62-native.subset.json", "rocm62-native", "subset")]
