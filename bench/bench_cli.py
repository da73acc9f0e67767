"""Start-up cost of the CLI: `imagefactory --help` and `list` against a bare interpreter.

Prints median wall times and their ratio to `python3 -c pass` measured in the same run.
Usage: python3 bench/bench_cli.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def median_seconds(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        # exit status ignored: render --check may report drift while templates are edited
        subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    cli = [sys.executable, "-m", "imagefactory"]
    baseline = median_seconds([sys.executable, "-c", "pass"], runs)
    print(f"python3 -c pass        {baseline * 1000:7.1f} ms  (baseline)")
    for label, args in (("imagefactory --help", ["--help"]), ("imagefactory list", ["list"]),
                        ("imagefactory render --check", ["render", "--check"])):
        t = median_seconds(cli + args, runs)
        print(f"{label:22} {t * 1000:7.1f} ms  ratio {t / baseline:5.2f}x, "
              f"+{(t - baseline) * 1000:.1f} ms over the interpreter")


if __name__ == "__main__":
    main()
