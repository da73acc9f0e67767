"""The parent side: one child process per case, killed with its whole process group at the
timeout, then classified. Never imports torch, so nothing a case does can take it down."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from convcheck.cases import Case
from convcheck.classify import CLASSES, Verdict, classify, parse_result

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILL_GRACE = 10.0  # seconds to wait for a SIGKILLed child's pipes (a GPU-stuck one may never)


@dataclass
class ChildRun:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The parent's env plus the profile's, with this package (and its sitecustomize) first
    on PYTHONPATH even when the check was started by a script path."""
    env = dict(os.environ)
    env.update(extra)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if not any(os.path.abspath(p) == PACKAGE_ROOT for p in parts):
        parts.insert(0, PACKAGE_ROOT)
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def run_child(args: list[str], env: dict[str, str], timeout: float) -> ChildRun:
    """Run `python -m convcheck ARGS` in a new session (its own process group)."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "convcheck", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, start_new_session=True, text=True, errors="replace",
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc.pid)
        try:
            out, err = proc.communicate(timeout=KILL_GRACE)
        except subprocess.TimeoutExpired:  # stuck in the driver; leave it, report the hang
            out, err = "", "child did not die after SIGKILL"
    except BaseException:  # Ctrl-C or SIGTERM of the parent: take the case down with it
        _kill_group(proc.pid)
        raise
    _kill_group(proc.pid)  # strays the case left in its group
    return ChildRun(proc.poll(), out or "", err or "", timed_out, time.monotonic() - start)


def run_case(case: Case, device: str, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """One case end to end: the JSON entry of design's result schema."""
    run = run_child(["--run-case", case.id, "--device", device], env, timeout)
    verdict: Verdict = classify(run.returncode, run.stdout, run.stderr, run.timed_out)
    result = verdict.result or {}
    measured = verdict.status in ("ok", "wrong-result")
    return {
        "case": case.id,
        "status": verdict.status,
        "seconds": round(run.seconds, 3),
        "gflops": result.get("gflops") if measured else None,
        "max_abs_err": result.get("max_abs_err") if measured else None,
        "max_rel_err": result.get("max_rel_err") if measured else None,
        "detail": verdict.detail,
    }


def probe(device: str, env: dict[str, str], timeout: float) -> tuple[dict[str, Any], str]:
    """(torch/GPU facts, "" or why they are missing), from a child of its own."""
    run = run_child(["--probe", "--device", device], env, timeout)
    info = parse_result(run.stdout)
    if run.returncode == 0 and info:
        return info, ""
    verdict = classify(run.returncode, run.stdout, run.stderr, run.timed_out)
    return {}, f"probe failed: {verdict.status}: {verdict.detail}"


def summarize(results: list[dict[str, Any]]) -> dict[str, int]:
    """Count per class, in the table's order; classes with no case are left out."""
    counts = {cls: 0 for cls in CLASSES}
    for entry in results:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    return {cls: n for cls, n in counts.items() if n}
