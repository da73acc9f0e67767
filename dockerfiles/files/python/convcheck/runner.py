"""The parent side: one child process per case, killed with its whole process group at the
timeout, then classified. Never imports torch, so nothing a case does can take it down.

Two ways to make a case's child (--isolation): `spawn` starts a fresh interpreter per case
(`python3 -m convcheck --run-case ID`), `fork` has a zygote that imported torch once fork it
(zygote.py). Either way the child runs the same child-mode code in its own session, the
parent kills that session's process group at the timeout and classifies the child's own
exit status and output. A zygote that cannot start, dies or gets stuck is replaced or, if
that fails too, the run goes on with `spawn` and says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from convcheck.cases import Case
from convcheck.classify import CLASSES, Verdict, classify, parse_result, short
from convcheck.zygote import Zygote, ZygoteError, ZygoteTimeout

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILL_GRACE = 10.0  # seconds to wait for a SIGKILLed child's pipes (a GPU-stuck one may never)
ISOLATIONS = ("fork", "spawn")
DEFAULT_ISOLATION = "fork" if hasattr(os, "fork") else "spawn"
MAX_ZYGOTES = 3  # zygote starts per run; past that (or a failed start) cases are spawned


@dataclass
class ChildRun:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float
    isolation: str = "spawn"


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
    return ChildRun(proc.poll(), out or "", err or "", timed_out, time.monotonic() - start,
                    "spawn")


class Launcher:
    """Runs child-mode argument lists, each in a child of its own; `spawn` or `fork`."""

    def __init__(self, isolation: str, env: dict[str, str]) -> None:
        if isolation not in ISOLATIONS:
            raise ValueError(f"unknown isolation {isolation!r}")
        self.isolation = isolation
        self.env = env
        self.notes: list[str] = []  # what the run should print: fallbacks and restarts
        self._zygote: Zygote | None = None
        self._starts = 0
        self._spawn_only = isolation == "spawn"
        self._workdir: str | None = None
        self._count = 0

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def take_notes(self) -> list[str]:
        notes, self.notes = self.notes, []
        return notes

    def close(self) -> None:
        self._drop_zygote()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def run(self, args: list[str], timeout: float) -> ChildRun:
        zygote = None if self._spawn_only else self._ready_zygote(timeout)
        if zygote is None:
            return run_child(args, self.env, timeout)
        try:
            return self._fork_run(zygote, args, timeout)
        except ZygoteError as exc:  # it died under this case: the case runs again, spawned
            self._give_up(f"zygote {exc}")
            return run_child(args, self.env, timeout)

    # -- fork --------------------------------------------------------------------------
    def _ready_zygote(self, timeout: float) -> Zygote | None:
        if self._zygote is not None:
            if self._zygote.alive():
                return self._zygote
            self._give_up(f"zygote exited {self._zygote.proc.returncode} between cases")
            return None
        if self._starts >= MAX_ZYGOTES:
            self._give_up(f"{MAX_ZYGOTES} zygotes used up")
            return None
        self._starts += 1
        try:
            if self._workdir is None:
                self._workdir = tempfile.mkdtemp(prefix="convcheck-")
            self._zygote = Zygote(self.env, self._workdir, timeout)
        except (OSError, ZygoteError) as exc:
            self._give_up(f"zygote {exc}")
            return None
        if self._starts > 1:
            self.notes.append("isolation=fork: a new zygote took over")
        return self._zygote

    def _give_up(self, why: str) -> None:
        self._drop_zygote()
        self._spawn_only = True
        self.notes.append(f"isolation=fork failed ({why}); the cases from here on run "
                          "with isolation=spawn")

    def _drop_zygote(self) -> None:
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None

    def _fork_run(self, zygote: Zygote, args: list[str], timeout: float) -> ChildRun:
        assert self._workdir is not None
        self._count += 1
        base = os.path.join(self._workdir, f"child-{self._count}")
        out_path, err_path = base + ".out", base + ".err"
        start = time.monotonic()
        zygote.request(args, out_path, err_path)
        try:
            pid = zygote.started(timeout)
        except ZygoteTimeout as exc:  # a fork takes milliseconds: the zygote is stuck
            raise ZygoteError(f"did not fork in {timeout:.0f} s") from exc
        timed_out, stuck = False, False
        try:
            left = timeout - (time.monotonic() - start)
            returncode: int | None = zygote.finished(pid, max(left, 0.0))
        except ZygoteTimeout:
            timed_out = True
            _kill_group(pid)
            try:
                returncode = zygote.finished(pid, KILL_GRACE)
            except ZygoteTimeout:  # stuck in the driver: report the hang, replace the zygote
                returncode, stuck = None, True
        except BaseException:  # the zygote died (the caller reruns), Ctrl-C or SIGTERM
            _kill_group(pid)
            raise
        _kill_group(pid)  # strays the case left in its group
        seconds = time.monotonic() - start
        out, err = _read_and_remove(out_path), _read_and_remove(err_path)
        if stuck:
            self._drop_zygote()
            self.notes.append(f"isolation=fork: child {pid} did not die after SIGKILL; "
                              "its zygote was dropped")
            err = (err + "\n" if err else "") + "child did not die after SIGKILL"
        return ChildRun(returncode, out, err, timed_out, seconds, "fork")


def _read_and_remove(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return ""
    with contextlib.suppress(OSError):
        os.remove(path)
    return data.decode(errors="replace")


def run_case(case: Case, device: str, launcher: Launcher, timeout: float) -> dict[str, Any]:
    """One case end to end: the JSON entry of design's result schema.

    A forked child that printed its result and then died at exit is run again, spawned,
    and the spawned child decides: on the H100 (torch 2.11+cu130) 4 of ~260 forked backward
    cases aborted at exit ("terminate called without an active exception"), none of ~80
    spawned ones, so such a crash may be the fork's, not the stack's. A crash at exit that
    the stack itself causes happens spawned too and is reported as before.
    """
    args = ["--run-case", case.id, "--device", device]
    run = launcher.run(args, timeout)
    verdict: Verdict = classify(run.returncode, run.stdout, run.stderr, run.timed_out)
    if run.isolation == "fork" and verdict.status == "crash" and verdict.result is not None:
        launcher.notes.append(f"{case.id}: the forked child {verdict.detail}; "
                              "running it again with isolation=spawn")
        run = run_child(args, launcher.env, timeout)
        verdict = classify(run.returncode, run.stdout, run.stderr, run.timed_out)
        verdict.detail = short(f"{verdict.detail}; (forked first: crashed at exit)"
                               .lstrip("; "))
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
        "isolation": run.isolation,
    }


def probe(device: str, launcher: Launcher, timeout: float) -> tuple[dict[str, Any], str]:
    """(torch/GPU facts, "" or why they are missing), from a child of its own."""
    run = launcher.run(["--probe", "--device", device], timeout)
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
