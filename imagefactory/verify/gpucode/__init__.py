"""GPU code audit: which gfx targets the device code in a directory or an image is built for.

Pure Python, no ROCm: reads ELF `.hip_fatbin` sections, clang offload bundles (plain and
compressed), standalone AMDGPU code objects, Tensile library files and MIOpen kernel databases.
"""

from .audit import audit_file, audit_path, audit_tar, library_of
from .check import DEFAULT_NEEDED, CodeCheck, check_inventory, isa_from_override, runtime_isas
from .errors import AuditUsageError, GpuCodeError, MalformedInput
from .model import KINDS, REQUIRED_KINDS, CodeFile, Inventory, Library
from .reader import chunk_stream
from .targets import TargetId, parse_entry_id, parse_target_id, runs_on
from .text import format_inventory

__all__ = [
    "DEFAULT_NEEDED",
    "KINDS",
    "REQUIRED_KINDS",
    "AuditUsageError",
    "CodeCheck",
    "CodeFile",
    "GpuCodeError",
    "Inventory",
    "Library",
    "MalformedInput",
    "TargetId",
    "audit_file",
    "audit_path",
    "audit_tar",
    "check_inventory",
    "chunk_stream",
    "format_inventory",
    "isa_from_override",
    "library_of",
    "parse_entry_id",
    "parse_target_id",
    "runs_on",
    "runtime_isas",
]
