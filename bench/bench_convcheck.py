"""Conv check wall time, --isolation spawn (a fresh python3 per case, the baseline) against
--isolation fork (a zygote imports torch once and forks each case), in the real cpu image.

One container of the image runs both modes on the --quick list and on a larger subset,
interleaved, --runs times each; prints the median of convcheck's own total (probe and zygote
start included) and per case, and fork's ratio to spawn. Every run must end all ok.
Usage: python3 bench/bench_convcheck.py [--image imagefactory:cpu] [--runs N]
                                        [--cases GLOB] [--mount-src]
(`imagefactory build cpu` makes the image; --mount-src runs the working tree's in-image
Python files instead of the image's own.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYDIR = REPO / "dockerfiles" / "files" / "python"
LABEL = "io.imagefactory.bench"


def docker(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check,
                          timeout=timeout)


def one_run(name: str, isolation: str, selection: list[str]) -> tuple[float, float, int]:
    """(convcheck's total seconds, wall seconds of the exec, cases) of one all-ok run."""
    start = time.perf_counter()
    proc = docker("exec", name, "bash", "-c",
                  f"python3 -m convcheck --device cpu --isolation {isolation} "
                  f"{' '.join(selection)} --json /tmp/bench.json >/tmp/bench.txt 2>&1; "
                  "rc=$?; cat /tmp/bench.json; exit $rc", check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        out = docker("exec", name, "cat", "/tmp/bench.txt", check=False).stdout
        sys.exit(f"convcheck --isolation {isolation} {selection} exited {proc.returncode}:\n"
                 f"{out}{proc.stderr}")
    report = json.loads(proc.stdout)
    used = {c["isolation"] for c in report["cases"]}
    if used != {isolation} or report["isolation_notes"]:
        sys.exit(f"--isolation {isolation} ran as {used}: {report['isolation_notes']}")
    return report["seconds"], wall, len(report["cases"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="imagefactory:cpu")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cases", default="conv2d-*", help="the larger subset (globs)")
    parser.add_argument("--mount-src", action="store_true",
                        help="bind-mount the working tree's in-image Python files")
    args = parser.parse_args()

    name = f"convcheck-bench-{uuid.uuid4().hex[:12]}"
    run = ["run", "-d", "--rm", "--network", "none", "--name", name,
           "--label", f"{LABEL}={name}"]
    if args.mount_src:
        run += ["-v", f"{PYDIR}:/opt/imagefactory/python:ro"]
    docker(*run, args.image, "sleep", "infinity")
    try:
        help_text = docker("exec", name, "python3", "-m", "convcheck", "--help").stdout
        if "--isolation" not in help_text:
            sys.exit(f"{args.image} predates --isolation: `imagefactory build cpu` first, "
                     "or --mount-src")
        facts = docker("exec", name, "bash", "-c",
                       "nproc; python3 -c 'import sys, torch; "
                       "print(sys.version.split()[0], torch.__version__)'").stdout.split()
        print(f"image {args.image}: {facts[0]} CPUs, Python {facts[1]}, torch {facts[2]}; "
              f"median of {args.runs} runs each, interleaved")
        subsets = [("--quick", ["--quick"]), (args.cases, ["--cases", f"'{args.cases}'"])]
        for label, selection in subsets:
            totals: dict[str, list[float]] = {"spawn": [], "fork": []}
            walls: dict[str, list[float]] = {"spawn": [], "fork": []}
            count = 0
            for _ in range(args.runs):
                for isolation in ("spawn", "fork"):
                    total, wall, count = one_run(name, isolation, selection)
                    totals[isolation].append(total)
                    walls[isolation].append(wall)
            spawn = statistics.median(totals["spawn"])
            fork = statistics.median(totals["fork"])
            print(f"{label} ({count} cases)")
            for isolation, value in (("spawn", spawn), ("fork", fork)):
                print(f"  {isolation:5}  {value:7.2f} s  {value / count:5.2f} s/case  "
                      f"(exec wall {statistics.median(walls[isolation]):.2f} s; runs: "
                      + ", ".join(f"{t:.1f}" for t in totals[isolation]) + ")")
            print(f"  fork/spawn ratio {fork / spawn:.2f}  ({spawn / fork:.1f}x faster, "
                  f"{(spawn - fork) / count:.2f} s saved per case)")
    finally:
        docker("rm", "-f", name, check=False)


if __name__ == "__main__":
    main()
