"""The few ELF facts the audit needs: 64-bit little-endian headers, section headers, the
`.hip_fatbin` section, and an AMDGPU code object's processor and features.

Layouts: the System V gABI (Elf64_Ehdr, Elf64_Shdr, extended section numbering through section
0). AMDGPU e_flags: llvm/llvm-project llvm/include/llvm/BinaryFormat/ELF.h at
008d0233ac9b38e92ee81a9d09c815d61fda1240 (EF_AMDGPU_MACH mask 0xff; V3 xnack 0x100, sramecc
0x200; V4+ xnack field 0x300 and sramecc field 0xc00: 0 unsupported, 1 any, 2 off, 3 on) and
llvm/docs/AMDGPUUsage.rst (EI_ABIVERSION 1 = code object V3, 2 = V4, 3 = V5, 4 = V6)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import IO

from .errors import MalformedInput
from .targets import TargetId, processor_from_mach

ELF_MAGIC = b"\x7fELF"
EM_AMDGPU = 224
EHDR_SIZE = 64
SHDR_SIZE = 64
SHT_NOBITS = 8
SHN_XINDEX = 0xFFFF
MAX_SECTIONS = 1 << 16
MAX_SHSTRTAB = 16 << 20
FATBIN_SECTIONS = (b".hip_fatbin",)


@dataclass(frozen=True)
class ElfHeader:
    machine: int
    flags: int
    osabi: int
    abiversion: int
    shoff: int
    shnum: int
    shstrndx: int


@dataclass(frozen=True)
class Section:
    name: bytes
    type: int
    offset: int
    size: int


def parse_header(head: bytes) -> ElfHeader | None:
    """The ELF header of a 64-bit little-endian file; None for anything else (AMDGPU code
    objects and the x86-64 libraries that embed them are all ELF64 little endian)."""
    if head[:4] != ELF_MAGIC or (head[4:6] != b"\x02\x01" and len(head) >= 6):
        return None
    if len(head) < EHDR_SIZE:
        raise MalformedInput(f"truncated ELF header ({len(head)} bytes)")
    (_t, machine, _v, _entry, _phoff, shoff, flags, _ehsize, _phentsize, _phnum, shentsize,
     shnum, shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", head, 16)
    if shoff and shentsize != SHDR_SIZE:
        raise MalformedInput(f"ELF section header size {shentsize}, expected {SHDR_SIZE}")
    return ElfHeader(machine, flags, head[7], head[8], shoff, shnum, shstrndx)


def code_object_target(hdr: ElfHeader) -> TargetId:
    """The processor and features an AMDGPU code object (e_machine 224) was built for."""
    proc = processor_from_mach(hdr.flags)
    if proc is None:
        raise MalformedInput(f"unknown EF_AMDGPU_MACH 0x{hdr.flags & 0xFF:03x}")
    feats: list[tuple[str, bool]] = []
    if hdr.abiversion == 1:  # code object V3: plain on bits
        if hdr.flags & 0x200:
            feats.append(("sramecc", True))
        if hdr.flags & 0x100:
            feats.append(("xnack", True))
    elif hdr.abiversion >= 2:  # V4+: 2-bit fields, 2 = off, 3 = on
        for name, shift in (("sramecc", 10), ("xnack", 8)):
            field = (hdr.flags >> shift) & 3
            if field in (2, 3):
                feats.append((name, field == 3))
    return TargetId(proc, tuple(sorted(feats)))


def read_sections(f: IO[bytes], hdr: ElfHeader, file_size: int) -> list[Section]:
    """All section headers with names, reading only the header table and .shstrtab."""
    if not hdr.shoff:
        return []
    shnum, shstrndx = hdr.shnum, hdr.shstrndx
    if hdr.shoff + SHDR_SIZE > file_size:
        raise MalformedInput(f"ELF section headers at {hdr.shoff} lie past the end")
    if shnum == 0 or shstrndx == SHN_XINDEX:  # extended numbering lives in section 0
        f.seek(hdr.shoff)
        s0 = f.read(SHDR_SIZE)
        if len(s0) != SHDR_SIZE:
            raise MalformedInput("truncated ELF section header 0")
        _n, _t, _fl, _a, _o, size0, link0, *_ = struct.unpack("<IIQQQQIIQQ", s0)
        shnum = shnum or size0
        shstrndx = link0 if shstrndx == SHN_XINDEX else shstrndx
    if not 0 < shnum <= MAX_SECTIONS:
        raise MalformedInput(f"ELF file claims {shnum} sections")
    if hdr.shoff + shnum * SHDR_SIZE > file_size:
        raise MalformedInput(f"ELF section header table ({shnum} entries) runs past the end")
    f.seek(hdr.shoff)
    table = f.read(shnum * SHDR_SIZE)
    if len(table) != shnum * SHDR_SIZE:
        raise MalformedInput("truncated ELF section header table")
    raw = [struct.unpack_from("<IIQQQQIIQQ", table, i * SHDR_SIZE) for i in range(shnum)]
    if shstrndx >= shnum:
        raise MalformedInput(f"ELF section name table index {shstrndx} out of range")
    _n, stype, _fl, _a, stroff, strsize, *_ = raw[shstrndx]
    if stype == SHT_NOBITS or strsize > MAX_SHSTRTAB or stroff + strsize > file_size:
        raise MalformedInput("ELF section name table is missing or out of bounds")
    f.seek(stroff)
    names = f.read(strsize)
    sections = []
    for name_off, stype, _fl, _a, off, size, *_ in raw:
        end = names.find(b"\0", name_off) if name_off < len(names) else -1
        name = names[name_off:end] if end >= 0 else b""
        sections.append(Section(name, stype, off, size))
    return sections


def fatbin_sections(sections: list[Section], file_size: int) -> list[Section]:
    """The sections that hold HIP fat binaries, checked to lie inside the file."""
    found = []
    for s in sections:
        if s.name in FATBIN_SECTIONS and s.type != SHT_NOBITS and s.size:
            if s.offset + s.size > file_size:
                raise MalformedInput(f"section {s.name.decode()} runs past the end of the file")
            found.append(s)
    return found
