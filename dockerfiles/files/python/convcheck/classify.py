"""Decide a case's class from its child's real exit status and output (design.md's table).

Order of evidence:
  1. no result before the timeout                    -> hang
  2. a failure signature in stdout+stderr, when the child failed (non-zero exit or no
     result line); the most specific signature wins -> aperture-violation, memory-fault,
     invalid-isa, no-kernel, miopen-error
  3. killed by a signal (SIGSEGV, SIGABRT, also SIGKILL/SIGBUS/SIGILL...) -> crash
  4. exited 0 with a result line                     -> the child's own verdict (ok, wrong-result)
  5. anything else: an ordinary Python exception (or no result line) -> error
A child that printed a result and then crashed at exit is classified by the crash: users'
scripts would die the same way. Signatures in the output of a child that succeeded
(MIOpen logs warnings it recovers from) are kept in the detail only.
"""

from __future__ import annotations

import json
import re
import signal
from dataclasses import dataclass

CLASSES = (
    "ok",
    "wrong-result",
    "hang",
    "aperture-violation",
    "memory-fault",
    "no-kernel",
    "invalid-isa",
    "miopen-error",
    "crash",
    "error",
)

# Most specific first: an aperture violation is also reported as a memory fault by some
# runtimes, and MIOpen wraps HIP's errors in its own status.
SIGNATURES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("aperture-violation", re.compile(r"HSA_STATUS_ERROR_MEMORY_APERTURE_VIOLATION")),
    ("memory-fault", re.compile(r"Memory access fault by GPU|HSA_STATUS_ERROR_MEMORY_FAULT")),
    ("invalid-isa", re.compile(r"HSA_STATUS_ERROR_INVALID_ISA")),
    ("no-kernel", re.compile(r"invalid device function|hipErrorNoBinaryForGpu"
                             r"|no kernel image is available")),
    ("miopen-error", re.compile(r"miopenStatus(?!Success)\w+")),
)

RESULT_MARK = "CONVCHECK-RESULT "
MAX_DETAIL = 200


@dataclass
class Verdict:
    status: str
    detail: str
    result: dict | None = None


def find_signature(output: str) -> tuple[str, str] | None:
    """(class, the line it was found on) of the most specific signature in output."""
    for cls, pattern in SIGNATURES:
        match = pattern.search(output)
        if match:
            start = output.rfind("\n", 0, match.start()) + 1
            end = output.find("\n", match.end())
            return cls, short(output[start : end if end >= 0 else len(output)])
    return None


def parse_result(stdout: str) -> dict | None:
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
        if status not in ("ok", "wrong-result"):
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
