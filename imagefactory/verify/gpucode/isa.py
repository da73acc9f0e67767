"""The instruction-level check: can the code a card loads (under the override: gfx1030 code)
run on the real chip (gfx1010, gfx1011, gfx1012)?

Each code object is disassembled twice by Debian's `llvm-objdump`, as its own target and as
the chip. LLVM's AMDGPU disassembler decodes a word only where the `--mcpu` has that
instruction: a word the chip cannot decode is printed as `.long 0x...`, and an opcode that
means another instruction on the chip decodes to that one (gfx1030's `v_fmac_legacy_f32` is
gfx1010's `v_mac_legacy_f32`). The two listings are read as they stream, side by side, and
compared line by line; only lines that differ are parsed. Passing is necessary, not
sufficient: code built for gfx1030 is also built without the gfx10.1 hardware-bug
workarounds listed in BUG_FEATURES, which no disassembly can show."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

from .codeobjects import CodeObject
from .errors import AuditUsageError
from .targets import GENERIC_MEMBERS, TargetId, as_target, runs_on

OBJDUMP_ENV = "IMAGEFACTORY_LLVM_OBJDUMP"
INSTALL_HINT = "apt-get install llvm-19 (Debian's LLVM; llvm-objdump with the AMDGPU target)"
CHIPS = ("gfx1010", "gfx1011", "gfx1012", "gfx1013")
EXAMPLES = 5  # first differing instructions kept per code object

# LLVM's gfx10.1 hardware-bug features (llvm/lib/Target/AMDGPU/AMDGPU.td, the
# FeatureISAVersion10_1_* sets, -mattr names as `llc -mattr=help` prints them): on a gfx10.1
# target the compiler works around these; gfx10.3 targets have none of them set, so gfx1030
# code is compiled without the workarounds.
_GFX10_1_BUGS = ("vcmpx-permlane-hazard", "vmem-to-scalar-write-hazard",
                 "smem-to-vector-write-hazard", "inst-fwd-prefetch-bug",
                 "vcmpx-exec-war-hazard", "lds-branch-vmem-war-hazard", "nsa-to-vmem-bug",
                 "nsa-clause-bug", "offset-3f-bug", "flat-segment-offset-bug",
                 "negative-unaligned-scratch-offset-bug")
BUG_FEATURES: dict[str, tuple[str, ...]] = {
    "gfx1010": (*_GFX10_1_BUGS, "lds-misaligned-bug"),
    "gfx1011": (*_GFX10_1_BUGS, "lds-misaligned-bug"),
    "gfx1012": (*_GFX10_1_BUGS, "lds-misaligned-bug"),
    "gfx1013": _GFX10_1_BUGS,
}
BUG_FEATURES["gfx10-1-generic"] = tuple(sorted(set().union(*BUG_FEATURES.values())))

# `\tv_dot2c_f32_f16_e32 v0, v1, v2      // 000000000000: 04000501`
_INSN = re.compile(rb"^\t(\S+)([^\n]*?)\s*// ([0-9A-Fa-f]+):")
_SYMBOL = re.compile(rb"^[0-9a-fA-F]+ <(.*)>:$")
_SUFFIX = re.compile(r"_(?:e32|e64|sdwa|dpp8?|e64_dpp)$")


def find_objdump() -> str | None:
    """Debian's llvm-objdump: $IMAGEFACTORY_LLVM_OBJDUMP, else the newest versioned one
    (llvm-objdump-19 or /usr/lib/llvm-19/bin), else plain llvm-objdump; None when absent."""
    env = os.environ.get(OBJDUMP_ENV)
    if env:
        return env if os.access(env, os.X_OK) else None
    found: list[tuple[int, str]] = []
    for d in os.environ.get("PATH", "").split(os.pathsep):
        for p in glob.glob(os.path.join(d or ".", "llvm-objdump-[0-9]*")):
            v = p.rsplit("-", 1)[1]
            if v.isdigit() and os.access(p, os.X_OK):
                found.append((int(v), p))
    for p in glob.glob("/usr/lib/llvm-[0-9]*/bin/llvm-objdump"):
        v = p.split("/")[3].rsplit("-", 1)[1]
        if v.isdigit() and os.access(p, os.X_OK):
            found.append((int(v), p))
    if found:
        return max(found)[1]
    return shutil.which("llvm-objdump")


def objdump_status() -> tuple[str | None, str]:
    """(path, one line) for `doctor`: where llvm-objdump is, or how to install it."""
    tool = find_objdump()
    if tool is None:
        return None, f"llvm-objdump not found: the instruction check is skipped; {INSTALL_HINT}"
    return tool, f"llvm-objdump at {tool}: the instruction check can run"


@dataclass
class ObjectFindings:
    """One code object, disassembled as its target and as the chip."""

    where: str
    library: str
    target: str
    symbols: int = 0
    flagged: set[str] = field(default_factory=set)  # symbols with undecodable words
    differing: set[str] = field(default_factory=set)  # symbols with differing decodes
    undecodable: Counter[str] = field(default_factory=Counter)  # own mnemonic -> words
    different: Counter[str] = field(default_factory=Counter)  # "own -> chip" -> count
    examples: list[str] = field(default_factory=list)
    instructions: int = 0
    error: str | None = None


def _mnemonic(raw: bytes) -> str:
    return _SUFFIX.sub("", raw.decode("ascii", "replace"))


def _parse(line: bytes) -> tuple[int, bytes, bytes] | None:
    m = _INSN.match(line)
    if m is None:
        return None
    return int(m.group(3), 16), m.group(1), m.group(2).strip()


def kernel_names(table: Iterable[bytes]) -> frozenset[bytes]:
    """The kernels in an `llvm-objdump -t` listing: each has a `NAME.kd` descriptor symbol
    (Tensile's code also carries thousands of local labels, which are not kernels)."""
    out = set()
    for line in table:
        name = line.rstrip(b"\r\n").rsplit(None, 1)[-1] if line.strip() else b""
        if name.endswith(b".kd"):
            out.add(name[:-3])
    return frozenset(out)


def compare_listings(own: Iterable[bytes], chip: Iterable[bytes], found: ObjectFindings,
                     kernels: frozenset[bytes] | None = None) -> None:
    """Compare two llvm-objdump listings of one code object, line by line, into `found`.

    Equal lines are the rule and cost one comparison; where they differ, the lines are
    parsed and matched by address: the chip's `.long` is a word it cannot decode; another
    mnemonic (or operands) is a word it decodes differently; an own instruction the chip's
    listing skips lies inside a longer instruction the chip decoded instead."""
    a, b = iter(own), iter(chip)
    la, lb = next(a, None), next(b, None)
    symbol = "<none>"
    while la is not None and lb is not None:
        if la == lb:
            if la[:1] == b"\t":
                found.instructions += 1
            elif (m := _SYMBOL.match(la.rstrip(b"\r\n"))) is not None and (
                    not kernels or m.group(1) in kernels):
                symbol = m.group(1).decode("utf-8", "replace")
                found.symbols += 1
            la, lb = next(a, None), next(b, None)
            continue
        pa, pb = _parse(la), _parse(lb)
        if pa is None and pb is None:  # headers that differ (never seen): keep going
            la, lb = next(a, None), next(b, None)
            continue
        if pb is None or (pa is not None and pa[0] < pb[0]):
            if pa is not None:  # own instruction with no chip line at its address
                found.instructions += 1
                _record(found, symbol, pa, None)
            la = next(a, None)
            continue
        if pa is None or pb[0] < pa[0]:  # chip words inside an instruction already counted
            lb = next(b, None)
            continue
        found.instructions += 1
        _record(found, symbol, pa, pb)
        la, lb = next(a, None), next(b, None)
    for rest in (a, b):  # a listing cut short: say so rather than pass
        if (la if rest is a else lb) is not None or next(rest, None) is not None:
            found.error = found.error or "the two listings end at different places"


def _record(found: ObjectFindings, symbol: str, own: tuple[int, bytes, bytes],
            chip: tuple[int, bytes, bytes] | None) -> None:
    if own[1] == b".long":  # not an instruction for its own target either (data, padding)
        return
    name = _mnemonic(own[1])
    if chip is not None and chip[1] == b".long":
        found.undecodable[name] += 1
        found.flagged.add(symbol)
        what = "does not decode"
    else:
        other = "(inside another instruction)" if chip is None else _mnemonic(chip[1])
        if chip is not None and other == name:
            other = f"{name} {chip[2].decode('ascii', 'replace')}"
        found.different[f"{name} -> {other}"] += 1
        found.differing.add(symbol)
        what = f"decodes as {other}"
    if len(found.examples) < EXAMPLES:
        found.examples.append(f"{symbol}+0x{own[0]:x}: {name} {what}")


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    yield from stream


def disassemble_compare(tool: str, co: CodeObject, chip: str) -> ObjectFindings:
    """Run llvm-objdump twice on one code object, side by side, and compare the listings."""
    found = ObjectFindings(co.where, co.library, str(co.target))
    tmp = None
    try:
        path = co.file
        if path is None:
            fd, tmp = tempfile.mkstemp(prefix="isa-", suffix=".co")
            with os.fdopen(fd, "wb") as f:
                f.write(co.data or b"")
            path = tmp
        table = subprocess.run([tool, "-t", path], capture_output=True, check=False).stdout
        kernels = kernel_names(table.splitlines())
        cmd = [tool, "-d", "--no-show-raw-insn"]
        # stderr to files: a full stderr pipe nobody reads would stall the listing
        with tempfile.TemporaryFile() as e1, tempfile.TemporaryFile() as e2:
            own = subprocess.Popen([*cmd, f"--mcpu={co.target.processor}", path],
                                   stdout=subprocess.PIPE, stderr=e1, bufsize=1 << 20)
            other = subprocess.Popen([*cmd, f"--mcpu={chip}", path],
                                     stdout=subprocess.PIPE, stderr=e2, bufsize=1 << 20)
            assert own.stdout is not None and other.stdout is not None
            compare_listings(_lines(own.stdout), _lines(other.stdout), found, kernels)
            for p, e in ((own, e1), (other, e2)):
                assert p.stdout is not None
                p.stdout.read()
                p.stdout.close()
                if p.wait() != 0:
                    e.seek(0)
                    err = e.read(4096).decode("utf-8", "replace").strip().splitlines()
                    found.error = f"llvm-objdump failed: {err[-1] if err else p.returncode}"
    except OSError as exc:
        found.error = f"llvm-objdump could not run: {exc.strerror or exc}"
    finally:
        if tmp is not None:
            os.unlink(tmp)
    return found


def loaded_isa(chip: str, override: str | None) -> TargetId:
    """The ISA the runtime reports on `chip` under a profile: the override's, or the chip."""
    from .check import isa_from_override

    return as_target(isa_from_override(override) if override else chip)


def wanted(isa: TargetId) -> Any:
    """The code objects the loader may pick for `isa`: its own, or a generic one it belongs to."""
    return lambda target: runs_on(target, isa)


def check_chip(chip: str) -> str:
    t = as_target(chip)
    if t.processor not in CHIPS and t.processor not in GENERIC_MEMBERS.get("gfx10-1-generic",
                                                                           frozenset()):
        raise AuditUsageError(f"--chip {chip}: not an RDNA1 chip (expected one of "
                              f"{', '.join(CHIPS)})")
    return t.processor


@dataclass
class LibraryIsa:
    name: str
    code_objects: int = 0
    symbols: int = 0
    flagged: int = 0
    differing: int = 0
    instructions: int = 0
    undecodable: Counter[str] = field(default_factory=Counter)
    different: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class IsaReport:
    """The instruction check of one source for one chip under one profile."""

    source: str
    chip: str
    override: str | None
    loaded: str
    skipped: str | None = None  # why the check did not run (no llvm-objdump)
    libraries: dict[str, LibraryIsa] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        """"skipped", "fail", "pass" — never "pass" for a check that did not read code."""
        if self.skipped:
            return "skipped"
        if not self.libraries or any(lib.undecodable or lib.errors
                                     for lib in self.libraries.values()):
            return "fail"
        return "pass"

    @property
    def profile(self) -> str:
        return f"override {self.override}" if self.override else "native"

    @property
    def missing_workarounds(self) -> tuple[str, ...]:
        """The chip's bug features the checked code was not compiled for."""
        bugs = BUG_FEATURES.get(self.chip, ())
        return () if self.loaded in (self.chip, "gfx10-1-generic") else bugs

    def add(self, f: ObjectFindings) -> None:
        lib = self.libraries.setdefault(f.library, LibraryIsa(f.library))
        lib.code_objects += 1
        lib.symbols += f.symbols
        lib.flagged += len(f.flagged)
        lib.differing += len(f.differing - f.flagged)
        lib.instructions += f.instructions
        lib.undecodable.update(f.undecodable)
        lib.different.update(f.different)
        lib.examples.extend(f"{f.where}: {e}" for e in f.examples[:EXAMPLES - len(lib.examples)])
        if f.error:
            lib.errors.append(f"{f.where}: {f.error}")

    def lines(self) -> list[str]:
        """The plain-text report: one line per library, then what was not checked."""
        head = f"instructions: {self.profile} on {self.chip} (code loaded: {self.loaded})"
        if self.skipped:
            return [f"{head}: skipped: {self.skipped}"]
        if not self.libraries:
            return [f"{head}: fail: no {self.loaded} code object read in {self.source}"]
        out = [head + ":"]
        for lib in self.libraries.values():
            words = sum(lib.undecodable.values())
            line = (f"  {lib.name}: {lib.flagged:,} of {lib.symbols:,} kernels use instructions "
                    f"{self.chip} lacks ({words:,} words in {lib.code_objects:,} code objects)")
            if lib.undecodable:
                line += ": " + ", ".join(f"{m} x{n:,}" for m, n in lib.undecodable.most_common(8))
            out.append(line)
            if lib.different:
                out.append(f"  {lib.name}: {sum(lib.different.values()):,} words decode as "
                           f"another instruction on {self.chip} (in {lib.differing:,} more "
                           "kernels): " + ", ".join(
                               f"{m} x{n:,}" for m, n in lib.different.most_common(6)))
            out.extend(f"    first: {e}" for e in lib.examples[:3])
            out.extend(f"  {lib.name}: error: {e}" for e in lib.errors[:3])
        bugs = self.missing_workarounds
        out.append("  necessary, not sufficient: " + (
            f"the code was compiled without {self.chip}'s hardware-bug workarounds "
            f"({', '.join(bugs)})" if bugs else "timing and memory behaviour are not checked"))
        out.extend(f"  problem: {p}" for p in self.problems[:10])
        return out

    def failures(self) -> list[str]:
        """One line per failing library: its name, kernel count and first instructions."""
        if self.skipped:
            return []
        if not self.libraries:
            return [f"no {self.loaded} code object read in {self.source}"]
        out = []
        for lib in self.libraries.values():
            if lib.undecodable:
                first = "; ".join([e for e in lib.examples if "does not decode" in e][:2])
                out.append(f"{lib.name}: {lib.flagged:,} of {lib.symbols:,} kernels use "
                           f"instructions {self.chip} lacks "
                           f"({', '.join(m for m, _ in lib.undecodable.most_common(4))}); "
                           f"first: {first}")
            out.extend(f"{lib.name}: {e}" for e in lib.errors[:1])
        return out

    def summary(self) -> str:
        """`override 10.3.0 on gfx1010: rocblas 412 of 1,050 kernels use instructions gfx1010
        lacks` — the line for the report and the result."""
        head = f"{self.profile} on {self.chip}"
        if self.skipped:
            return f"{head}: instruction check skipped ({self.skipped})"
        bad = [f"{lib.name} {lib.flagged:,} of {lib.symbols:,} kernels"
               for lib in self.libraries.values() if lib.flagged]
        if bad:
            return f"{head}: {', '.join(bad)} use instructions {self.chip} lacks"
        if not self.libraries:
            return f"{head}: no {self.loaded} code object read"
        n = sum(lib.symbols for lib in self.libraries.values())
        return f"{head}: all {n:,} kernels decode on {self.chip}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status, "passed": self.status == "pass", "chip": self.chip,
            "profile": self.profile, "loaded": self.loaded, "skipped": self.skipped,
            "summary": self.summary(), "failures": self.failures(),
            "missing_workarounds": list(self.missing_workarounds),
            "libraries": {n: {"code_objects": lib.code_objects, "kernels": lib.symbols,
                              "kernels_flagged": lib.flagged,
                              "kernels_differing": lib.differing,
                              "instructions": lib.instructions,
                              "undecodable": dict(lib.undecodable.most_common()),
                              "different": dict(lib.different.most_common()),
                              "first": lib.examples, "errors": lib.errors}
                          for n, lib in self.libraries.items()},
            "problems": self.problems, "seconds": self.seconds,
        }


def run_check(code_objects: Iterable[CodeObject], source: str, chip: str,
              override: str | None, problems: list[str] | None = None,
              jobs: int | None = None, tool: str | None = None) -> IsaReport:
    """Disassemble every code object as its target and as `chip`, in parallel (each job runs
    two llvm-objdump processes; the code objects are produced as the source is read)."""
    import time

    t = time.monotonic()
    chip = check_chip(chip)
    loaded = loaded_isa(chip, override)
    report = IsaReport(source, chip, override, str(loaded))
    tool = tool or find_objdump()
    if tool is None:
        report.skipped = f"llvm-objdump not found; {INSTALL_HINT}"
        return report
    jobs = jobs or max(1, (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending = []
        for co in code_objects:
            pending.append(pool.submit(disassemble_compare, tool, co, chip))
            while len(pending) > 2 * jobs:  # bounded memory: cut-out code objects wait here
                report.add(pending.pop(0).result())
        for fut in pending:
            report.add(fut.result())
    report.problems.extend(problems or ())
    report.libraries = dict(sorted(report.libraries.items()))
    report.seconds = round(time.monotonic() - t, 3)
    return report
