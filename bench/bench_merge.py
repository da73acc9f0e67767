"""Merging result bundles is linear: 1,000 and 10,000 generated bundles (real ones, made by
the share code and read back by the strict reader) merged in the same run; prints both times
and the ratio (linear: about 10x).
Usage: python3 bench/bench_merge.py [--small 1000] [--large 10000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imagefactory.host.facts import Roots
from imagefactory.report import merge
from imagefactory.share import bundle as bundles
from imagefactory.verify.results import Check, ConvCase, TestResult

ROOT = Path(__file__).resolve().parent.parent
ROOTS = Roots(ROOT / "tests/fixtures/sysfs/rx5600xt", Path("/nonexistent"), Path("/nonexistent"))
DIGEST = "c" * 64


def make(folder: Path, n: int) -> None:
    """n bundles of 40 cases each, from n // 4 hosts (host ids varied in the text)."""
    conv = tuple(ConvCase(f"case-{k}", "ok" if k % 9 else "hang", 0.2, area="convolutions")
                 for k in range(40))
    with tempfile.TemporaryDirectory() as state:
        r = TestResult("rocm62-native", "sha256:" + "a" * 64, True, (Check("starts", True),),
                       conv, "gfx1010", None, device="cuda", gpu="AMD Radeon RX 5600 XT")
        subject = {"name": "ghcr.io/o/imagefactory", "digest": {"sha256": DIGEST},
                   "annotations": {"kind": "image-digest", "image_id": r.image_id}}
        text = bundles.to_json(bundles.make(r, env={}, subject=subject, roots=ROOTS,
                                            state=Path(state)))
    base = json.loads(text)
    for i in range(n):
        ours = base["predicate"]["imagefactory"]
        ours["host_id"] = f"{i // 4:032x}"
        ours["finished_at"] = f"2026-11-{1 + i % 28:02d}T00:00:{i % 60:02d}Z"
        (folder / f"b{i}.json").write_text(json.dumps(base))


def timed(n: int, results: Path) -> float:
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        make(folder, n)
        start = time.perf_counter()
        merged = merge.collect([results], [folder])
        merge.to_json(merged)
        took = time.perf_counter() - start
        assert len(merged.runs) + len(merged.kept_out) == n, (len(merged.runs), n)
        return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--large", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        results = Path(d)  # a publish record names the bundles' digest
        (results / "rocm62-native.publish.json").write_text(json.dumps(
            {"digest": "sha256:" + DIGEST, "image_id": "sha256:" + "a" * 64}))
        small = timed(args.small, results)
        large = timed(args.large, results)
    print(f"merge {args.small} bundles: {small:.2f} s ({args.small / small:.0f}/s)")
    print(f"merge {args.large} bundles: {large:.2f} s ({args.large / large:.0f}/s)")
    print(f"ratio {large / small:.1f}x for {args.large / args.small:.0f}x the bundles "
          "(linear: about that)")


if __name__ == "__main__":
    main()
