"""Results merged across hosts (#22): real bundles made by the share code for two hosts
(each its own salt, so its own host id) plus local results; kept-out lines; the published
compatibility schema; hostile bundle files."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagefactory.cli import main
from imagefactory.report import merge
from imagefactory.share import bundle as bundles
from imagefactory.verify.results import Check, ConvCase, TestResult

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "share"))
from share_host import FIXTURES  # noqa: E402

from imagefactory.host.facts import Roots  # noqa: E402

SCHEMA = json.loads((REPO / "schemas" / "compatibility.v1.json").read_text())
IMAGE = "sha256:" + "a" * 64
DIGEST = "sha256:" + "c" * 64


def _result(finished: str, conv: tuple[ConvCase, ...], passed: bool = True) -> TestResult:
    return TestResult("rocm62-native", IMAGE, passed, (Check("starts", True),), conv,
                      "gfx1010", None, image_tag="imagefactory:rocm62-native", device="cuda",
                      gpu="AMD Radeon RX 5600 XT", finished_at=finished,
                      started_at=finished)


OK = (ConvCase("conv2d", "ok", 0.1, area="convolutions"),
      ConvCase("sdpa", "ok", 0.1, area="attention"))
BAD = (ConvCase("conv2d", "aperture-violation", 1.0, area="convolutions"),
       ConvCase("sdpa", "ok", 0.1, area="attention"))
ROOTS = Roots(FIXTURES / "sysfs" / "rx5600xt", Path("/nonexistent-proc"),
              Path("/nonexistent-pci.ids"))


def _bundle(r: TestResult, state: Path, out: Path) -> Path:
    subject = {"name": "ghcr.io/o/imagefactory", "digest": {"sha256": DIGEST[7:]},
               "annotations": {"kind": "image-digest", "image_id": r.image_id}}
    data = bundles.make(r, env={}, subject=subject, roots=ROOTS, state=state)
    return bundles.write(data, out)


@pytest.fixture
def two_hosts(tmp_path: Path) -> tuple[Path, Path]:
    results, reports = tmp_path / "results", tmp_path / "reports"
    results.mkdir()
    reports.mkdir()
    local = _result("2026-12-01T10:00:00Z", OK)
    local.save(results)
    (results / "rocm62-native.publish.json").write_text(json.dumps(
        {"variant": "rocm62-native", "image_id": IMAGE, "digest": DIGEST,
         "repository": "ghcr.io/o/imagefactory"}))
    # This host's own bundle (as `imagefactory test` writes it): its salted id counts it.
    _bundle(local, tmp_path / "state-a", bundles.bundle_path(results, "rocm62-native"))
    # The second host: an older passing run and a later failing one (its latest stands).
    _bundle(_result("2026-11-01T10:00:00Z", OK), tmp_path / "state-b", reports / "b1.json")
    _bundle(_result("2026-12-02T10:00:00Z", BAD, passed=False), tmp_path / "state-b",
            reports / "b2.json")
    shutil.copy(reports / "b2.json", reports / "b2-again.json")  # a duplicate
    (reports / "broken.json").write_text('{"_type": 1, "_type": 2}')  # the reader refuses
    unpublished = _result("2026-12-03T10:00:00Z", OK)
    data = bundles.make(unpublished, env={}, subject={
        "name": "ghcr.io/o/imagefactory", "digest": {"sha256": "d" * 64},
        "annotations": {"kind": "image-digest", "image_id": IMAGE}}, roots=ROOTS,
        state=tmp_path / "state-c")
    bundles.write(data, reports / "unpublished.json")
    return results, reports


def test_two_hosts_counted_once_each(two_hosts: tuple[Path, Path]) -> None:
    results, reports = two_hosts
    merged = merge.collect([results], [reports])
    out = merge.to_json(merged)
    (group,) = out["groups"]
    assert group["hosts"] == 2 and group["runs"] == 3 and group["digest"] == DIGEST
    assert group["gpu"] == "AMD Radeon RX 5600 XT (gfx1010)" and group["published"]
    # Host b's latest run failed conv2d; host a passed it: some hosts.
    assert group["cases"] == {"every_host": ["sdpa"], "some_hosts": ["conv2d"],
                              "no_host": []}
    assert group["verdict"] == "convolutions fail on 1 of 2 hosts (aperture-violation)"
    assert group["last_seen"] == "2026-12-02T10:00:00Z"
    kept = "\n".join(out["kept_out"])
    assert len(out["kept_out"]) == 3, kept
    assert "broken.json: kept out: " in kept and "duplicate key" in kept
    assert "unpublished.json: kept out: image digest sha256:dddddddddddd... was never " \
           "published" in kept
    assert "b2.json: kept out: a duplicate" in kept or "b2-again.json: kept out: a " \
                                                          "duplicate" in kept
    jsonschema.Draft202012Validator(SCHEMA).validate(
        {"schema": 1, "generated_at": "now", "classes": {}, "verdicts": {}, "cases": [],
         "rows": [], **out})


def test_works_words_and_failed_runs(tmp_path: Path) -> None:
    m = merge.Merged()
    for i in range(3):
        m.add(merge.Run(_result(f"2026-12-0{i + 1}T00:00:00Z", OK), IMAGE, False, "g",
                        f"h{i}", f"h{i}", f"s{i}"))
    assert merge.groups(m)[0]["verdict"] == "works: every case on 3 hosts"
    failed = merge.Merged()
    failed.add(merge.Run(_result("t", (), passed=False), IMAGE, False, "g", "h", "h", "s"))
    assert merge.groups(failed)[0]["verdict"] == "image checks fail on 1 of 1 host (run failed)"


def test_report_cli_writes_valid_json_and_site_with_two_hosts(
        two_hosts: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    results, reports = two_hosts
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(REPO / "variants.yaml"), "report", "--results", str(results),
              "--reports", str(reports), "--out", str(out), "--no-png"])
    text = capsys.readouterr()
    assert exc.value.code in (0, None), text.err
    data = json.loads((out / "compatibility.json").read_text())
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    index = (out / "site" / "index.html").read_text()
    assert "2 hosts</span>" in index and "mixed: works on 1 of 2 hosts" in index
    assert "results" in index and "host " in index
    variant = (out / "site" / "variant-rocm62-native.html").read_text()
    assert "convolutions fail on 1 of 2 hosts" in variant
    assert "ghcr.io/o/imagefactory@" + DIGEST in variant  # the bundle's image, to pull


def test_committed_schema_is_the_codes() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert merge.schema_document() == SCHEMA, \
        "schemas/compatibility.v1.json is stale: python -m imagefactory.schemafiles"


HOSTILE = st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                    st.sampled_from([b"[" * 5000, b'{"a": NaN}', b"1" * 400, b"\xff\xfe",
                                     b'{"_type": "https://in-toto.io/Statement/v1"}']))


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(HOSTILE, min_size=1, max_size=5))
def test_hostile_bundles_each_one_line(tmp_path: Path, files: list[bytes]) -> None:
    reports = tmp_path / "hostile"
    shutil.rmtree(reports, ignore_errors=True)
    reports.mkdir()
    for i, data in enumerate(files):
        (reports / f"{i}\x1b[31m.json").write_bytes(data)
    merged = merge.collect([], [reports])
    assert len(merged.kept_out) == len(files) and not merged.runs
    assert all("\n" not in line and "\x1b" not in line for line in merged.kept_out)
    jsonschema.Draft202012Validator(SCHEMA).validate(
        {"schema": 1, "generated_at": "now", "classes": {}, "verdicts": {}, "cases": [],
         "rows": [], **merge.to_json(merged)})


def test_bundle_without_subject_is_kept_out(two_hosts: tuple[Path, Path]) -> None:
    # Found by the reader's fuzz test: "subject": [] raised IndexError and crashed report.
    results, reports = two_hosts
    data = json.loads((reports / "b1.json").read_text())
    data["subject"] = []
    (reports / "nosubject.json").write_text(json.dumps(data))
    kept = merge.collect([results], [reports]).kept_out
    assert any("nosubject.json: kept out: " in k and "subject" in k for k in kept), kept
