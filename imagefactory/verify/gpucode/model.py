"""The audit's typed, JSON-serialisable results: files -> libraries -> inventory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import MalformedInput
from .targets import TargetId, as_target, parse_target_id, runs_on

# What a file is, for the audit.
FATBIN = "fatbin"  # a host ELF (library or program) with a .hip_fatbin section
BUNDLE = "bundle"  # a file that is an offload bundle, plain or compressed
CODE_OBJECT = "code-object"  # a standalone AMDGPU ELF (.co, .hsaco)
TENSILE = "tensile"  # a file of a Tensile library directory (rocBLAS, hipBLASLt)
KDB = "miopen-kdb"  # an MIOpen kernel database (precompiled kernels per arch)
HOST = "host"  # a known ROCm library that carries no device code (listed, no targets)
KINDS = (FATBIN, BUNDLE, CODE_OBJECT, TENSILE, KDB, HOST)
# Kinds whose absence for an ISA means a run-time failure; a missing MIOpen kernel database
# only means MIOpen compiles its kernels at run time.
REQUIRED_KINDS = (FATBIN, BUNDLE, CODE_OBJECT, TENSILE)


@dataclass(frozen=True)
class CodeFile:
    """One file that carries GPU code (or names the arch it is for)."""

    path: str
    kind: str
    library: str
    size: int
    # target ID as found (gfx1010, gfx90a:xnack-) -> code objects for it (1 per Tensile/kdb file)
    targets: dict[str, int] = field(default_factory=dict)
    compressed: tuple[str, ...] = ()  # e.g. ("zstd:v3",) when bundles were compressed
    problems: tuple[str, ...] = ()

    def covers(self, isa: TargetId) -> bool:
        return any(runs_on(parse_target_id(t), isa) for t in self.targets)


@dataclass(frozen=True)
class Library:
    """The files of one library (rocblas: librocblas.so plus its Tensile directory)."""

    name: str
    files: tuple[CodeFile, ...]

    @property
    def kinds(self) -> tuple[str, ...]:
        found = {f.kind for f in self.files if f.targets}
        return tuple(k for k in KINDS if k in found)

    @property
    def targets(self) -> dict[str, int]:
        """Target ID -> code objects (Tensile and kdb files count one each)."""
        out: dict[str, int] = {}
        for f in self.files:
            for t, n in f.targets.items():
                out[t] = out.get(t, 0) + n
        return dict(sorted(out.items()))

    def files_for(self, isa: str | TargetId, kind: str) -> int:
        dev = as_target(isa)
        return sum(1 for f in self.files if f.kind == kind and f.covers(dev))

    def missing_kinds(self, isa: str | TargetId) -> tuple[str, ...]:
        """The kinds of device code this library has for some ISA but not for `isa`."""
        dev = as_target(isa)
        return tuple(k for k in self.kinds if k in REQUIRED_KINDS
                     and not any(f.kind == k and f.covers(dev) for f in self.files))

    def carries(self, isa: str | TargetId) -> bool:
        """Code for `isa` in every kind of device code the library ships (a generic target
        counts for its members); False for a library with no device code at all."""
        return bool(set(self.kinds) & set(REQUIRED_KINDS)) and not self.missing_kinds(isa)


@dataclass(frozen=True)
class Inventory:
    source: str  # the directory or image audited
    libraries: tuple[Library, ...]
    problems: tuple[str, ...] = ()  # "path: what is wrong", one per unreadable file
    files_seen: int = 0
    bytes_read: int = 0

    def library(self, name: str) -> Library | None:
        key = normalise_name(name)
        for lib in self.libraries:
            if lib.name == key:
                return lib
        return None

    def carries(self, library: str, isa: str | TargetId) -> bool:
        """Does `library` carry code that runs on `isa`? False when it is not there at all."""
        lib = self.library(library)
        return lib is not None and lib.carries(isa)

    def missing(self, libraries: list[str] | tuple[str, ...], isa: str | TargetId) -> list[str]:
        """One line per needed library that lacks code for `isa` (or is absent)."""
        dev = as_target(isa)
        lines = []
        for name in libraries:
            lib = self.library(name)
            if lib is None:
                lines.append(f"{name}: not found")
            elif not lib.carries(dev):
                kinds = ", ".join(lib.missing_kinds(dev)) or "device code"
                have = ", ".join(sorted({_proc(t) for t in lib.targets})) or "none"
                lines.append(f"{name}: no {dev} code ({kinds}; it has {have})")
        return lines

    def totals(self) -> dict[str, dict[str, int]]:
        """Per target: libraries carrying it, code objects, Tensile files, kernel databases."""
        out: dict[str, dict[str, int]] = {}
        for lib in self.libraries:
            seen: set[str] = set()
            for f in lib.files:
                for t, n in f.targets.items():
                    row = out.setdefault(t, {"libraries": 0, "code_objects": 0,
                                             "tensile_files": 0, "kdb_files": 0})
                    if t not in seen:
                        row["libraries"] += 1
                        seen.add(t)
                    if f.kind == TENSILE:
                        row["tensile_files"] += 1
                    elif f.kind == KDB:
                        row["kdb_files"] += 1
                    else:
                        row["code_objects"] += n
        return dict(sorted(out.items()))

    def notes(self, isa: str | TargetId) -> list[str]:
        dev = as_target(isa)
        notes = []
        mi = self.library("miopen")
        if mi is not None and not mi.files_for(dev, KDB):
            notes.append(f"MIOpen has no kernel database for {dev}: it compiles its kernels "
                         "at run time (slow first use; needs the HIP run-time compiler)")
        return notes

    def summary(self, isa: str | TargetId) -> str:
        """`gfx1010 code: miopen compiles at run time, rocblas yes (52 Tensile files), torch yes`"""
        dev = as_target(isa)
        parts = []
        for lib in self.libraries:
            if not set(lib.kinds) & set(REQUIRED_KINDS) and lib.name != "miopen":
                continue
            if lib.name == "miopen":  # kernels: a database for the arch, else compiled at run time
                k = lib.files_for(dev, KDB)
                parts.append(f"miopen yes ({k} kernel database{'s' if k != 1 else ''})" if k
                             else "miopen compiles at run time")
                continue
            word = "yes" if lib.carries(dev) else "NO"
            n = lib.files_for(dev, TENSILE)
            files = f"{n} Tensile file{'s' if n != 1 else ''}"
            parts.append(f"{lib.name} {word}" + (f" ({files})" if n else ""))
        return f"{dev} code: " + (", ".join(parts) if parts else "no GPU libraries found")

    def brief(self, max_problems: int = 20) -> dict[str, Any]:
        """A compact JSON form for result files: per library its kinds, targets with code
        object and Tensile/kdb file counts, no file list (hipBLASLt alone has ~1500 files)."""
        libs = []
        for lib in self.libraries:
            targets: dict[str, dict[str, int]] = {}
            for f in lib.files:
                for t, n in f.targets.items():
                    row = targets.setdefault(t, {"code_objects": 0, "tensile_files": 0,
                                                 "kdb_files": 0})
                    key = {TENSILE: "tensile_files", KDB: "kdb_files"}.get(f.kind)
                    if key:
                        row[key] += 1
                    else:
                        row["code_objects"] += n
            libs.append({"name": lib.name, "kinds": list(lib.kinds), "files": len(lib.files),
                         "targets": dict(sorted(targets.items()))})
        return {"source": self.source, "libraries": libs, "totals": self.totals(),
                "files_seen": self.files_seen, "problems": list(self.problems[:max_problems]),
                "problems_total": len(self.problems)}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["totals"] = self.totals()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Inventory:
        """The inverse of to_dict (result JSON written by an earlier run)."""
        try:
            libs = tuple(
                Library(str(lib["name"]), tuple(
                    CodeFile(str(f["path"]), str(f["kind"]), str(f["library"]), int(f["size"]),
                             {str(k): int(v) for k, v in f["targets"].items()},
                             tuple(f.get("compressed", ())), tuple(f.get("problems", ())))
                    for f in lib["files"]))
                for lib in d["libraries"])
            for lib in libs:
                for f in lib.files:
                    if f.kind not in KINDS:
                        raise ValueError(f"unknown kind {f.kind!r} of {f.path}")
                    for t in f.targets:
                        parse_target_id(t)  # MalformedInput for a target that is none
            return cls(str(d["source"]), libs, tuple(str(p) for p in d.get("problems", ())),
                       int(d.get("files_seen", 0)), int(d.get("bytes_read", 0)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedInput(f"not a GPU code inventory: {exc!r}") from None


def _proc(target: str) -> str:
    return target.split(":", 1)[0]


def normalise_name(name: str) -> str:
    """`librocblas.so.4.4` -> `rocblas`; `libMIOpen.so.1` -> `miopen`; `rocBLAS` -> `rocblas`."""
    n = name.lower()
    if ".so" in n:
        n = n[: n.index(".so")]
    if n.startswith("lib") and len(n) > 3:
        n = n[3:]
    return n
