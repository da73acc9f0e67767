"""AMDGPU processor names, target IDs and which code runs on which ISA.

Sources (read, not copied):
- EF_AMDGPU_MACH_* values: llvm/llvm-project llvm/include/llvm/BinaryFormat/ELF.h at
  008d0233ac9b38e92ee81a9d09c815d61fda1240 (the "AMDGPU specific e_flags" enum). Values that
  enum now marks reserved but older LLVM releases assigned (gfx940 0x040, gfx941 0x04b) are
  taken from llvm/docs/AMDGPUUsage.rst of the same era ("AMDGPU EF_AMDGPU_MACH Values").
- Generic processors and their members: llvm/docs/AMDGPUUsage.rst, table
  "AMDGPU Generic Processors" (amdgpu-generic-processor-table).
- Target ID syntax (`processor(:feature[+-])*`) and bundle entry IDs
  (`kind-arch-vendor-os-env[-targetid]`): clang/docs/ClangOffloadBundler.rst and
  clang/lib/Driver/OffloadBundler.cpp (OffloadTargetInfo) at
  000390203c87508e7d1bbf2002bb9ce819cef1b8.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import MalformedInput

# e_flags & EF_AMDGPU_MACH (0xff) -> processor name.
MACH_PROCESSORS: dict[int, str] = {
    0x020: "gfx600", 0x021: "gfx601", 0x022: "gfx700", 0x023: "gfx701", 0x024: "gfx702",
    0x025: "gfx703", 0x026: "gfx704", 0x028: "gfx801", 0x029: "gfx802", 0x02A: "gfx803",
    0x02B: "gfx810", 0x02C: "gfx900", 0x02D: "gfx902", 0x02E: "gfx904", 0x02F: "gfx906",
    0x030: "gfx908", 0x031: "gfx909", 0x032: "gfx90c", 0x033: "gfx1010", 0x034: "gfx1011",
    0x035: "gfx1012", 0x036: "gfx1030", 0x037: "gfx1031", 0x038: "gfx1032", 0x039: "gfx1033",
    0x03A: "gfx602", 0x03B: "gfx705", 0x03C: "gfx805", 0x03D: "gfx1035", 0x03E: "gfx1034",
    0x03F: "gfx90a", 0x040: "gfx940", 0x041: "gfx1100", 0x042: "gfx1013", 0x043: "gfx1150",
    0x044: "gfx1103", 0x045: "gfx1036", 0x046: "gfx1101", 0x047: "gfx1102", 0x048: "gfx1200",
    0x04A: "gfx1151", 0x04B: "gfx941", 0x04C: "gfx942", 0x04E: "gfx1201", 0x04F: "gfx950",
    0x051: "gfx9-generic", 0x052: "gfx10-1-generic", 0x053: "gfx10-3-generic",
    0x054: "gfx11-generic", 0x055: "gfx1152", 0x058: "gfx1153", 0x059: "gfx12-generic",
    0x05F: "gfx9-4-generic",
}

# Generic processor -> the processors its code objects run on.
GENERIC_MEMBERS: dict[str, frozenset[str]] = {
    "gfx9-generic": frozenset({"gfx900", "gfx902", "gfx904", "gfx906", "gfx909", "gfx90c"}),
    "gfx9-4-generic": frozenset({"gfx940", "gfx941", "gfx942", "gfx950"}),
    "gfx10-1-generic": frozenset({"gfx1010", "gfx1011", "gfx1012", "gfx1013"}),
    "gfx10-3-generic": frozenset(
        {"gfx1030", "gfx1031", "gfx1032", "gfx1033", "gfx1034", "gfx1035", "gfx1036"}),
    "gfx11-generic": frozenset(
        {"gfx1100", "gfx1101", "gfx1102", "gfx1103", "gfx1150", "gfx1151", "gfx1152",
         "gfx1153"}),
    "gfx12-generic": frozenset({"gfx1200", "gfx1201"}),
}

KNOWN_PROCESSORS = frozenset(MACH_PROCESSORS.values())

# A processor name as it appears in target IDs and file names (gfx1010, gfx90a, gfx10-1-generic).
PROCESSOR_RE = r"gfx(?:\d{1,2}(?:-\d)?-generic|\d{2,4}[a-f]?)"
_TARGET_ID = re.compile(rf"(?P<proc>{PROCESSOR_RE})(?P<feats>(?::[A-Za-z0-9_]+[+-])*)")
_FEATURE = re.compile(r":([A-Za-z0-9_]+)([+-])")
# Entry IDs are short ASCII; anything else is not an offload bundle.
_ENTRY_ID = re.compile(r"[A-Za-z0-9_.:+\-]{1,512}")
OFFLOAD_KINDS = frozenset({"host", "hip", "hipv4", "openmp", "cuda", "sycl"})


@dataclass(frozen=True, order=True)
class TargetId:
    """An AMDGPU target ID: a processor and its explicitly set features (xnack, sramecc)."""

    processor: str
    features: tuple[tuple[str, bool], ...] = ()  # sorted by name; absent means "any"

    def __str__(self) -> str:
        return self.processor + "".join(f":{n}{'+' if on else '-'}" for n, on in self.features)

    @property
    def is_generic(self) -> bool:
        return self.processor.endswith("-generic")


def parse_target_id(text: str) -> TargetId:
    """`gfx1010`, `gfx90a:sramecc+:xnack-`, `gfx10-1-generic` -> TargetId."""
    m = _TARGET_ID.fullmatch(text)
    if not m:
        raise MalformedInput(f"not an AMDGPU target ID: {text[:80]!r}")
    if m.group("proc") not in KNOWN_PROCESSORS:
        raise MalformedInput(f"unknown AMDGPU processor {m.group('proc')!r} (not in LLVM's "
                             "EF_AMDGPU_MACH table this audit knows)")
    feats = tuple(sorted((n, s == "+") for n, s in _FEATURE.findall(m.group("feats"))))
    return TargetId(m.group("proc"), feats)


def parse_entry_id(entry: str) -> tuple[str, str, TargetId | None]:
    """A bundle entry ID -> (offload kind, triple, target or None for host/non-AMDGPU entries).

    `hipv4-amdgcn-amd-amdhsa--gfx1010` has an empty environment; old HIP wrote
    `hip-amdgcn-amd-amdhsa-gfx906` (no environment component)."""
    if not _ENTRY_ID.fullmatch(entry):
        raise MalformedInput(f"bundle entry ID is not a short ASCII name: {entry[:80]!r}")
    parts = entry.split("-", 5)
    if parts[0] not in OFFLOAD_KINDS:
        raise MalformedInput(f"bundle entry ID has no known offload kind: {entry[:80]!r}")
    # kind + a 4-part triple (+ target); old host entries had a 3-part triple
    if len(parts) < (4 if parts[0] == "host" else 5) or not all(parts[1:4]):
        raise MalformedInput(f"bundle entry ID has no full triple: {entry[:80]!r}")
    kind = parts[0]
    if len(parts) == 5 and parts[4].startswith("gfx"):  # old 3-component triple + processor
        triple, tid = "-".join(parts[1:4]), parts[4]
    else:
        triple = "-".join(parts[1:5])
        tid = parts[5] if len(parts) == 6 else ""  # maxsplit keeps `gfx10-1-generic` whole
    if kind == "host" or not triple.startswith("amdgcn") or not tid:
        return kind, triple, None
    return kind, triple, parse_target_id(tid)


def processor_from_mach(mach: int) -> str | None:
    return MACH_PROCESSORS.get(mach & 0xFF)


def runs_on(code: TargetId, device: TargetId) -> bool:
    """Whether a code object built for `code` can be loaded on a `device` ISA.

    The processor must match, or `code` is a generic processor that lists the device's.
    A feature set in the code object (xnack-) must match the device's when the device states
    it; a device given as a bare processor is taken to accept either setting. gfx1030 code
    does not run on gfx1010: only generic targets cover other processors."""
    if code.processor != device.processor and device.processor not in GENERIC_MEMBERS.get(
            code.processor, frozenset()):
        return False
    dev = dict(device.features)
    return all(dev.get(name, on) == on for name, on in code.features)


def as_target(isa: str | TargetId) -> TargetId:
    return isa if isinstance(isa, TargetId) else parse_target_id(isa)


_IN_NAME = re.compile(rf"(?<![0-9A-Za-z])({PROCESSOR_RE})(?![0-9a-z])")


def processors_in_name(name: str) -> list[str]:
    """Processor names in a file name (`TensileLibrary_..._gfx1010.co`, `gfx1030_40.kdb`)."""
    return [p for p in _IN_NAME.findall(name) if p in KNOWN_PROCESSORS]
