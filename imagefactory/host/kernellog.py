"""The kernel log lines that explain a missing or rejected AMD GPU, and what to do about them.

A card KFD refused leaves no trace in sysfs (no topology node, no /dev/kfd user): only the
kernel log says why. Read from /dev/kmsg, else `journalctl -k`, else a file the user saved
(`dmesg > log`); each source that cannot be read is named with the reason, so a user without
the right to read the log learns what doctor could not see and how to let it.

The lines matched, and where the kernel prints them (torvalds/linux):
- drivers/gpu/drm/amd/amdkfd/kfd_device.c, kgd2kfd_device_init (002c6ca75289):
  dev_info(kfd_device, "skipped device %x:%x, PCI rejects atomics %d<%d\\n", vendor, device,
  mec_fw_version, no_atomic_fw_version), printed as "kfd kfd: amdgpu: skipped device
  1002:7341, PCI rejects atomics 123<145"; kernels before the firmware threshold print no
  "%d<%d". Navi1x (GC 10.1.1 and up below 10.3) has needs_pci_atomics and
  no_atomic_fw_version 145 (kfd_device_info_init): from MEC firmware 145 KFD takes the card
  without PCIe atomics, so a newer linux-firmware is the fix that needs no new board.
- drivers/gpu/drm/amd/amdgpu/amdgpu_device.c, amdgpu_device_init (002bba562dd3):
  dev_info(adev->dev, "PCIE atomic ops is not supported\\n") when
  pci_enable_atomic_ops_to_root() fails ("amdgpu 0000:03:00.0: amdgpu: PCIE atomic ops is
  not supported"; older kernels print it with DRM_INFO as "[drm] PCIE atomic ops is not
  supported").
- drivers/base/firmware_loader/main.c: "Direct firmware load for %s failed with error %d"
  for an amdgpu/ blob: the card's firmware is not installed.
- amdgpu_device.c, amdgpu_device_gpu_recover: "GPU reset begin!", then "GPU reset(%d)
  succeeded!" or "GPU reset(%d) failed":
  the GPU hung and the driver reset it (every process on it lost its context).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..safety import read_bytes

KMSG = Path("/dev/kmsg")
MAX_LOG = 16 << 20  # a saved log larger than this is cut: the lines doctor wants are at boot
MAX_LINES = 200_000
JOURNALCTL_TIMEOUT = 10.0

# "[  115.27] " (dmesg), "6,1234,5678,-;" (/dev/kmsg records), "Dec 07 10:00:00 host kernel: "
# (journalctl's short format): what precedes the message itself.
_PREFIX = re.compile(r"^(?:\[\s*\d+\.\d+\]\s*|\d+,\d+,\d+,[^;]*;|"
                     r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ kernel: )")
KFD_ATOMICS = re.compile(r"\bkfd kfd: (?:amdgpu: )?skipped device ([0-9a-fA-F]{1,4}):"
                         r"([0-9a-fA-F]{1,4}), PCI rejects atomics(?: (-?\d{1,10})<(\d{1,10}))?")
AMDGPU_ATOMICS = re.compile(r"(?:\bamdgpu ([0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.\d):"
                            r"(?: amdgpu:)? |\[drm\] )PCIE atomic ops is not supported")
FIRMWARE = re.compile(r"Direct firmware load for (amdgpu/[\w.-]{1,64}) failed with error "
                      r"(-?\d{1,5})")
GPU_RESET = re.compile(r"\bamdgpu ([0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.\d):"
                       r"(?: amdgpu:)? GPU reset(?: begin!|\(\d{1,6}\) (failed|succeeded!))")

FIRMWARE_FIX = ("install the card's firmware: sudo apt install firmware-amd-graphics (Debian; "
                "Ubuntu/Fedora: linux-firmware), then reboot")


@dataclass(frozen=True)
class KernelLog:
    lines: tuple[str, ...]
    source: str | None  # where the lines came from; None: nothing could be read
    unread: tuple[str, ...] = ()  # "SOURCE: why not", for every source tried before


@dataclass(frozen=True)
class Finding:
    what: str  # one line: what the kernel said, in words
    fix: str | None
    problem: bool  # a reason the GPU is missing or unusable (doctor fails), or a hint
    line: str  # the kernel's own line, as evidence


def _message(raw: str) -> str:
    return _PREFIX.sub("", raw.rstrip("\r\n"), count=1)


def read_kmsg(path: Path = KMSG) -> list[str]:
    """Every record /dev/kmsg holds now, without blocking (EAGAIN ends the buffer)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    lines: list[str] = []
    try:
        while len(lines) < MAX_LINES:
            try:
                record = os.read(fd, 8192)
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    break
                if exc.errno == errno.EPIPE:  # overwritten while reading: go on
                    continue
                raise
            if not record:
                break
            # A record's continuation lines (" KEY=value") are metadata, not messages.
            lines.append(record.decode("utf-8", errors="replace").split("\n", 1)[0])
    finally:
        os.close(fd)
    return lines


def read_journal(timeout: float = JOURNALCTL_TIMEOUT) -> list[str]:
    tool = shutil.which("journalctl")
    if tool is None:
        raise OSError("journalctl is not installed")
    proc = subprocess.run([tool, "-k", "-b", "-o", "cat", "--no-pager", "-q"],
                          capture_output=True, timeout=timeout, check=False)
    text = proc.stdout.decode("utf-8", errors="replace")
    if proc.returncode != 0 or not text.strip():
        err = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise OSError(err[0][:200] if err else f"no kernel messages (exit {proc.returncode})")
    return text.splitlines()[:MAX_LINES]


def _why(exc: BaseException) -> str:
    if isinstance(exc, PermissionError):
        return ("permission denied (kernel.dmesg_restrict: run doctor with sudo, or save "
                "`sudo dmesg > kernel.log` and pass --kernel-log kernel.log)")
    if isinstance(exc, subprocess.TimeoutExpired):
        return "journalctl did not answer in time"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def read_system_log(kmsg: Path = KMSG) -> KernelLog:
    """/dev/kmsg, else journalctl -k (members of adm/systemd-journal may read it unprivileged)."""
    unread: list[str] = []
    try:
        return KernelLog(tuple(read_kmsg(kmsg)), str(kmsg))
    except OSError as exc:
        unread.append(f"{kmsg}: {_why(exc)}")
    try:
        return KernelLog(tuple(read_journal()), "journalctl -k", tuple(unread))
    except (OSError, subprocess.SubprocessError) as exc:
        unread.append(f"journalctl -k: {_why(exc)}")
    return KernelLog((), None, tuple(unread))


def read_saved_log(path: Path) -> KernelLog:
    """A log the user saved (dmesg, journalctl -k): read as text, cut at MAX_LOG bytes."""
    try:
        data = read_bytes(path, MAX_LOG)
    except Exception as exc:  # read_bytes raises on a device, a FIFO or an oversize file
        return KernelLog((), None, (f"{path}: {_why(exc)}",))
    return KernelLog(tuple(data.decode("utf-8", errors="replace").splitlines()[:MAX_LINES]),
                     str(path))


def explain(lines: tuple[str, ...] | list[str]) -> list[Finding]:
    """The findings, one per distinct cause and device, in log order."""
    out: list[Finding] = []
    seen: set[tuple[str, str]] = set()

    def add(key: tuple[str, str], finding: Finding) -> None:
        if key not in seen:
            seen.add(key)
            out.append(finding)

    for raw in lines:
        msg = _message(raw)
        if "atomic" in msg:
            if m := KFD_ATOMICS.search(msg):
                add(("kfd-atomics", m.group(2).lower()), _kfd_atomics(m, msg))
                continue
            if m := AMDGPU_ATOMICS.search(msg):
                slot = m.group(1) or "the GPU"
                add(("amdgpu-atomics", slot), Finding(
                    f"{slot}: the PCIe path to the card does not pass atomic operations "
                    "(amdgpu: PCIE atomic ops is not supported); ROCm on RDNA1 then needs "
                    "MEC firmware 145 or newer, else KFD skips the card", None, False, msg))
                continue
        if m := FIRMWARE.search(msg):
            add(("firmware", m.group(1)), Finding(
                f"firmware {m.group(1)} did not load (error {m.group(2)}): the card stays "
                "without compute", FIRMWARE_FIX, True, msg))
        elif m := GPU_RESET.search(msg):
            failed = m.group(2) == "failed"
            add(("reset", m.group(1) + str(failed)), Finding(
                f"{m.group(1)}: the GPU hung and was reset"
                + (" and the reset failed: reboot before using it" if failed
                   else " (every program on it lost its work)"),
                None if not failed else "reboot; if it repeats, `imagefactory test` the "
                "image and report the case that hangs", failed, msg))
    return out


def _kfd_atomics(m: re.Match[str], msg: str) -> Finding:
    device = f"{m.group(1).lower()}:{m.group(2).lower()}"
    have, need = m.group(3), m.group(4)
    fw = ""
    fix = ("put the card in a PCIe slot wired to the CPU (not through the chipset or a "
           "riser/switch), or enable PCIe atomics/Above 4G decoding in the firmware setup")
    if have is not None and need is not None and int(need) > 0:
        fw = f"; its MEC firmware is {have}, KFD accepts the card without atomics from {need}"
        fix = (f"update the GPU firmware (a newer linux-firmware; Debian: "
               f"firmware-amd-graphics) so MEC is >= {need}, update the initramfs and "
               f"reboot; or {fix}")
    return Finding(f"KFD skipped GPU {device}: the PCIe path rejects atomic operations, so "
                   f"ROCm sees no GPU{fw}", fix, True, msg)
