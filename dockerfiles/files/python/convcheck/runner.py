"""The parent side: one child process per case, killed with its whole process group at the
timeout, then classified. Never imports torch, so nothing a case does can take it down.

Two ways to make a case's child (--isolation): `spawn` starts a fresh interpreter per case
(`python3 -m convcheck --run-case ID`), `fork` has a zygote that imported torch once fork it
(zygote.py). Either way the child runs the same child-mode code in its own session, the
parent kills that session's process group at the timeout and classifies the child's own
exit status and output. A zygote that cannot start, dies or gets stuck is replaced or, if
that fails too, the run goes on with `spawn` and says so.

Compiling is not hanging: on a first run MIOpen builds kernels for minutes (and old ROCm
spawns clang to do it, inside the case's process group). A case still without a result at
its timeout whose process group is busy (used CPU in the last BUSY_WINDOW seconds, or has a
runnable process: on a loaded machine a compiler may be waiting for a core) gets one longer
budget (--retry-budget) instead of being killed: killing it would throw the compile away
(MIOpen stores a kernel in its cache once it is built), and a rerun would start it over. The
group is watched window by window through that budget: once it is idle without a result it
is a hang and killed at once. A real hang waits in the driver without CPU, so it is killed
at the timeout plus one window; a busy hang (a CUDA spin-wait, a kernel loop) at timeout +
retry budget.
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
from typing import Any, Callable

from convcheck.cases import Case
from convcheck.classify import CLASSES, Verdict, classify, parse_result, short
from convcheck.vocabulary import AREAS, NOT_RUN, OK, WRONG_RESULT, area_works
from convcheck.zygote import Zygote, ZygoteError, ZygoteTimeout

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILL_GRACE = 10.0  # seconds to wait for a SIGKILLed child's pipes (a GPU-stuck one may never)
ISOLATIONS = ("fork", "spawn")
DEFAULT_ISOLATION = "fork" if hasattr(os, "fork") else "spawn"
MAX_ZYGOTES = 3  # zygote starts per run; past that (or a failed start) cases are spawned
BUSY_WINDOW = 2.0  # seconds the group's CPU time is watched at the timeout...
BUSY_MIN_CPU = 0.1  # ...and the CPU seconds in it that mean "still working" (a waiting
# process uses ~0; a compiler on a loaded 2-core machine still gets >= 0.5 of 2 s)


@dataclass
class ChildRun:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float
    isolation: str = "spawn"
    extended: float = 0.0  # seconds it ran past its timeout because its group was busy


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


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds used by the processes of a process group, their reaped children included
    (utime, stime, cutime, cstime of /proc/PID/stat; proc(5))."""
    return _group_stat(pgid)[0]


def _group_stat(pgid: int) -> tuple[float, bool]:
    """(CPU seconds, whether a process is runnable now) of a process group."""
    total, running = 0, False
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0.0, False
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rfind(b")") + 2:].split()  # after "(comm) "; comm may hold spaces
        if len(fields) > 14 and int(fields[2]) == pgid:
            total += sum(int(f) for f in fields[11:15])
            running = running or fields[0] == b"R"
    return total / _CLK_TCK, running


class StillIdle(Exception):
    """No result, and the case's process group is idle (or its budget is spent): a hang."""


def wait_while_busy(wait: Callable[[float], Any], pgid: int, budget: float,
                    timeout_exc: type[BaseException]) -> tuple[Any, float]:
    """After a case's timeout: (wait's result, seconds waited) as long as the group stays
    busy, window by window, for at most `budget` seconds; StillIdle once a window ends with
    the group idle and no result, or the budget spent. `wait(seconds)` returns the result or
    raises timeout_exc."""
    start = time.monotonic()
    while True:
        left = budget - (time.monotonic() - start)
        before = group_cpu_seconds(pgid)
        try:
            return wait(max(min(BUSY_WINDOW, left), 0.0)), time.monotonic() - start
        except timeout_exc as exc:
            cpu, running = _group_stat(pgid)
            busy = cpu - before >= BUSY_MIN_CPU or running
            if not busy or time.monotonic() - start >= budget:
                raise StillIdle(time.monotonic() - start) from exc


def run_child(args: list[str], env: dict[str, str], timeout: float,
              retry_budget: float = 0.0) -> ChildRun:
    """Run `python -m convcheck ARGS` in a new session (its own process group)."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "convcheck", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, start_new_session=True, text=True, errors="replace",
    )
    timed_out, extended = False, 0.0
    out = err = ""
    try:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Each window drains the pipes too (a child blocked on a full pipe looks idle).
            (out, err), extended = wait_while_busy(
                lambda s: proc.communicate(timeout=s), proc.pid,
                BUSY_WINDOW + max(retry_budget, 0.0), subprocess.TimeoutExpired)
            extended = max(extended - BUSY_WINDOW, 0.0) if retry_budget > 0 else 0.0
    except StillIdle as idle:
        extended = max(float(idle.args[0]) - BUSY_WINDOW, 0.0)
        timed_out = True
        _kill_group(proc.pid)
        try:
            out, err = proc.communicate(timeout=KILL_GRACE)
        except subprocess.TimeoutExpired:  # stuck in the driver; leave it, report the hang
            out, err = "", "child did not die after SIGKILL"
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
                    "spawn", extended)


class Launcher:
    """Runs child-mode argument lists, each in a child of its own; `spawn` or `fork`."""

    def __init__(self, isolation: str, env: dict[str, str], retry_budget: float = 0.0) -> None:
        if isolation not in ISOLATIONS:
            raise ValueError(f"unknown isolation {isolation!r}")
        self.isolation = isolation
        self.env = env
        self.retry_budget = retry_budget  # one longer budget for a case busy at its timeout
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
            return run_child(args, self.env, timeout, self.retry_budget)
        try:
            return self._fork_run(zygote, args, timeout)
        except ZygoteError as exc:  # it died under this case: the case runs again, spawned
            self._give_up(f"zygote {exc}")
            return run_child(args, self.env, timeout, self.retry_budget)

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
        timed_out, stuck, extended = False, False, 0.0
        try:
            left = timeout - (time.monotonic() - start)
            try:
                returncode: int | None = zygote.finished(pid, max(left, 0.0))
            except ZygoteTimeout:
                returncode, extended = wait_while_busy(
                    lambda s: zygote.finished(pid, s), pid,
                    BUSY_WINDOW + max(self.retry_budget, 0.0), ZygoteTimeout)
                extended = max(extended - BUSY_WINDOW, 0.0) if self.retry_budget > 0 else 0.0
        except StillIdle as idle:
            extended = max(float(idle.args[0]) - BUSY_WINDOW, 0.0)
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
        return ChildRun(returncode, out, err, timed_out, seconds, "fork", extended)


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
    """One case end to end: the JSON entry of design's result schema."""
    args = ["--run-case", case.id, "--device", device]
    run = launcher.run(args, timeout)
    verdict: Verdict = classify(run.returncode, run.stdout, run.stderr, run.timed_out)
    if run.extended >= 0.5:
        spent = run.extended >= launcher.retry_budget - 0.5
        if verdict.status == "hang":
            verdict.detail = short(
                f"no result in {timeout:g} s + {run.extended:.0f} s more while busy "
                f"(compiling?), then {'out of retry budget' if spent else 'idle'}; "
                "child killed")
        else:
            verdict.detail = short(f"still busy at the {timeout:g} s timeout (compiling?): "
                                   f"done {run.extended:.0f} s later; {verdict.detail}")
    result = verdict.result or {}
    measured = verdict.status in (OK, WRONG_RESULT)
    return {
        "case": case.id,
        "status": verdict.status,
        "seconds": round(run.seconds, 3),
        "gflops": result.get("gflops") if measured else None,
        "max_abs_err": result.get("max_abs_err") if measured else None,
        "max_rel_err": result.get("max_rel_err") if measured else None,
        "detail": verdict.detail,
        "isolation": run.isolation,
        "area": case.area,
        "dtype": case.dtype,
        # first call minus a steady-state call: kernel compilation, MIOpen Find, lazy loads
        "compile_seconds": result.get("compile_seconds") if measured else None,
        "run_seconds": result.get("run_seconds") if measured else None,
        "budget_extended": round(run.extended, 3),
    }


def not_run(case: Case, why: str) -> dict[str, Any]:
    """The entry of a case the run did not start (after a GPU reset)."""
    return {"case": case.id, "status": NOT_RUN, "seconds": 0.0, "gflops": None,
            "max_abs_err": None, "max_rel_err": None, "detail": why, "isolation": None,
            "area": case.area, "dtype": case.dtype, "compile_seconds": None,
            "run_seconds": None, "budget_extended": 0.0}


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


def works(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per area (cases.AREAS order), what a user wants to know: does it work here?
    verdict: "yes" (every case that ran is ok), "no" (none is), "partly", "not checked"
    (all skipped or not-run); ok/failed/skipped counts and the failing classes."""
    out: dict[str, dict[str, Any]] = {}
    for area in AREAS:
        mine = [str(e["status"]) for e in results if e.get("area") == area]
        if mine:
            out[area] = area_works(mine)
    return out
