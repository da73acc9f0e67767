"""Fault hook, FOR TESTS ONLY: makes a case's child fail for real, in the way a broken GPU
stack does, so the parent's isolation and classification are tested end to end without a GPU.

Switched on only by IMAGEFACTORY_CONVCHECK_FAULTS="GLOB=FAULT,GLOB=FAULT" (first matching
glob wins), which nothing in the images sets. Faults:
  hang                 blocks forever (and leaves a grandchild in the child's process group,
                       so the test sees the whole group killed)
  segv                 dies by a real SIGSEGV
  abort                os.abort() with no signature (SIGABRT)
  aperture-violation   HSA runtime message on stderr, then abort (what ROCm does)
  memory-fault         "Memory access fault by GPU node-1 ...", then abort
  invalid-isa          HSA_STATUS_ERROR_INVALID_ISA, then abort
  no-kernel            RuntimeError "HIP error: invalid device function" (what torch raises)
  miopen-error         RuntimeError "miopenStatusUnknownError" (what torch raises)
  raise                an ordinary Python exception
  wrong                the case runs but returns a perturbed result
  exit-abort           the case runs and prints its result, then aborts at exit (an atexit
                       handler: "terminate called without an active exception")
  gpu-hang             ROCr's "HW Exception by GPU node-1 ... reason :GPU Hang", then abort
  illegal-instruction  HSA_STATUS_ERROR_ILLEGAL_INSTRUCTION queue abort (CLR's wording)
  gpu-exception        HSA_STATUS_ERROR_EXCEPTION queue abort
  tensile              rocBLAS "Cannot read .../TensileLibrary_lazy_gfx1010.dat", then abort
  illegal-address      RuntimeError "HIP error: an illegal memory access was encountered"
  oom                  a real allocation torch cannot make (2**62 bytes on the CPU)
  compile:SECONDS      keeps a core busy for SECONDS (wall clock) inside the first call, then
                       runs normally: a kernel compiling past the timeout
  spin                 burns CPU forever: a hang that keeps its process busy

The fork server (zygote.py) has fault points of its own, matched only by rules whose glob
starts with "zygote" (so "*=segv" never hits it): "zygote" when it starts (before it is
ready: raise = it cannot start, segv/abort = it dies), "zygote:CASE_ID" right after it
forked that case's child (segv/abort = it dies while the case runs).
"""

from __future__ import annotations

import atexit
import fnmatch
import os
import signal
import subprocess
import sys
import threading
import time

ENV = "IMAGEFACTORY_CONVCHECK_FAULTS"
GRANDCHILD_MARK = "convcheck-fault-grandchild"

_ABORT_MESSAGES = {
    "aperture-violation": (
        ":0:rocdevice.cpp            :2614: 0123456789 us: [pid:1 tid:0x1] Callback: Queue "
        "0x7f0000000000 aborting with error : HSA_STATUS_ERROR_MEMORY_APERTURE_VIOLATION: "
        "The agent attempted to access memory beyond the largest legal address. code: 0x29"
    ),
    "memory-fault": (
        "Memory access fault by GPU node-1 (Agent handle: 0x5555) on address 0x7fa860641000. "
        "Reason: Page not present or supervisor privilege."
    ),
    "invalid-isa": (
        ":0:rocdevice.cpp            :2614: 0123456789 us: Callback: Queue aborting with "
        "error : HSA_STATUS_ERROR_INVALID_ISA: The instruction set architecture is invalid. "
        "code: 0x100f"
    ),
    # ROCR src/core/runtime/runtime.cpp @ rocm-6.2.4 HwExceptionHandler's fprintf
    "gpu-hang": "HW Exception by GPU node-1 (Agent handle: 0x5555f2a0) reason :GPU Hang",
    # CLR rocclr/device/rocm/rocdevice.cpp @ rocm-6.2.2 callbackQueue + ROCR hsa.cpp strings
    "illegal-instruction": (
        ":0:rocdevice.cpp            :2985: 0123456789 us: [pid:1 tid:0x1] Callback: Queue "
        "0x7f0000000000 aborting with error : HSA_STATUS_ERROR_ILLEGAL_INSTRUCTION: The agent "
        "attempted to execute an illegal shader instruction. code: 0x2a"
    ),
    "gpu-exception": (
        ":0:rocdevice.cpp            :2985: 0123456789 us: [pid:1 tid:0x1] Callback: Queue "
        "0x7f0000000000 aborting with error : HSA_STATUS_ERROR_EXCEPTION: An HSAIL operation "
        "resulted in a hardware exception. code: 0x1016"
    ),
    # rocBLAS library/src/tensile_host.cpp @ rocm-6.2.2, then rocblas_abort()
    "tensile": (
        "\nrocBLAS error: Cannot read /opt/rocm/lib/rocblas/library/"
        "TensileLibrary_lazy_gfx1010.dat: No such file or directory for GPU arch : gfx1010\n"
        " List of available TensileLibrary Files : "
    ),
    "abort": "",
}
_RAISE_MESSAGES = {
    "no-kernel": "HIP error: invalid device function\nHIP kernel errors might be asynchronously "
    "reported at some other API call",
    "miopen-error": "miopenStatusUnknownError",
    "illegal-address": "HIP error: an illegal memory access was encountered",
    "raise": "injected ordinary failure",
}
EXIT_MESSAGE = "terminate called without an active exception"
FAULTS = ("hang", "segv", "wrong", "exit-abort", "oom", "spin",
          "compile:SECONDS", *_ABORT_MESSAGES, *_RAISE_MESSAGES)


def _valid(fault: str) -> bool:
    if fault.startswith("compile:"):
        try:
            return float(fault.partition(":")[2]) >= 0
        except ValueError:
            return False
    return fault in FAULTS


def parse(spec: str) -> list[tuple[str, str]]:
    """[(glob, fault)] from "GLOB=FAULT,..."; unknown faults are an error, not ignored."""
    rules = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        glob, sep, fault = item.rpartition("=")
        if not sep or not glob or not _valid(fault):
            raise ValueError(f"{ENV}: bad rule {item!r} (faults: {', '.join(FAULTS)})")
        rules.append((glob, fault))
    return rules


def fault_for(case_id: str, environ: dict[str, str] | None = None) -> str | None:
    spec = (os.environ if environ is None else environ).get(ENV, "")
    for glob, fault in parse(spec):
        if fnmatch.fnmatchcase(case_id, glob):
            return fault
    return None


def zygote_fault(point: str, environ: dict[str, str] | None = None) -> str | None:
    """The fault for a zygote fault point ("zygote" or "zygote:CASE_ID")."""
    spec = (os.environ if environ is None else environ).get(ENV, "")
    for glob, fault in parse(spec):
        if glob.startswith("zygote") and fnmatch.fnmatchcase(point, glob):
            return fault
    return None


def trigger(fault: str) -> None:
    """Fail now, for real. Returns for "wrong" (the caller perturbs the result) and the
    exit faults (they strike at interpreter exit)."""
    if fault == "exit-abort":
        atexit.register(_abort_at_exit)
    elif fault == "hang":
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(86400)",
                          GRANDCHILD_MARK])
        threading.Event().wait()
    elif fault.startswith("compile:"):
        _burn(float(fault.partition(":")[2]))
    elif fault == "spin":
        _burn(float("inf"))
    elif fault == "oom":
        import torch

        torch.empty(1 << 62, dtype=torch.uint8)  # the allocator's own error, raised for real
    elif fault == "segv":
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault in _ABORT_MESSAGES:
        sys.stderr.write(_ABORT_MESSAGES[fault] + "\n")
        sys.stderr.flush()
        os.abort()
    elif fault in _RAISE_MESSAGES:
        raise RuntimeError(_RAISE_MESSAGES[fault])


def _burn(seconds: float) -> None:
    """Keep one core busy for `seconds`, as a compiler would (wall clock, so the fault lasts
    as long on a loaded machine as on an idle one)."""
    deadline = time.monotonic() + seconds
    x = 0
    while time.monotonic() < deadline:
        for i in range(10000):
            x ^= i


def _abort_at_exit() -> None:
    sys.stdout.flush()
    sys.stderr.write(EXIT_MESSAGE + "\n")
    sys.stderr.flush()
    os.abort()
