"""Child mode: what a case's child (`--run-case ID`) and the probe's child (`--probe`) run,
and how they end, whether spawned (`python3 -m convcheck --run-case ID`, through cli.py) or
forked by the zygote (zygote.py hands each forked child its argument list here).

cli.py and zygote.py both import this module; it imports neither (the parent's runner
imports the zygote, so a zygote that imported the command line would close a circle).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import sys
import traceback
from typing import Callable, NoReturn

from convcheck.cases import BY_ID

DEVICES = ("cpu", "cuda")


def child_exit(run: Callable[[], int]) -> NoReturn:
    """End a case's child (forked or spawned) without interpreter finalization.

    Why: autograd's device thread may still drop its last reference to a finished backward
    graph task, whose future holds the output tensors, right after autograd.grad() returned
    in the main thread; decref'ing their PyObjects needs the GIL. If the main thread is
    finalizing by then, CPython (3.9+) ends that thread with pthread_exit, whose forced
    unwind meets a noexcept destructor: std::terminate, "terminate called without an active
    exception", SIGABRT after the result was printed. Seen on the H100 (torch 2.11+cu130,
    Python 3.12) in forked and in spawned children alike (core backtrace and counts in
    bench/results/h100-fork-exit.md); pytorch/pytorch issues 38228 and 38230 describe the
    mechanism. The result is already on stdout, so the child flushes, runs its atexit
    handlers (the test faults' "crash at exit" hook among them) and leaves with os._exit.
    """
    try:
        code = run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # as the interpreter would report it, then the same exit status
        traceback.print_exc()
        code = 1
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def child_main(case_id: str | None, probe: bool, device: str) -> int:
    """Run one case (or the probe) here and print its result line; 2 for an unknown case."""
    from convcheck import child

    if probe:
        child.emit(child.probe(device))
        return 0
    case = BY_ID.get(case_id or "")
    if case is None:
        sys.stderr.write(f"unknown case {case_id!r}\n")
        return 2
    child.emit(child.run_case(case, device))
    return 0


def _parser() -> argparse.ArgumentParser:
    """The child-mode arguments the launcher passes (runner.py): the zygote's children get
    only these; a spawned child is parsed by cli.py's full parser, which has them too."""
    p = argparse.ArgumentParser(prog="python3 -m convcheck")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--run-case", metavar="ID")
    mode.add_argument("--probe", action="store_true")
    p.add_argument("--device", choices=DEVICES, required=True)
    return p


def run_argv(argv: list[str]) -> NoReturn:
    """A forked child's whole life: parse its argument list, run it, leave (child_exit)."""

    def run() -> int:
        args = _parser().parse_args(argv)
        return child_main(args.run_case, args.probe, args.device)

    child_exit(run)
