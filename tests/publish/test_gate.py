"""The publishing gate (issue 12, severe finding 1): push publishes only an image whose
result file passes the strict schema, says `"passed": true`, agrees with every check and
case in it, and names this exact image id. Anything else is one line and exit 1."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from imagefactory.engine.images import BuiltImage
from imagefactory.errors import JobError
from imagefactory.publish.publisher import gate
from imagefactory.verify.results import Check, ConvCase, TestResult

IMAGE = "sha256:" + "a" * 64
HASH = "b" * 64


@pytest.fixture()
def built(project) -> BuiltImage:
    return BuiltImage(project.matrix.get("cpu"), IMAGE, "x:cpu", HASH)


def passing() -> dict[str, Any]:
    r = TestResult("cpu", IMAGE, True, (Check("torch imports", True),),
                   (ConvCase("conv2d-k3", "ok", 0.1),), None, None, inputs_hash=HASH)
    return json.loads(r.to_json())


def write(tmp_path: Path, data: Any) -> None:
    text = data if isinstance(data, str) else json.dumps(data)
    (tmp_path / "cpu.json").write_text(text)


def refused(built: BuiltImage, tmp_path: Path) -> str:
    with pytest.raises(JobError) as info:
        gate(built, tmp_path, skip_tests=False, rendered_hash=HASH)
    message = str(info.value)
    assert "\n" not in message and "\x1b" not in message
    assert info.value.exit_code == 1
    return message


def test_a_passing_result_of_this_image_is_accepted(built: BuiltImage, tmp_path: Path) -> None:
    write(tmp_path, passing())
    result = gate(built, tmp_path, skip_tests=False, rendered_hash=HASH)
    assert result is not None and result.passed is True


@pytest.mark.parametrize("value", ["false", "true", "yes", 1, 0, None, [], {}, 1.0])
def test_passed_must_be_a_json_boolean(built: BuiltImage, tmp_path: Path, value: Any) -> None:
    data = passing()
    data["passed"] = value
    write(tmp_path, data)
    assert "passed: expected true or false" in refused(built, tmp_path)


def test_passed_true_with_a_failed_check_is_refused(built: BuiltImage, tmp_path: Path) -> None:
    data = passing()
    data["checks"].append({"name": "hip version", "passed": False, "detail": "5.2"})
    write(tmp_path, data)
    assert "says passed, but 1 check(s) in it failed (hip version)" in refused(
        built, tmp_path)


@pytest.mark.parametrize("status", ["hang", "aperture-violation", "error", "not-run"])
def test_passed_true_with_a_failed_case_is_refused(built: BuiltImage, tmp_path: Path,
                                                   status: str) -> None:
    data = passing()
    data["conv"].append({"case": "conv2d-k7", "status": status})
    write(tmp_path, data)
    assert f"conv conv2d-k7: {status}" in refused(built, tmp_path)


def test_known_failures_and_skipped_cases_agree_with_a_pass(project, tmp_path: Path) -> None:
    """A failure passes only where variants.yaml declares it now: the verdict stored in the
    file is never read (`known` on a case the matrix does not declare is refused, and a
    declared one passes whatever verdict the file gives)."""
    v = project.matrix.get("therock-gfx1010")  # declares int8-mm-* as a known failure
    built = BuiltImage(v, IMAGE, "x:t", HASH)
    data = passing()
    data["variant"] = v.name
    data["conv"] += [{"case": "int8-mm-256-fwd", "status": "crash", "verdict": "regression"},
                     {"case": "sdpa-math-fwd", "status": "skipped"}]
    (tmp_path / f"{v.name}.json").write_text(json.dumps(data))
    assert gate(built, tmp_path, skip_tests=False, rendered_hash=HASH) is not None
    data["conv"].append({"case": "conv2d-k7", "status": "crash", "verdict": "known"})
    (tmp_path / f"{v.name}.json").write_text(json.dumps(data))
    with pytest.raises(JobError, match=r"declares no known failure for them \(conv conv2d-k7: "
                                       r"crash\) \[gate rule cases-pass-or-declared\]"):
        gate(built, tmp_path, skip_tests=False, rendered_hash=HASH)


@pytest.mark.parametrize(("change", "expected"), [
    ({"schema": 2}, "schema: version 2 is not supported"),
    ({"schema": "1"}, "schema: expected the number 1"),
    ({"image_id": "sha256:" + "c" * 64}, "is for image cccccccccccc, not the current image"),
    ({"image_id": "aaaa"}, "image_id: expected sha256:<64 hex digits>"),
    ({"variant": "rocm62-native"}, "holds the result of variant 'rocm62-native' [gate rule"),
    ({"checks": []}, "holds no checks"),
    ({"checks": [{"name": "x", "passed": "true"}]}, "checks[0].passed: expected true or false"),
    ({"conv": [{"case": "c", "status": "ok", "seconds": "fast"}]},
     "conv[0].seconds: expected a finite number"),
    ({"conv": {"case": "c"}}, "conv: expected a list"),
    ({"devices": "/dev/kfd"}, "devices: expected a list"),
    ({"conv": [{"case": "c", "status": ""}]}, "conv[0].status: '' is not a status"),
    ({"conv": [{"case": "c", "status": "ok\x1b[2J"}]}, "conv[0].status: 'ok\\\\x1b[2J' is not"),
    ({"variant": "cpu\n"}, "variant: 'cpu\\\\x0a' is not a valid variant"),
    ({"host": "gfx1010; rm"}, "host: 'gfx1010; rm' is not a valid host"),
])
def test_schema_and_identity_are_checked(built: BuiltImage, tmp_path: Path,
                                         change: dict[str, Any], expected: str) -> None:
    data = passing()
    data.update(change)
    write(tmp_path, data)
    assert expected in refused(built, tmp_path)


@pytest.mark.parametrize("text", [
    '{"passed": NaN}', "[1, 2]", "", "\xff\xfe", "{" * 100_000, '"passed"',
    json.dumps(passing()).replace('"seconds": 0.1', '"seconds": Infinity'),
])
def test_malformed_files_are_one_line(built: BuiltImage, tmp_path: Path, text: str) -> None:
    write(tmp_path, text)
    assert str(tmp_path / "cpu.json") in refused(built, tmp_path)


def test_unknown_optional_fields_are_ignored(built: BuiltImage, tmp_path: Path) -> None:
    data = passing()
    data["gpu_code_inventory"] = {"libtorch_hip.so": ["gfx1030"]}
    data["conv"][0]["added_later"] = [1, 2]
    write(tmp_path, data)
    assert gate(built, tmp_path, skip_tests=False, rendered_hash=HASH) is not None


def test_special_files_are_refused_without_blocking(built: BuiltImage, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "cpu.json")
    assert "not a regular file (a FIFO)" in refused(built, tmp_path)
    (tmp_path / "cpu.json").unlink()
    (tmp_path / "cpu.json").symlink_to("/dev/zero")
    assert "not a regular file (a character device)" in refused(built, tmp_path)
