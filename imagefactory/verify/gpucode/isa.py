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

import bisect
import contextlib
import fcntl
import glob
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import IO, Any

from .codeobjects import CodeObject
from .errors import AuditUsageError
from .targets import GENERIC_MEMBERS, TargetId, as_target, runs_on

OBJDUMP_ENV = "IMAGEFACTORY_LLVM_OBJDUMP"
INSTALL_HINT = "apt-get install llvm-19 (Debian's LLVM; llvm-objdump with the AMDGPU target)"
CHIPS = ("gfx1010", "gfx1011", "gfx1012", "gfx1013")
EXAMPLES = 5  # first differing instructions kept per code object
KERNEL_NAMES = 10  # kernel names kept per mnemonic and library (the count is always whole)

# From LLVM's llvm/lib/Target/AMDGPU/AMDGPU.td (llvm-project 001c38d03e77) and
# GCNProcessors.td, which gives gfx101N the set FeatureISAVersion10_1_N:
# - FeatureISAVersion10_1_Common (all of gfx1010..gfx1013, and gfx10-1-generic) carries
#   lds-misaligned-bug and the eleven "gfx101x bugs"; FeatureISAVersion10_3_0 (gfx1030) carries
#   none of them, so gfx1030 code is compiled without these workarounds.
# - 10_1_1 and 10_1_2 (gfx1011, gfx1012) add dot1, dot2, dot5, dot6, dot7 and dot10-insts:
#   the same dot set as 10_3_0. 10_1_0 (gfx1010) adds nothing and 10_1_3 (gfx1013) only the
#   GFX10_A encoding, so neither has a dot instruction.
# The names are the -mattr spellings (`llc -mattr=help`).
_GFX10_1_BUGS = ("lds-misaligned-bug", "vcmpx-permlane-hazard", "vmem-to-scalar-write-hazard",
                 "smem-to-vector-write-hazard", "inst-fwd-prefetch-bug",
                 "vcmpx-exec-war-hazard", "lds-branch-vmem-war-hazard", "nsa-to-vmem-bug",
                 "nsa-clause-bug", "offset-3f-bug", "flat-segment-offset-bug",
                 "negative-unaligned-scratch-offset-bug")
BUG_FEATURES: dict[str, tuple[str, ...]] = {
    chip: _GFX10_1_BUGS for chip in (*CHIPS, "gfx10-1-generic")}
_GFX1030_DOT = ("dot1-insts", "dot2-insts", "dot5-insts", "dot6-insts", "dot7-insts",
                "dot10-insts")
# The instruction features gfx1030 code may use and the chip lacks (10_3_0 less 10_1_N).
LACKS_FROM_GFX1030: dict[str, tuple[str, ...]] = {
    "gfx1010": (*_GFX1030_DOT, "gfx10-3-insts", "gfx10_a-encoding", "gfx10_b-encoding"),
    "gfx1011": ("gfx10-3-insts", "gfx10_a-encoding", "gfx10_b-encoding"),
    "gfx1012": ("gfx10-3-insts", "gfx10_a-encoding", "gfx10_b-encoding"),
    "gfx1013": (*_GFX1030_DOT, "gfx10-3-insts", "gfx10_b-encoding"),
}

# `\tv_dot2c_f32_f16_e32 v0, v1, v2      // 000000000000: 04000501`
_INSN = re.compile(rb"^\t(\S+)([^\n]*?)\s*// ([0-9A-Fa-f]+):")
_SYMBOLS = re.compile(rb"^[0-9a-fA-F]+ <(.*)>:$", re.M)
_SUFFIX = re.compile(r"_(?:e32|e64|sdwa|dpp8?|e64_dpp)$")
_CHUNK = 1 << 20  # pipe size asked for and read size: fewer wake-ups per MB of listing
_MAX_INSN = 12  # bytes: the longest gfx10 instruction (8-byte encoding + literal)
_LOW = 1 << 18  # read on when less than this is buffered (each read copies what is left)
_F_SETPIPE_SZ = 1031  # Linux fcntl


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
    users: dict[str, set[str]] = field(default_factory=dict)  # undecodable mnemonic -> kernels
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


def kernel_table(table: Iterable[bytes]) -> dict[int, str]:
    """The kernels in an `llvm-objdump -t` listing, by start address: the function symbols
    with a `NAME.kd` descriptor. By address, since the listing names an address by one of its
    symbols only (Tensile puts a local `NAME_preloaded` label on each kernel's first word),
    and Tensile's thousands of local labels are not kernels."""
    funcs: list[tuple[int, bytes]] = []
    descriptors = set()
    for line in table:
        parts = line.split()
        if len(parts) < 4:
            continue
        name = parts[-1]
        if name.endswith(b".kd"):
            descriptors.add(name[:-3])
        elif b".text" in parts[1:-1]:
            try:
                funcs.append((int(parts[0], 16), name))
            except ValueError:
                continue
    return {addr: name.decode("utf-8", "replace") for addr, name in funcs
            if name in descriptors}


class _Listing:
    """One listing read in chunks of any size (pipe reads, or a test's lines): whole lines
    for the careful path, the buffer itself for the fast one."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self.buf = b""
        self.pos = 0
        self.eof = False

    def avail(self) -> int:
        return len(self.buf) - self.pos

    def more(self) -> bool:
        """Append the next non-empty chunk; False at the end."""
        while not self.eof:
            chunk = next(self._it, None)
            if chunk is None:
                self.eof = True
            elif chunk:
                self.buf = self.buf[self.pos:] + chunk
                self.pos = 0
                return True
        return False

    def line(self) -> bytes | None:
        while True:
            j = self.buf.find(b"\n", self.pos)
            if j >= 0:
                out = self.buf[self.pos:j + 1]
                self.pos = j + 1
                return out
            if not self.more():
                if self.pos < len(self.buf):
                    out = self.buf[self.pos:]
                    self.pos = len(self.buf)
                    return out
                return None


def _common(a: _Listing, b: _Listing) -> list[bytes]:
    """Skip the longest run of whole lines both listings have from here on, and return it.
    Compared in C, a slice at a time, growing while they agree: where words differ every
    few lines the first small slice already fails, and agreeing megabytes cost memcmp."""
    out: list[bytes] = []
    while True:
        for s in (a, b):
            if s.avail() < _LOW:
                s.more()
        n = min(a.avail(), b.avail())
        if n == 0:
            return out
        ab, bb, pa, pb = a.buf, b.buf, a.pos, b.pos
        k, step = 0, 256
        while k < n:
            m = min(step, n - k)
            if ab[pa + k:pa + k + m] != bb[pb + k:pb + k + m]:
                break
            k += m
            step = min(step * 4, 1 << 16)
        cut = ab.rfind(b"\n", pa, pa + k)
        if cut < 0:
            return out
        out.append(ab[pa:cut + 1])
        a.pos = cut + 1
        b.pos = pb + (cut + 1 - pa)
        if k < n:
            return out


class _Symbols:
    """Which kernel an address lies in: from the symbol table when it has kernels, else the
    listing's own symbol lines (the last one seen)."""

    def __init__(self, kernels: dict[int, str] | None) -> None:
        self.table = dict(sorted((kernels or {}).items()))
        self.starts = list(self.table)
        self.names = list(self.table.values())
        self.current = "<none>"
        self.seen = 0

    def block(self, data: bytes) -> None:
        if not self.table and b">:" in data:
            names = _SYMBOLS.findall(data)
            if names:
                self.seen += len(names)
                self.current = names[-1].decode("utf-8", "replace")

    def at(self, addr: int) -> str:
        if not self.table:
            return self.current
        i = bisect.bisect_right(self.starts, addr) - 1
        return self.names[i] if i >= 0 else "<none>"


def compare_listings(own: Iterable[bytes], chip: Iterable[bytes], found: ObjectFindings,
                     kernels: dict[int, str] | None = None) -> None:
    """Compare two llvm-objdump listings of one code object (as chunks of bytes) into `found`.

    Equal stretches are the rule and are skipped in C (`_common`); where the lines differ,
    they are parsed and matched by address: the chip's `.long` is a word it cannot decode;
    another mnemonic (or operands) is a word it decodes differently; an own instruction the
    chip's listing skips lies inside a longer instruction the chip decoded instead."""
    a, b = _Listing(own), _Listing(chip)
    sym = _Symbols(kernels)
    la: bytes | None = None
    lb: bytes | None = None
    last_own = last_chip = -1  # the last instruction address each listing gave
    while True:
        if la is None and lb is None:
            for block in _common(a, b):
                found.instructions += block.count(b"\n\t") + (block[:1] == b"\t")
                sym.block(block)
            la, lb = a.line(), b.line()
        else:
            la = a.line() if la is None else la
            lb = b.line() if lb is None else lb
        if la is None or lb is None:
            break
        if la == lb:
            if la[:1] == b"\t":
                found.instructions += 1
            else:
                sym.block(la)  # the same bytes the fast path would read
            la = lb = None
            continue
        pa, pb = _parse(la), _parse(lb)
        if pa is None and pb is None:  # headers that differ (never seen): keep going
            la = lb = None
            continue
        if pb is None or (pa is not None and pa[0] < pb[0]):
            if pa is not None:  # own instruction with no chip line at its address
                found.instructions += 1
                last_own = pa[0]
                _record(found, sym.at(pa[0]), pa, None)
            la = None
            continue
        if pa is None or pb[0] < pa[0]:  # chip words inside an instruction already counted
            last_chip = pb[0]
            lb = None
            continue
        found.instructions += 1
        last_own = last_chip = pa[0]
        _record(found, sym.at(pa[0]), pa, pb)
        la = lb = None
    found.symbols = len(sym.table) if sym.table else sym.seen
    # One listing may end inside the other's last instruction (a 12-byte instruction read
    # as three words, or three words read as one): that is the end of both. Anything else
    # left over was never compared, and is no pass.
    while la is not None:
        pa = _parse(la)
        if pa is not None:
            if pa[0] >= last_chip + _MAX_INSN:
                found.error = found.error or "the two listings end at different places"
                break
            found.instructions += 1
            _record(found, sym.at(pa[0]), pa, None)
        la = a.line()
    while lb is not None:
        pb = _parse(lb)
        if pb is not None and pb[0] >= last_own + _MAX_INSN:
            found.error = found.error or "the two listings end at different places"
            break
        lb = b.line()


def _record(found: ObjectFindings, symbol: str, own: tuple[int, bytes, bytes],
            chip: tuple[int, bytes, bytes] | None) -> None:
    if own[1] == b".long":  # not an instruction for its own target either (data, padding)
        return
    name = _mnemonic(own[1])
    if chip is not None and chip[1] == b".long":
        found.undecodable[name] += 1
        found.flagged.add(symbol)
        found.users.setdefault(name, set()).add(symbol)
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


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    with contextlib.suppress(OSError):  # a bigger pipe is a speed-up, not a need
        fcntl.fcntl(stream.fileno(), _F_SETPIPE_SZ, _CHUNK)
    read = getattr(stream, "read1", stream.read)
    while chunk := read(_CHUNK):
        yield chunk


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
        kernels = kernel_table(table.splitlines())
        cmd = [tool, "-d", "--no-show-raw-insn"]
        # stderr to files: a full stderr pipe nobody reads would stall the listing
        with tempfile.TemporaryFile() as e1, tempfile.TemporaryFile() as e2:
            own = subprocess.Popen([*cmd, f"--mcpu={co.target.processor}", path],
                                   stdout=subprocess.PIPE, stderr=e1, bufsize=0)
            other = subprocess.Popen([*cmd, f"--mcpu={chip}", path],
                                     stdout=subprocess.PIPE, stderr=e2, bufsize=0)
            assert own.stdout is not None and other.stdout is not None
            compare_listings(_chunks(own.stdout), _chunks(other.stdout), found, kernels)
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
    users: Counter[str] = field(default_factory=Counter)  # mnemonic -> kernels using it
    user_names: dict[str, list[str]] = field(default_factory=dict)  # the first KERNEL_NAMES
    examples: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def kernels_using(self) -> dict[str, dict[str, Any]]:
        return {m: {"kernels": n, "names": self.user_names.get(m, [])}
                for m, n in self.users.most_common()}


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
        """"skipped", "fail", "incomplete", "pass" — never "pass" for a check that did not
        read code. "fail": a word the chip cannot decode, or no code object read at all;
        "incomplete": none found, but llvm-objdump failed on some code object, which says
        nothing about the card (`imagefactory test` does not fail on it; `audit` exits 1)."""
        if self.skipped:
            return "skipped"
        libs = self.libraries.values()
        if not self.libraries or any(lib.undecodable for lib in libs):
            return "fail"
        if any(lib.errors for lib in libs):
            return "incomplete"
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
        for m, kernels in f.users.items():
            lib.users[m] += len(kernels)
            names = lib.user_names.setdefault(m, [])
            names.extend(sorted(kernels)[:KERNEL_NAMES - len(names)])
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
            for m, n in lib.users.most_common(4):
                names = lib.user_names.get(m, [])
                out.append(f"    {m} in {n:,} kernel{'s' if n != 1 else ''}:")
                out.extend(f"      {k}" for k in names[:3])
                if n > 3:
                    out.append(f"      ... and {n - 3:,} more (--json lists the first "
                               f"{len(names)})")
            if lib.different:
                out.append(f"  {lib.name}: {sum(lib.different.values()):,} words decode as "
                           f"another instruction on {self.chip} (in {lib.differing:,} more "
                           "kernels): " + ", ".join(
                               f"{m} x{n:,}" for m, n in lib.different.most_common(6)))
            out.extend(f"    first: {e}" for e in lib.examples[:3])
            out.extend(f"  {lib.name}: error: {e}" for e in lib.errors[:3])
        lacks = LACKS_FROM_GFX1030.get(self.chip, ()) if self.loaded == "gfx1030" else ()
        if lacks and not any(lib.undecodable for lib in self.libraries.values()):
            out.append(f"  gfx1030 features {self.chip} lacks: {', '.join(lacks)}; every word "
                       f"of this code decoded on {self.chip} all the same")
        bugs = self.missing_workarounds
        out.append("  not checked: how the code runs (only the card shows that)")
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
                used = ", ".join(f"{m} in {lib.users[m]:,} kernel"
                                 f"{'s' if lib.users[m] != 1 else ''}"
                                 for m, _ in lib.undecodable.most_common(4))
                out.append(f"{lib.name}: {lib.flagged:,} of {lib.symbols:,} kernels use "
                           f"instructions {self.chip} lacks ({used}); first: {first}")
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
        broken = sum(len(lib.errors) for lib in self.libraries.values())
        if broken:
            return (f"{head}: incomplete: {broken:,} code object{'s' if broken != 1 else ''} "
                    "could not be disassembled; no undecodable word in the rest")
        n = sum(lib.symbols for lib in self.libraries.values())
        return f"{head}: all {n:,} kernels decode on {self.chip}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status, "passed": self.status == "pass", "chip": self.chip,
            "profile": self.profile, "loaded": self.loaded, "skipped": self.skipped,
            "summary": self.summary(), "failures": self.failures(),
            "missing_workarounds": list(self.missing_workarounds),
            "chip_lacks": list(LACKS_FROM_GFX1030.get(self.chip, ())
                               if self.loaded == "gfx1030" else ()),
            "libraries": {n: {"code_objects": lib.code_objects, "kernels": lib.symbols,
                              "kernels_flagged": lib.flagged,
                              "kernels_differing": lib.differing,
                              "instructions": lib.instructions,
                              "undecodable": dict(lib.undecodable.most_common()),
                              "different": dict(lib.different.most_common()),
                              "kernels_using": lib.kernels_using(),
                              "first": lib.examples, "errors": lib.errors}
                          for n, lib in self.libraries.items()},
            "problems": self.problems, "seconds": self.seconds,
        }


def _digest(co: CodeObject) -> bytes | None:
    h = hashlib.sha256()
    if co.data is not None:
        h.update(co.data)
    elif co.file is not None:
        try:
            with open(co.file, "rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
        except OSError:
            return None  # disassemble_compare says what is wrong with it
    return h.digest()


def _as(fut: Future[ObjectFindings], co: CodeObject) -> ObjectFindings:
    found = fut.result()
    if (found.where, found.library) == (co.where, co.library):
        return found
    return replace(found, where=co.where, library=co.library)


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
    # A code object seen before (byte for byte: a library shipped twice, a bundle entry
    # repeated) is disassembled once; its findings are counted again under its own name.
    done: dict[bytes, Future[ObjectFindings]] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending: list[tuple[Future[ObjectFindings], CodeObject]] = []
        for co in code_objects:
            key = _digest(co)
            fut = done.get(key) if key is not None else None
            if fut is None:
                fut = pool.submit(disassemble_compare, tool, co, chip)
                if key is not None:
                    done[key] = fut
            pending.append((fut, co))
            while len(pending) > 2 * jobs:  # bounded memory: cut-out code objects wait here
                report.add(_as(*pending.pop(0)))
        for fut, co in pending:
            report.add(_as(fut, co))
    report.problems.extend(problems or ())
    report.libraries = dict(sorted(report.libraries.items()))
    report.seconds = round(time.monotonic() - t, 3)
    return report
