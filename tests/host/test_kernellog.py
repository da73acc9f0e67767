"""doctor's kernel log reading: the amdgpu/KFD lines that explain a missing or refused GPU.

The fixture logs carry the kernel's own wording (format strings cited in
imagefactory/host/kernellog.py); the unprivileged read runs as a real other user against the
real /dev/kmsg and journalctl of this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagefactory.cli import main
from imagefactory.doctor.run import kernel_log_checks
from imagefactory.host import kernellog

FIXTURES = Path(__file__).parent.parent / "fixtures"
ATOMICS_LOG = FIXTURES / "kernellog" / "pci-rejects-atomics.dmesg"
FIRMWARE_LOG = FIXTURES / "kernellog" / "firmware-missing.kmsg"
REPO = Path(__file__).resolve().parents[2]


def test_the_atomics_lines_are_explained_with_the_firmware_threshold() -> None:
    log = kernellog.read_saved_log(ATOMICS_LOG)
    assert log.source == str(ATOMICS_LOG) and len(log.lines) == 10
    found = kernellog.explain(log.lines)
    assert [f.problem for f in found] == [False, True]
    amdgpu, kfd = found
    assert amdgpu.what.startswith("0000:03:00.0: the PCIe path to the card does not pass")
    assert amdgpu.line == "amdgpu 0000:03:00.0: amdgpu: PCIE atomic ops is not supported"
    assert kfd.what == ("KFD skipped GPU 1002:7340: the PCIe path rejects atomic operations, "
                        "so ROCm sees no GPU; its MEC firmware is 123, KFD accepts the card "
                        "without atomics from 145")
    assert kfd.fix is not None and "MEC is >= 145" in kfd.fix and "CPU" in kfd.fix
    assert kfd.line == "kfd kfd: amdgpu: skipped device 1002:7340, PCI rejects atomics 123<145"


@pytest.mark.parametrize("line, fw", [
    # kernels before the firmware threshold (4.x-5.x) print neither "amdgpu: " nor "%d<%d"
    ("[    1.114805] kfd kfd: skipped device 1002:67ef, PCI rejects atomics", False),
    # gfx8 has no threshold: "730<0" (no_atomic_fw_version 0)
    ("kfd kfd: amdgpu: skipped device 1002:67e3, PCI rejects atomics 730<0", False),
    ("Dec 07 10:00:00 box kernel: kfd kfd: amdgpu: skipped device 1002:731f, "
     "PCI rejects atomics 140<145", True),
])
def test_kfd_line_variants(line: str, fw: bool) -> None:
    (finding,) = kernellog.explain([line])
    assert finding.problem and finding.what.startswith("KFD skipped GPU 1002:")
    assert ("KFD accepts the card without atomics" in finding.what) is fw
    assert finding.fix is not None and ("MEC is >=" in finding.fix) is fw


def test_old_drm_wording_and_kmsg_records_firmware_and_reset() -> None:
    (drm,) = kernellog.explain(["[   11.172374] [drm] PCIE atomic ops is not supported"])
    assert drm.what.startswith("the GPU: the PCIe path") and not drm.problem
    log = kernellog.read_saved_log(FIRMWARE_LOG)
    found = kernellog.explain(log.lines)
    assert [(f.problem, f.what.split(":")[0]) for f in found] == [
        (True, "firmware amdgpu/navi10_sos.bin did not load (error -2)"),
        (False, "0000"), (True, "0000")]
    assert found[0].fix == kernellog.FIRMWARE_FIX
    assert "reset failed" in found[2].what and found[2].fix
    # each cause once, however often the kernel repeats it
    assert len(kernellog.explain(list(log.lines) * 3)) == 3


def test_doctor_explains_a_card_kfd_skipped(capsys) -> None:
    try:
        main(["doctor", f"--sysfs-root={FIXTURES / 'sysfs' / 'atomics-rejected'}",
              "--no-docker", "--no-torch", f"--kernel-log={ATOMICS_LOG}"])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 1, out
    assert "FAIL  KFD skipped GPU 1002:7340: the PCIe path rejects atomic operations" in out
    assert "fix: update the GPU firmware" in out and "MEC is >= 145" in out
    assert ("kernel log, " + str(ATOMICS_LOG) + ": kfd kfd: amdgpu: skipped device "
            "1002:7340, PCI rejects atomics 123<145)") in out
    assert "--    0000:03:00.0: the PCIe path to the card does not pass atomic" in out
    assert err.startswith("imagefactory: error: this host is not ready")
    main_json = subprocess.run(
        [sys.executable, "-m", "imagefactory", "doctor", "--json", "--no-docker", "--no-torch",
         f"--sysfs-root={FIXTURES / 'sysfs' / 'atomics-rejected'}",
         f"--kernel-log={ATOMICS_LOG}"], capture_output=True, text=True, cwd=REPO,
        timeout=120)
    assert main_json.returncode == 1
    checks = json.loads(main_json.stdout)["checks"]
    assert [c["ok"] for c in checks if c["name"] == "kernel log"] == [None, False]


def test_an_unreadable_saved_log_is_named_not_raised(tmp_path: Path) -> None:
    log = kernellog.read_saved_log(tmp_path / "nope.log")
    assert log.source is None and log.unread[0].startswith(f"{tmp_path / 'nope.log'}: ")
    (check,) = kernel_log_checks(log)
    assert check.ok is None and check.detail.startswith("kernel log not read: ")
    (check,) = kernel_log_checks(kernellog.read_saved_log(FIXTURES / "kernellog"))
    assert "not a regular file" in check.detail or "cannot read" in check.detail, check


def test_missing_kmsg_falls_back_to_journalctl_or_says_why(tmp_path: Path) -> None:
    log = kernellog.read_system_log(tmp_path / "kmsg")
    assert log.unread[0] == f"{tmp_path / 'kmsg'}: No such file or directory"
    if log.source is None:
        assert log.unread[1].startswith("journalctl -k: ")
    else:
        assert log.source == "journalctl -k" and log.lines


@pytest.mark.root
def test_the_real_kmsg_is_read_by_root_and_refused_to_others() -> None:
    # root reads this machine's /dev/kmsg without blocking (it ends at EAGAIN)
    log = kernellog.read_system_log()
    assert log.source == "/dev/kmsg" and log.lines and log.unread == ()
    # another user, through doctor itself: kernel.dmesg_restrict decides what it may read
    restricted = Path("/proc/sys/kernel/dmesg_restrict").read_text().strip() == "1"
    script = ("import json; from imagefactory.host.kernellog import read_system_log as r; "
              "k = r(); print(json.dumps([k.source, list(k.unread)]))")
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr
    source, unread = json.loads(proc.stdout)
    if restricted:
        assert unread[0].startswith("/dev/kmsg: permission denied (kernel.dmesg_restrict")
        assert source in (None, "journalctl -k")
    else:
        assert source == "/dev/kmsg" and unread == []


_KERNELISH = st.sampled_from([
    "kfd kfd: amdgpu: skipped device ", "PCI rejects atomics ", "PCIE atomic ops is not supported",
    "amdgpu 0000:03:00.0: amdgpu: ", "[drm] ", "Direct firmware load for amdgpu/",
    " failed with error ", "GPU reset(", ") failed", "GPU reset begin!", "<", ":", "1002",
    "7340", "-2", "\x1b[2J", "\x00", "\ufffd", "9" * 30])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.one_of(_KERNELISH, st.text(max_size=20)), max_size=12)
                .map("".join), max_size=20))
def test_hostile_lines_never_raise_and_findings_quote_their_line(lines: list[str]) -> None:
    for f in kernellog.explain(lines):
        assert f.line in [kernellog._message(x) for x in lines]
        assert f.what and "\n" not in f.what
