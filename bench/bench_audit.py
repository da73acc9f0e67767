"""Speed of the GPU code audit on a multi-gigabyte library, against `cat FILE > /dev/null`
measured in the same run (page cache warm for both: every timing is the best of --runs).

Three ways the audit reads a file:
- file:   audit_file on the real library (ELF headers, then only the bundle headers inside
          .hip_fatbin; code objects are skipped by seeking). MB/s counts the file's size.
- stream: the same bytes as a non-seekable stream (what `docker export` gives): every byte is
          read and searched for bundle magics. MB/s counts every byte, like cat.
- big:    the stream path on a multi-gigabyte file made by concatenating the real library
          --copies times (each copy's bundles are found: copies x targets).
- cold:   --cold evicts the file's pages (posix_fadvise DONTNEED, this file only) before
          every timed run, so cat and the audit both read from the disk.
- image:  --image IMAGE times `docker export` of a container of IMAGE into /dev/null and into
          audit_tar (the `imagefactory` path for a built image).
- isa:    --isa CHIP (e.g. gfx1010) times the instruction check of the library's gfx1030 code
          (`audit --chip CHIP --override 10.3.0`) against, in the same run, llvm-objdump alone
          making the same two listings per code object into /dev/null with the same
          parallelism, and against the plain audit of the file (best of --isa-runs).
Usage: python3 bench/bench_audit.py LIBRARY [--copies 3] [--runs 3] [--scratch DIR] [--cold]
       [--image IMAGE] [--isa CHIP] [--isa-runs 1] [--jobs N]
e.g. LIBRARY = librocblas.so.4.4 copied out of Debian sid's librocblas4 (1.0 GB, .hip_fatbin
0.97 GB, 66 bundles x 10 targets).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imagefactory.verify.gpucode import audit_file
from imagefactory.verify.gpucode.audit import _inspect


def evict(path: Path) -> None:
    """Drop this file's pages from the page cache (no effect on other files)."""
    subprocess.run(["sync", str(path)], check=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def best(fn: Callable[[], object], runs: int, cold: Path | None = None) -> float:
    times = []
    for _ in range(runs):
        if cold is not None:
            evict(cold)
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def cat(path: Path) -> None:
    subprocess.run(f"cat '{path}' > /dev/null", shell=True, check=True)


def stream_audit(path: Path) -> int:
    """The tar-member path: a forward-only read of every byte. Returns code objects found."""
    with path.open("rb") as f:
        found, _n = _inspect(str(path), path.stat().st_size, f, seekable=False)
    assert not found.problems, found.problems
    return sum(found.targets.values())


def line(label: str, seconds: float, size: int, cat_s: float) -> None:
    mbs = size / seconds / 1e6
    print(f"{label:34} {seconds:7.2f} s  {mbs:8.0f} MB/s  ratio to cat {cat_s / seconds:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("library", type=Path)
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=None)
    parser.add_argument("--cold", action="store_true")
    parser.add_argument("--image", default=None)
    parser.add_argument("--isa", default=None, metavar="CHIP")
    parser.add_argument("--isa-runs", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--skip-stream", action="store_true",
                        help="only the plain audit and --isa / --image")
    args = parser.parse_args()
    lib: Path = args.library
    size = lib.stat().st_size

    cf = audit_file(lib)
    print(f"{lib} ({size / 1e9:.2f} GB): {cf.kind if cf else 'no GPU code'}, "
          f"{sum(cf.targets.values()) if cf else 0} code objects, "
          f"{len(cf.targets) if cf else 0} targets")
    lcold = lib if args.cold else None
    how = "cold" if args.cold else "warm"
    cat_s = best(lambda: cat(lib), args.runs, lcold)
    line(f"cat > /dev/null ({how})", cat_s, size, cat_s)
    plain_s = best(lambda: audit_file(lib), args.runs, lcold)
    line(f"audit, file path (seeks, {how})", plain_s, size, cat_s)
    if args.isa:
        bench_isa(lib, args.isa, args.isa_runs, args.jobs, plain_s, args.scratch)
    if args.skip_stream:
        if args.image:
            bench_image(args.image, args.runs)
        return
    line(f"audit, stream path ({how})", best(lambda: stream_audit(lib), args.runs, lcold), size,
         cat_s)

    scratch = Path(tempfile.mkdtemp(prefix="bench-audit-", dir=args.scratch))
    try:
        big = scratch / "big.so"
        with big.open("wb") as out:
            for _ in range(args.copies):
                with lib.open("rb") as src:
                    shutil.copyfileobj(src, out, 16 << 20)
        bsize = big.stat().st_size
        n = stream_audit(big)
        print(f"{big.name}: {args.copies} copies, {bsize / 1e9:.2f} GB, {n} code objects found")
        cold = big if args.cold else None
        big_cat = best(lambda: cat(big), args.runs, cold)
        line(f"cat > /dev/null ({bsize / 1e9:.1f} GB, {how})", big_cat, bsize, big_cat)
        line(f"audit, stream path ({bsize / 1e9:.1f} GB, {how})",
             best(lambda: stream_audit(big), args.runs, cold), bsize, big_cat)
    finally:
        shutil.rmtree(scratch)
    if args.image:
        bench_image(args.image, args.runs)


def bench_isa(lib: Path, chip: str, runs: int, jobs: int | None, plain_s: float,
              scratch_dir: Path | None) -> None:
    """The instruction check against llvm-objdump alone on the same code objects."""
    from concurrent.futures import ThreadPoolExecutor

    from imagefactory.verify.gpucode import codeobjects
    from imagefactory.verify.gpucode.isa import find_objdump, loaded_isa, run_check, wanted

    tool = find_objdump()
    if tool is None:
        sys.exit("bench_audit: --isa needs llvm-objdump (apt-get install llvm-19)")
    jobs = jobs or os.cpu_count() or 1
    want = wanted(loaded_isa(chip, "10.3.0"))
    problems: list[str] = []
    cos = list(codeobjects.in_path(lib, want, problems))
    scratch = Path(tempfile.mkdtemp(prefix="bench-isa-", dir=scratch_dir))
    try:
        files = []
        for i, co in enumerate(cos):
            f = scratch / f"{i}.co"
            f.write_bytes(co.data or b"")
            files.append(f)
        code = sum(f.stat().st_size for f in files)
        print(f"{lib.name}: {len(cos)} gfx1030 code objects, {code / 1e6:.0f} MB of code; "
              f"{jobs} jobs")

        def both(f: Path) -> None:  # the two listings the check makes, side by side
            procs = [subprocess.Popen([tool, "-d", "--no-show-raw-insn", f"--mcpu={m}", str(f)],
                                      stdout=subprocess.DEVNULL) for m in ("gfx1030", chip)]
            for p in procs:
                p.wait()

        def objdump_alone() -> None:
            with ThreadPoolExecutor(jobs) as pool:
                list(pool.map(both, files))

        result: list[object] = []

        def isa() -> None:
            result[:] = [run_check(codeobjects.in_path(lib, want, []), str(lib), chip,
                                   "10.3.0", jobs=jobs, tool=tool)]

        # Interleaved, so load from elsewhere on the machine hits both alike.
        od, ia = [], []
        for _ in range(runs):
            od.append(best(objdump_alone, 1))
            ia.append(best(isa, 1))
        od_s, isa_s = min(od), min(ia)
        r = result[0]
        print(f"{'plain audit (audit_file)':34} {plain_s:7.2f} s")
        print(f"{'llvm-objdump alone (2 listings)':34} {od_s:7.2f} s")
        print(f"{'instruction check (' + chip + ')':34} {isa_s:7.2f} s  "
              f"ratio to llvm-objdump {isa_s / od_s:5.2f}  to the plain audit "
              f"{isa_s / plain_s:7.1f}")
        print("  " + r.summary())  # type: ignore[attr-defined]
    finally:
        shutil.rmtree(scratch)


def bench_image(image: str, runs: int) -> None:
    """`docker export` into /dev/null against `docker export` into audit_tar."""
    from imagefactory.verify.gpucode import audit_tar

    cid = subprocess.run(["docker", "create", image, "true"], check=True, capture_output=True,
                         text=True).stdout.strip()
    try:
        size = 0

        def export_null() -> None:
            nonlocal size
            proc = subprocess.Popen(["docker", "export", cid], stdout=subprocess.PIPE)
            assert proc.stdout is not None
            size = 0
            while chunk := proc.stdout.read(1 << 20):
                size += len(chunk)
            proc.wait()

        def export_audit() -> None:
            proc = subprocess.Popen(["docker", "export", cid], stdout=subprocess.PIPE)
            assert proc.stdout is not None
            inv = audit_tar(proc.stdout, image)
            proc.wait()
            print(f"  {image}: {inv.files_seen} files, {len(inv.libraries)} libraries, "
                  f"{inv.bytes_read / 1e9:.2f} GB searched; {inv.summary('gfx1010')}")

        t_null = best(export_null, runs)
        line(f"docker export > null ({size / 1e9:.1f} GB)", t_null, size, t_null)
        line("docker export | audit_tar", best(export_audit, runs), size, t_null)
    finally:
        subprocess.run(["docker", "rm", cid], check=True, capture_output=True)


if __name__ == "__main__":
    main()
