"""Result bundles: made from real results on a fixture host, read back strictly, checked
against the published schema with the jsonschema library, and free of personal data."""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
from pathlib import Path

import jsonschema
import pytest
from share_host import HOSTNAME, MAC, USER, Host

from imagefactory.cli import main
from imagefactory.host import facts
from imagefactory.share import bundle as bundles
from imagefactory.share import hostid, reader
from imagefactory.share.run import make_for
from imagefactory.verify.results import Check, ConvCase, TestResult

ROOT = Path(__file__).parent.parent.parent
RESULTS = ROOT / "tests" / "fixtures" / "results"
SCHEMA = json.loads((ROOT / "schemas" / "result-bundle.v1.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def _result(**over: object) -> TestResult:
    values: dict[str, object] = dict(
        variant="therock-gfx1010", image_id="sha256:" + "b" * 64, passed=True,
        checks=(Check("container starts", True, f"ran as {USER} in /home/{USER}/x"),),
        conv=(ConvCase("conv2d-k3", "ok", 0.5, area="convolutions"),
              ConvCase("sdpa", "skipped", area="attention"),
              ConvCase("lstm", "aperture-violation", 1.0, verdict="known", area="rnn",
                       detail=f"on {HOSTNAME}: HSA_STATUS_ERROR at {MAC}")),
        host="gfx1010", profile=None, image_tag="imagefactory:therock-gfx1010",
        device="cuda", torch="2.10.0+rocm7.14.0", gpu="AMD Radeon RX 5600 XT",
        finished_at="2026-12-01T10:00:00Z", started_at="2026-12-01T09:58:00Z")
    values.update(over)
    return TestResult(**values)  # type: ignore[arg-type]


def test_host_facts_from_sysfs(host: Host) -> None:
    found = facts.collect(host.roots)
    assert found["kernel"] == "6.1.0-28-amd64"
    assert found["cpu"] == "AMD Ryzen 5 3600 6-Core Processor"
    assert found["amdgpu_module"] == "6.8.5"
    (gpu,) = found["gpus"]
    assert gpu["gfx"] == "gfx1010" and gpu["gfx_target_version"] == 100100
    assert gpu["pci"] == {"vendor": "0x1002", "device": "0x731f", "subsystem_vendor": "0x1da2",
                          "subsystem_device": "0xe411", "revision": "0xca"}
    assert gpu["name"] == "Navi 10 [Radeon RX 5600 OEM/5600 XT / 5700/5700 XT]"
    assert gpu["subsystem_name"] == "Test Vendor RX 5600 XT Pulse"
    assert gpu["name_source"] == "pci.ids"
    assert gpu["vram_bytes"] == 6425673728
    assert gpu["vbios"] == "113-5E4111U-X4G"
    assert gpu["firmware"] == {"kfd_fw_version": 140, "kfd_sdma_fw_version": 35}
    assert gpu["firmware_blocks"] == {"mec_fw_version": "0x0000009c",
                                      "smc_fw_version": "0x002a3e00"}
    assert gpu["pcie_atomics"] is True


def test_pcie_atomics_off_and_no_pci_ids(host: Host, tmp_path: Path) -> None:
    link = host.roots.sysfs / "class/kfd/kfd/topology/nodes/1/io_links/0/properties"
    link.write_text(link.read_text().replace("flags 1", "flags 13"))  # NO_ATOMICS_32|64
    roots = facts.Roots(host.roots.sysfs, host.roots.proc, tmp_path / "absent")
    (gpu,) = facts.collect(roots)["gpus"]
    assert gpu["pcie_atomics"] is False
    # Without pci.ids the name comes from imagefactory's own table, and says so.
    assert gpu["name_source"] == "imagefactory" and "5600 XT" in gpu["name"]


def test_real_pci_ids_names_navi10() -> None:
    """Debian's pci.ids (package pci.ids, installed by setup-test-env.sh) names the card."""
    name, _ = facts.pci_names(facts.PCI_IDS, 0x1002, 0x731F, None, None)
    assert name is not None and "Navi 10" in name


def test_no_personal_data_in_the_bundle(host: Host) -> None:
    data = bundles.make(_result(), env={"HOME_HINT": f"/home/{USER}"},
                        subject=bundles.image_subject(_result(), None), roots=host.roots,
                        state=host.state)
    text = bundles.to_json(data)
    for planted in host.planted:
        assert planted not in text, planted
    assert "<redacted>" in text and "<mac>" in text  # the planted free text was scrubbed
    reader.from_text(text, "made")
    VALIDATOR.validate(json.loads(text))


def test_host_id_salt_is_private_and_stable(host: Host) -> None:
    first = hostid.host_id(host.state)
    assert first == hostid.host_id(host.state)  # repeat runs: one host
    salt = host.state / hostid.SALT_FILE
    assert stat.S_IMODE(salt.stat().st_mode) == 0o600
    assert salt.read_text().strip() not in first
    salt.unlink()
    assert hostid.host_id(host.state) != first  # a new salt is a new host


def test_bad_salt_is_one_line(host: Host) -> None:
    host.state.mkdir(parents=True)
    (host.state / hostid.SALT_FILE).write_text("not hex\n")
    with pytest.raises(Exception, match="not a host salt"):
        hostid.host_id(host.state)


@pytest.mark.parametrize("name", sorted(p.name for p in RESULTS.glob("*.json")))
def test_real_results_make_valid_bundles(host: Host, name: str) -> None:
    result = TestResult.load_path(RESULTS / name)
    assert result is not None
    data = make_for(result, RESULTS, None, roots=host.roots, state=host.state)
    VALIDATOR.validate(data)
    back = reader.from_text(bundles.to_json(data), name)
    assert back.ours["variant"] == result.variant
    assert back.result == ("FAILED" if not result.passed else back.result)
    assert len(back.ours["cases"]) == len(result.conv)


def test_outcome() -> None:
    assert bundles.outcome(_result()) == "WARNED"  # a known failure and a skip
    ok = _result(conv=(ConvCase("a", "ok"),))
    assert bundles.outcome(ok) == "PASSED"
    assert bundles.outcome(_result(passed=False)) == "FAILED"
    assert bundles.outcome(_result(conv=(ConvCase("a", "ok"),), scope="quick")) == "WARNED"


def test_published_image_is_the_subject(host: Host, tmp_path: Path) -> None:
    result = _result()
    record = {"variant": result.variant, "image_id": result.image_id,
              "repository": "ghcr.io/owner/imagefactory", "digest": "sha256:" + "c" * 64}
    (tmp_path / f"{result.variant}.publish.json").write_text(json.dumps(record))
    data = make_for(result, tmp_path, None, roots=host.roots, state=host.state)
    assert data["subject"][0] == {"name": "ghcr.io/owner/imagefactory",
                                  "digest": {"sha256": "c" * 64},
                                  "annotations": {"kind": "image-digest",
                                                  "image_id": result.image_id}}
    # Another image id's record is not this image's digest.
    record["image_id"] = "sha256:" + "d" * 64
    (tmp_path / f"{result.variant}.publish.json").write_text(json.dumps(record))
    data = make_for(result, tmp_path, None, roots=host.roots, state=host.state)
    assert data["subject"][0]["annotations"]["kind"] == "image-id"


def test_host_torch_subject(tmp_path: Path) -> None:
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("x = 1\n")
    (tmp_path / "torch" / "lib.so").write_bytes(b"\x7fELF")
    one = bundles.host_torch_subject("2.5.1", tmp_path / "torch")
    assert one["name"] == "pypi:torch@2.5.1" and one["annotations"]["files"] == 2
    (tmp_path / "torch" / "lib.so").write_bytes(b"\x7fELF2")
    assert bundles.host_torch_subject("2.5.1", tmp_path / "torch")["digest"] != one["digest"]


def test_committed_schema_is_the_readers() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert reader.schema_document() == SCHEMA, \
        "schemas/result-bundle.v1.json is stale: python -m imagefactory.schemafiles"


def _cli(args: list[str], cwd: Path) -> tuple[int, str]:
    """The real entry point (main: its one-line errors and exit codes), in this process."""
    old = os.getcwd()
    os.chdir(cwd)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        os.chdir(old)
    return code, out.getvalue() + err.getvalue()


def test_share_command_writes_prints_and_checks(host: Host, tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "rocm62-patched.json").write_bytes((RESULTS / "rocm62-patched.json").read_bytes())
    code, out = _cli(["share", "rocm62-patched", "--results", str(results), "--print"], ROOT)
    assert code == 0, out
    # The fixture predates `scope` and says quick: true: a quick run, named so.
    path = results / "bundles" / "rocm62-patched.quick.json"
    assert json.loads(path.read_text())["predicate"]["result"] == "FAILED"
    assert '"predicateType": "https://in-toto.io/attestation/test-result/v0.1"' in out
    assert "issues/new?template=result-bundle.yml" in out
    code, out = _cli(["share", "--check", str(path)], ROOT)
    assert code == 0 and out.startswith("ok: "), out
    # A result file named by path works the same.
    code, out = _cli(["share", str(results / "rocm62-patched.json")], ROOT)
    assert code == 0, out


def test_share_check_refuses_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "b.json"
    bad.write_text('{"_type": 1, "_type": 2}')
    code, out = _cli(["share", "--check", str(bad)], tmp_path)
    assert code == 2
    assert out.strip().count("\n") == 0 and "duplicate key '_type'" in out
