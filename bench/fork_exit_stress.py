"""Why do forked conv check children abort at exit on CUDA (4 of ~260 on the H100)?

Forks many children of conv check cases from a zygote-like parent, in variants that each
remove one suspect, and counts the children that printed their result and then died by a
signal. Each variant runs WORKERS parents side by side, each forking ITERS children in turn.
  zygote    as convcheck's zygote: import torch (+ its lazy imports), gc.freeze, fork
  nofreeze  without gc.freeze
  nolazy    without the lazy imports (torch.fx symbolic_shapes -> sympy)
  osexit    as zygote, but the child ends with os._exit after flushing (no interpreter
            finalization, no C++ static destructors)
  spawn     a fresh `python3 -m convcheck --run-case` per child (no fork at all)
faulthandler is on in every child (Python stacks of all threads on SIGABRT); the first
aborting child of each variant may leave a core (COREDIR) for a debugger.
Usage: python3 bench/fork_exit_stress.py OUT_JSON [VARIANT ...]
Env: WORKERS (4), ITERS (50), SPAWN_ITERS (10), DEVICE (cuda), CASES (comma list).
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import importlib
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.join(os.path.dirname(HERE), "dockerfiles", "files", "python")
CASES = os.environ.get("CASES", "conv2d-k3-c64-64x64-s2-bwd,conv2d-k3-c64-64x64-bwd,"
                       "matmul-512-bwd,linear-256to512-bwd").split(",")
DEVICE = os.environ.get("DEVICE", "cuda")
COREDIR = os.environ.get("COREDIR", "")


class ChildExit(BaseException):
    """Unwinds a forked child to the top level, where it exits as the zygote's child does
    (returning from main, through interpreter finalization)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _child(case: str, err_path: str, variant: str, core: bool) -> None:
    """In the forked child: what convcheck's zygote child does, then exit per variant."""
    fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    out = os.open(os.devnull, os.O_WRONLY)
    os.dup2(out, 1)
    os.setsid()
    if core:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,
                                                  resource.RLIM_INFINITY))
    faulthandler.enable(file=sys.stderr, all_threads=True)
    from convcheck import cli

    code = cli.main(["--run-case", case, "--device", DEVICE])
    sys.stdout.flush()
    sys.stderr.flush()
    if variant == "osexit":
        os._exit(code)
    raise ChildExit(code)


def worker(variant: str, index: int, iters: int, tmp: str) -> list[dict[str, Any]]:
    sys.path.insert(0, PYDIR)
    if variant != "spawn":
        import im2col_fallback  # noqa: F401
        import torch
        import torch.nn.functional  # noqa: F401
        from convcheck import child, cli, zygote  # noqa: F401

        if variant != "nolazy":
            for name in zygote.LAZY_IMPORTS:
                with contextlib.suppress(Exception):
                    importlib.import_module(name)
        gc.collect()
        if variant != "nofreeze":
            gc.freeze()
    runs = []
    for i in range(iters):
        case = CASES[i % len(CASES)]
        err_path = os.path.join(tmp, f"{variant}-{index}-{i}.err")
        core = bool(COREDIR) and not any(r["signal"] for r in runs)  # first abort each
        start = time.monotonic()
        if variant == "spawn":
            env = dict(os.environ, PYTHONPATH=PYDIR, PYTHONFAULTHANDLER="1")
            with open(err_path, "wb") as err:
                proc = subprocess.run([sys.executable, "-m", "convcheck", "--run-case", case,
                                       "--device", DEVICE], stdout=subprocess.DEVNULL,
                                      stderr=err, env=env, start_new_session=True)
            code = proc.returncode
        else:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                try:
                    _child(case, err_path, variant, core)
                except ChildExit:
                    raise
                except BaseException:
                    os._exit(70)
            _, status = os.waitpid(pid, 0)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        with open(err_path, "rb") as fh:
            err_text = fh.read().decode(errors="replace")
        os.remove(err_path)
        runs.append({"case": case, "code": code, "signal": code < 0,
                     "seconds": round(time.monotonic() - start, 3),
                     "stderr": err_text[-4000:] if code != 0 else ""})
    return runs


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        variant, index, iters, tmp, out = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), \
            sys.argv[5], sys.argv[6]
        with open(out, "w") as fh:
            json.dump(worker(variant, index, iters, tmp), fh)
        return
    out_json = sys.argv[1]
    variants = sys.argv[2:] or ["zygote", "osexit", "nolazy", "nofreeze", "spawn"]
    workers = int(os.environ.get("WORKERS", "4"))
    tmp = os.environ.get("TMPDIR", "/tmp")
    summary: dict[str, Any] = {"cases": CASES, "device": DEVICE, "variants": {}}
    for variant in variants:
        iters = int(os.environ.get("SPAWN_ITERS" if variant == "spawn" else "ITERS",
                                   "10" if variant == "spawn" else "50"))
        start = time.monotonic()
        procs = []
        for index in range(workers):
            part = os.path.join(tmp, f"stress-{variant}-{index}.json")
            procs.append((part, subprocess.Popen(
                [sys.executable, __file__, "--worker", variant, str(index), str(iters), tmp,
                 part], env=dict(os.environ, PYTHONPATH=PYDIR))))
        runs: list[dict[str, Any]] = []
        for part, proc in procs:
            proc.wait()
            try:
                with open(part) as fh:
                    runs += json.load(fh)
            except (OSError, ValueError) as exc:
                runs.append({"case": "-", "code": proc.returncode, "signal": True,
                             "seconds": 0, "stderr": f"worker failed: {exc}"})
        bad = [r for r in runs if r["code"] != 0]
        summary["variants"][variant] = {
            "children": len(runs), "failed": len(bad),
            "by_signal": sum(r["signal"] for r in runs),
            "seconds": round(time.monotonic() - start, 1),
            "failures": bad[:6],
        }
        print(f"{variant:9} {len(bad)} of {len(runs)} children failed "
              f"({sum(r['signal'] for r in runs)} by a signal) in "
              f"{time.monotonic() - start:.0f} s", flush=True)
        for r in bad[:3]:
            tail = " | ".join(r["stderr"].strip().splitlines()[-3:])
            print(f"    {r['case']} exit {r['code']}: {tail[:300]}", flush=True)
        with open(out_json, "w") as fh:
            json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    try:
        main()
    except ChildExit as done:
        sys.exit(done.code)
