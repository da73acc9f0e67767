"""Command line of the conv check (parent mode) and of its children (--run-case, --probe).

Exit status: 0 iff every case is ok (or skipped: a feature this torch lacks), 1 otherwise,
2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

from convcheck import faults
from convcheck.cases import CASES, Case, select
from convcheck.childmode import DEVICES, child_exit, child_main
from convcheck.profiles import PROFILES, profile_env
from convcheck.runner import (
    DEFAULT_ISOLATION,
    ISOLATIONS,
    Launcher,
    child_env,
    not_run,
    probe,
    run_case,
    summarize,
    works,
)
from convcheck.vocabulary import AREAS, CLASSES, GPU_RESET_CLASSES, NOT_RUN, OK, PASSING

DEFAULT_TIMEOUT = 120.0  # per case: the first MIOpen Find of a big conv can take a while
# One longer budget for a case still using CPU at its timeout (compiling, see runner): a cold
# MIOpen cache compiles for minutes on RDNA1.
DEFAULT_RETRY_BUDGET = 600.0
# The base image sets IMAGEFACTORY_GPU=none in CPU-only images; everywhere else check the GPU.
DEFAULT_DEVICE = "cpu" if os.environ.get("IMAGEFACTORY_GPU") == "none" else "cuda"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m convcheck",
        description="Run convolution cases on the GPU (or CPU), each in its own process with "
        "a timeout, and classify each: "
        + ", ".join(c for c in CLASSES if c != NOT_RUN) + f" ({NOT_RUN}: after a GPU reset).",
    )
    p.add_argument("--quick", action="store_true", help="run the short subset")
    p.add_argument("--device", choices=DEVICES, default=DEFAULT_DEVICE,
                   help=f"cuda also means ROCm/HIP (default here: {DEFAULT_DEVICE})")
    p.add_argument("--profile", metavar="NAME",
                   help=f"env profile(s) for the cases, comma-separated: {', '.join(PROFILES)}")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"per-case limit; past it the case is a hang (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--retry-budget", type=float, default=DEFAULT_RETRY_BUDGET,
                   metavar="SECONDS",
                   help="a case still using CPU at its timeout (compiling kernels) gets this "
                   f"much longer, once (default {DEFAULT_RETRY_BUDGET:g}; 0: never)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--cases", metavar="GLOB",
                   help="only cases matching these comma-separated globs")
    p.add_argument("--list", action="store_true", help="list the selected case ids and exit")
    p.add_argument("--isolation", choices=ISOLATIONS, default=DEFAULT_ISOLATION,
                   help="how each case gets its own process: fork it from a helper that "
                   "imported torch once (fast), or spawn a fresh python3 per case "
                   f"(default {DEFAULT_ISOLATION})")
    p.add_argument("--run-case", metavar="ID", help=argparse.SUPPRESS)  # child mode
    p.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)  # child mode
    p.add_argument("--zygote", action="store_true", help=argparse.SUPPRESS)  # fork server
    return p


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _row(entry: dict[str, Any], width: int) -> str:
    status = entry["status"]
    if status == NOT_RUN:
        return f"{entry['case']:<{width}}  not-run ({entry['detail'].split(' (')[0]})"
    row = (f"{entry['case']:<{width}}  {status:<18} {entry['seconds']:>8.2f} "
           f"{_fmt(entry['gflops'], '.1f'):>9} {_fmt(entry['max_abs_err'], '.1e'):>9} "
           f"{_fmt(entry['max_rel_err'], '.1e'):>9}")
    return row if entry["status"] == OK else f"{row}  {entry['detail']}"


def _header(info: dict[str, Any], note: str, device: str, profile: str | None,
            isolation: str) -> str:
    facts = [f"device={device}", f"profile={profile or '-'}",
             f"torch={info.get('torch') or '?'}"]
    if device == "cuda":
        facts += [f"hip={info.get('hip') or '-'}", f"gpu={info.get('gpu') or '-'}",
                  f"arch={info.get('arch') or '-'}"]
    facts.append(f"isolation={isolation}")
    return "convcheck: " + " ".join(facts) + (f"\nconvcheck: {note}" if note else "")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.zygote:  # returns in the zygote at the end, and in every child it forks
        from convcheck import zygote

        return zygote.zygote_main()
    if args.run_case or args.probe:
        child_exit(lambda: child_main(args.run_case, args.probe, args.device))
    try:
        env = child_env(profile_env(args.profile))
        faults.parse(os.environ.get(faults.ENV, ""))
    except ValueError as exc:
        parser.error(str(exc))
    if not args.timeout > 0 or args.timeout == float("inf"):
        parser.error("--timeout must be a positive number of seconds")
    if not args.retry_budget >= 0 or args.retry_budget == float("inf"):
        parser.error("--retry-budget must be a number of seconds, 0 or more")
    cases = select(args.quick, args.cases)
    if not cases:
        parser.error(f"no case matches {args.cases!r} (see --list)")
    if args.list:
        for case in cases:
            print(f"{case.id}{'  (quick)' if case.quick else ''}")
        return 0
    # Let `docker stop` / kill end the current case's process group too (see runner).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    return _run(args, cases, env)


def _run(args: argparse.Namespace, cases: list[Case], env: dict[str, str]) -> int:
    start = time.monotonic()
    with Launcher(args.isolation, env, args.retry_budget) as launcher:
        results, info, notes, reset = _run_cases(args, cases, launcher)
    summary = summarize(results)
    total = round(time.monotonic() - start, 3)
    print("convcheck: " + ", ".join(f"{n} {cls}" for cls, n in summary.items())
          + f" in {total:.1f} s", flush=True)
    areas = works(results)
    print("convcheck: works: " + "; ".join(f"{AREAS[a]}: {v['verdict']}"
                                            for a, v in areas.items()), flush=True)
    if args.json:
        _write_json(args, info, results, summary, total, notes,
                    {"gpu_reset": reset, "works": areas})
    return 0 if all(entry["status"] in PASSING for entry in results) else 1


def _run_cases(args: argparse.Namespace, cases: list[Case], launcher: Launcher
               ) -> tuple[list[dict[str, Any]], dict[str, Any], list[str], str | None]:
    notes: list[str] = []

    def print_notes() -> None:
        for note in launcher.take_notes():
            notes.append(note)
            print(f"convcheck: {note}", flush=True)

    info, note = probe(args.device, launcher, args.timeout)
    print(_header(info, note, args.device, args.profile, args.isolation), flush=True)
    print_notes()
    width = max(len(c.id) for c in CASES)
    print(f"{'case':<{width}}  {'status':<18} {'seconds':>8} {'GFLOP/s':>9} "
          f"{'max abs':>9} {'max rel':>9}", flush=True)
    results: list[dict[str, Any]] = []
    reset: str | None = None
    gpu_reset: list[str] = []
    for case in cases:
        if reset:
            entry = not_run(case, reset)
        elif info and not info.get("available", True):
            entry = dict(not_run(case, "torch.cuda.is_available() is False (GPU devices not "
                                 "passed through? --device cpu checks the CPU)"),
                         status="error")
        else:
            entry = run_case(case, args.device, launcher, args.timeout)
            if entry["status"] in GPU_RESET_CLASSES:
                left = len(cases) - len(results) - 1
                reset = f"gpu reset (after {case.id})"
                note = (f"GPU reset during {case.id} ({entry['detail']}); the {left} cases "
                        "after it are not-run (gpu reset), not failures")
                gpu_reset.append(note)
                print(_row(entry, width), flush=True)
                print(f"convcheck: {note}", flush=True)
                results.append(entry)
                continue
        print_notes()
        results.append(entry)
        print(_row(entry, width), flush=True)
    return results, info, notes, (gpu_reset[0] if gpu_reset else None)


def _write_json(args: argparse.Namespace, info: dict[str, Any], results: list[dict[str, Any]],
                summary: dict[str, int], total: float, notes: list[str],
                extra: dict[str, Any]) -> None:
    doc = {"device": args.device, "profile": args.profile, "torch": info.get("torch"),
           "hip": info.get("hip"), "gpu": info.get("gpu"), "arch": info.get("arch"),
           "timeout": args.timeout, "isolation": args.isolation, "isolation_notes": notes,
           "retry_budget": args.retry_budget, "cases": results, "summary": summary,
           "seconds": total, **extra}
    folder = os.path.dirname(os.path.abspath(args.json))
    os.makedirs(folder, exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")
