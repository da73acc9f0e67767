"""A late failure in a long compile, rebuilt after the fix: with a BuildKit cache mount for
ccache, and without one, measured in the same run, the ratio printed.

The fixture (bench/fixtures/cachemount/Dockerfile.in) compiles GoogleTest and its test suite
from Debian's googletest sources through ccache in one RUN whose last command fails. Fixing
that command changes the RUN, so BuildKit runs it again from the start (the layer cache cannot
help: the failed step left no layer). What differs is only where ccache keeps its objects:

- with the mount (`RUN --mount=type=cache,target=/ccache`), the objects compiled by the failed
  attempt are still there: the rebuild is mostly cache hits;
- without it, /ccache was inside the failed step's discarded filesystem: the rebuild compiles
  everything again.

Each run uses a fresh cache-mount id, so no earlier run warms it. The toolchain stage (apt) is
built once first and shared by both cases (it is not what is measured). Builds go through
imagefactory's buildx driver (imagefactory/engine/buildx.py) on this engine's BuildKit;
nothing is tagged, and the images made are removed at the end (the cache mount stays in the
builder's cache; `docker buildx du` shows it).

Usage: python3 bench/bench_cachemount.py [--scale samples|tests|all] [--jobs N]
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from imagefactory.engine import buildx  # noqa: E402

FIXTURE = REPO / "bench" / "fixtures" / "cachemount" / "Dockerfile.in"
SCALES = {
    "samples": "-Dgtest_build_samples=ON",
    "tests": "-Dgtest_build_samples=ON -Dgtest_build_tests=ON",
    "all": "-Dgtest_build_samples=ON -Dgtest_build_tests=ON -Dgmock_build_tests=ON",
}
INSTALL = "cmake --install /build --prefix /opt/gtest"
# The late failure: a check for a shared library that this static build never makes.
BROKEN = f"{INSTALL} && test -f /opt/gtest/lib/libgtest_main.so"
FIXED = f"{INSTALL} && test -f /opt/gtest/lib/libgtest_main.a"
_STATS = re.compile(r"^\s*(?:Hits|Misses|cache hit|cache miss)", re.IGNORECASE)


def dockerfile(mount: bool, cache_id: str, targets: str, last: str) -> str:
    mount_flag = (f"--mount=type=cache,target=/ccache,id={cache_id} \\\n    " if mount else "")
    return FIXTURE.read_text().format(mount=mount_flag, targets=targets, last=last)


def context(text: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build(text: str, jobs: int, target: str | None = None) -> tuple[float, buildx.BuildxOutcome,
                                                                     list[str]]:
    lines: list[str] = []
    start = time.perf_counter()
    outcome = buildx.build(buildx.BuildxRequest(context(text), build_args={"JOBS": str(jobs)},
                                                target=target), on_line=lines.append)
    return time.perf_counter() - start, outcome, lines


def stats(lines: list[str]) -> str:
    found = [" ".join(line.split()) for line in lines if _STATS.match(line)]
    return "; ".join(found) or "no ccache statistics printed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="tests",
                        help="how much of GoogleTest to compile (default: tests)")
    parser.add_argument("--jobs", type=int, default=2, help="ninja -j (default 2)")
    args = parser.parse_args()
    version = buildx.buildx_version()
    if version is None:
        print("bench: needs the docker buildx plugin (docker buildx version)", file=sys.stderr)
        return 2
    run_id = uuid.uuid4().hex[:10]
    targets = SCALES[args.scale]
    print(f"buildx {version}; fixture: GoogleTest ({args.scale}: {targets}), ninja -j "
          f"{args.jobs}; cache-mount id imagefactory-bench-ccache-{run_id}")
    images: list[str] = []
    seconds, outcome, lines = build(dockerfile(False, "unused", targets, FIXED), args.jobs,
                                    target="toolchain")
    if outcome.error:
        print(f"bench: the toolchain stage failed: {outcome.error}", *lines[-15:], sep="\n",
              file=sys.stderr)
        return 1
    print(f"toolchain stage (apt, shared by both cases): {seconds:.1f}s")
    results: dict[bool, tuple[float, float]] = {}
    try:
        for mount in (True, False):
            name = "with cache mount   " if mount else "without cache mount"
            cache_id = f"imagefactory-bench-ccache-{run_id}"
            failed_s, outcome, lines = build(dockerfile(mount, cache_id, targets, BROKEN),
                                             args.jobs)
            # It must fail where the fixture fails: the last command of the compile step.
            if not outcome.error or "exit code" not in outcome.error or "Hits" not in " ".join(
                    lines):
                print(f"bench: the broken build did not fail in its last command: "
                      f"{outcome.error}", *lines[-15:], sep="\n", file=sys.stderr)
                return 1
            print(f"{name}: failing build {failed_s:6.1f}s  ({stats(lines)})")
            fixed_s, outcome, lines = build(dockerfile(mount, cache_id, targets, FIXED),
                                            args.jobs)
            if outcome.error or not outcome.image_id:
                print(f"bench: the fixed build failed: {outcome.error}", *lines[-15:],
                      sep="\n", file=sys.stderr)
                return 1
            images.append(outcome.image_id)
            print(f"{name}: fixed rebuild  {fixed_s:6.1f}s  ({stats(lines)})")
            results[mount] = (failed_s, fixed_s)
    finally:
        if images:
            subprocess.run(["docker", "image", "rm", *images], capture_output=True,
                           check=False)
    with_mount, without = results[True][1], results[False][1]
    print(f"rebuild after the late failure: {with_mount:.1f}s with the cache mount, "
          f"{without:.1f}s without: {with_mount / without:.2f}x the time "
          f"({without / with_mount:.1f}x faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
