"""Decide a case's class from its child's real exit status and output (design.md's table).

Order of evidence:
  1. no result before the timeout (and its one longer budget, see runner) -> hang
  2. a failure signature in stdout+stderr, when the child failed (non-zero exit or no
     result line); the most specific signature wins -> gpu-hang, aperture-violation,
     memory-fault, illegal-instruction, gpu-exception, no-kernel, invalid-isa,
     out-of-memory, miopen-error, compile-error
  3. killed by a signal (SIGSEGV, SIGABRT, also SIGKILL/SIGBUS/SIGILL...) -> crash
  4. exited 0 with a result line                     -> the child's own verdict (ok,
                                                        wrong-result, skipped)
  5. anything else: an ordinary Python exception (or no result line) -> error
`not-run` is the parent's: cases left after a gpu-hang (the driver reset the GPU).
A child that printed a result and then crashed at exit is classified by the crash: users'
scripts would die the same way. Signatures in the output of a child that succeeded
(MIOpen logs warnings it recovers from) are kept in the detail only.
"""

from __future__ import annotations

import json
import re
import signal
from dataclasses import dataclass
from typing import Any

from convcheck import vocabulary

# The classes, the child's own verdicts and the class that ends the run are vocabulary.py's
# (imported by the host too); CLASSES here is their names, in the table's order.
CLASSES: tuple[str, ...] = tuple(vocabulary.CLASSES)
CHILD_VERDICTS = vocabulary.CHILD_VERDICTS
GPU_RESET_CLASSES = vocabulary.GPU_RESET_CLASSES

# The strings below are the runtimes' own; where each is printed (upstream file @ ref):
#   ROCR  = ROCm/ROCR-Runtime @ rocm-6.2.4 (same text in rocm-5.2.3 unless noted)
#   CLR   = ROCm/clr @ rocm-6.2.2
#   BLAS  = ROCm/rocBLAS @ rocm-6.2.2 (same text in rocm-5.2.3)
# Most specific first: after a GPU reset every queue also reports its own error; an aperture
# violation is also reported as a memory fault by some runtimes; MIOpen wraps HIP's errors.
SIGNATURES: tuple[tuple[str, re.Pattern[str]], ...] = (
    # ROCR src/core/runtime/runtime.cpp, Runtime::HwExceptionHandler: "HW Exception by GPU
    # node-%u (Agent handle: %p) reason :%s" with "GPU Hang" (or "ECC"), then abort(); KFD
    # reports it to every process with queues on the GPU it is resetting. Present at
    # rocm-6.0.0 and rocm-6.2.4, absent at rocm-5.2.3 (there a reset shows up as the queue
    # errors below, or as a hang).
    ("gpu-hang", re.compile(r"HW Exception by GPU node-\d+ \(Agent handle: [^)]*\) "
                            r"reason :(GPU Hang|ECC)")),
    # ROCR src/core/runtime/hsa.cpp hsa_status_string(); printed by CLR
    # rocclr/device/rocm/rocdevice.cpp callbackQueue "Callback: Queue %p aborting with error :
    # %s code: 0x%x", then abort().
    ("aperture-violation", re.compile(r"HSA_STATUS_ERROR_MEMORY_APERTURE_VIOLATION")),
    # ROCR runtime.cpp VMFaultHandler "Memory access fault by GPU node-%u (Agent handle: %p)
    # on address %p%s. Reason: %s."; CLR hipamd/src/hip_error.cpp hipErrorIllegalAddress
    # "an illegal memory access was encountered" (CUDA's cudaErrorIllegalAddress reads the
    # same, so an NVIDIA fault lands here too).
    ("memory-fault", re.compile(r"Memory access fault by GPU|HSA_STATUS_ERROR_MEMORY_FAULT"
                                r"|an illegal memory access was encountered")),
    # ROCR hsa.cpp "HSA_STATUS_ERROR_ILLEGAL_INSTRUCTION: The agent attempted to execute an
    # illegal shader instruction." (amd_aql_queue.cpp maps the queue's exception to it): e.g.
    # a gfx10 kernel using DPP forms only gfx9 has.
    ("illegal-instruction", re.compile(r"HSA_STATUS_ERROR_ILLEGAL_INSTRUCTION")),
    # ROCR hsa.cpp "HSA_STATUS_ERROR_EXCEPTION: An HSAIL operation resulted in a hardware
    # exception." (amd_aql_queue.cpp: the queue's other hardware exceptions).
    ("gpu-exception", re.compile(r"HSA_STATUS_ERROR_EXCEPTION\b")),
    # Code object without this ISA: HIP's hipErrorNoBinaryForGpu / "invalid device function"
    # (CLR hip_error.cpp), CUDA's "no kernel image is available"; rocBLAS without Tensile
    # code for the GPU: BLAS library/src/tensile_host.cpp "rocBLAS error: Cannot read
    # <path>/TensileLibrary...: <errno>" then rocblas_abort(), or "Could not load".
    # hipBLASLt without the ISA (TheRock builds none for gfx101X): its tensile_host.cpp
    # prints "rocblaslt error: Cannot read <path>: <strerror>" (path ending in
    # TensileLibrary_lazy_<gfx>.dat; the message is found in ROCm/hipBLASLt's source by the
    # search tool) and then fails the call; the code object it lazily loads is reported
    # missing as "hipModuleLoad failed: Kernels.so-000-<gfx>.hsaco error: file not found"
    # (TheRock issues 7609/6467, as issue 27 quotes them; not yet traced to its printer).
    ("no-kernel", re.compile(r"invalid device function|hipErrorNoBinaryForGpu"
                             r"|no kernel image is available"
                             r"|rocBLAS error: (Cannot read|Could not load) \S*TensileLibrary"
                             r"|rocblaslt error: (Cannot read|Could not load) \S*TensileLibrary"
                             r"|hipModuleLoad failed: \S+\.hsaco")),
    ("invalid-isa", re.compile(r"HSA_STATUS_ERROR_INVALID_ISA")),
    # CLR hip_error.cpp hipErrorOutOfMemory "out of memory"; torch's caching allocator
    # "CUDA out of memory." ("HIP out of memory." in ROCm builds); ROCR hsa.cpp
    # "HSA_STATUS_ERROR_OUT_OF_RESOURCES" (CLR callbackQueue adds the free memory); torch's
    # CPU allocator "DefaultCPUAllocator: can't allocate memory".
    ("out-of-memory", re.compile(r"out of memory|HSA_STATUS_ERROR_OUT_OF_RESOURCES"
                                 r"|can't allocate memory")),
    ("miopen-error", re.compile(r"miopenStatus(?!Success)\w+")),
    # torch.compile could not build a kernel (issue 27): dynamo wraps the backend's exception
    # as "torch._dynamo.exc.BackendCompilerFailed: backend='inductor' raised:" (torch 2.x
    # torch/_dynamo/exc.py; seen in the cpu image with torch 2.6 when setuptools was missing),
    # torch 2.7+ raise torch._inductor.exc.InductorError (as in vladmandic/sdnext issue 4355);
    # Triton's launcher reports "Triton Error [HIP]: ..." / "[CUDA]: ..." (ROCm/triton issue
    # 552, pytorch/pytorch issue 119054). Last: a missing code object inside it stays
    # no-kernel, a fault stays a fault.
    ("compile-error", re.compile(r"BackendCompilerFailed: backend='[\w.]+' raised"
                                 r"|\bInductorError\b|Triton Error \[(HIP|CUDA)\]"
                                 r"|triton\.compiler\.errors\.CompilationError")),
)

RESULT_MARK = "CONVCHECK-RESULT "
MAX_DETAIL = 200


@dataclass
class Verdict:
    status: str
    detail: str
    result: dict[str, Any] | None = None


def find_signature(output: str) -> tuple[str, str] | None:
    """(class, the line it was found on) of the most specific signature in output."""
    for cls, pattern in SIGNATURES:
        match = pattern.search(output)
        if match:
            start = output.rfind("\n", 0, match.start()) + 1
            end = output.find("\n", match.end())
            return cls, short(output[start : end if end >= 0 else len(output)])
    return None


def parse_result(stdout: str) -> dict[str, Any] | None:
    """The child's last result line (JSON), if it printed one."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            try:
                value = json.loads(line[len(RESULT_MARK) :])
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def signal_of(returncode: int | None) -> int | None:
    """The signal that killed the child: negative codes from subprocess, 128+N from shells."""
    if returncode is None:
        return None
    if returncode < 0:
        return -returncode
    if 128 < returncode < 128 + 65:
        return returncode - 128
    return None


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def classify(returncode: int | None, stdout: str, stderr: str, timed_out: bool) -> Verdict:
    """One class for one child run; returncode None means it never exited."""
    output = f"{stdout}\n{stderr}"
    result = parse_result(stdout)
    if timed_out:
        return Verdict("hang", "no result before the timeout; child killed", result)
    failed = returncode != 0 or result is None
    sig = find_signature(output)
    if failed and sig:
        return Verdict(sig[0], sig[1], result)
    signum = signal_of(returncode)
    if signum is not None:
        after = " after printing its result" if result else ""
        last = last_error_line(stderr)  # "terminate called after throwing...", if any
        return Verdict("crash", short(f"killed by {signal_name(signum)}{after}"
                                       + (f": {last}" if last else "")), result)
    if result is not None and returncode == 0:
        status = result.get("status")
        if status not in CHILD_VERDICTS:
            return Verdict("error", f"child reported unknown status {status!r}", result)
        detail = str(result.get("detail", ""))
        if sig:
            detail = short(f"{detail}; output had: {sig[1]}".lstrip("; "))
        return Verdict(status, detail, result)
    return Verdict("error", last_error_line(stderr) or f"exit status {returncode}", result)


def last_error_line(stderr: str) -> str:
    """The exception line of a Python traceback (its last non-blank line)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return short(lines[-1]) if lines else ""


def short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 3] + "..."
