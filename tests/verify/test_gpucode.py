"""Unit tests of the GPU code audit's logic: target IDs, which code runs on which ISA, the
forward reader, result objects. The parsers meet real compiled code in
test_gpucode_image.py and hostile bytes in test_gpucode_props.py."""

from __future__ import annotations

import io
import json
import struct

import pytest

from imagefactory.verify.gpucode import (
    CodeFile,
    Inventory,
    Library,
    MalformedInput,
    audit_path,
    audit_tar,
    chunk_stream,
    library_of,
    parse_entry_id,
    parse_target_id,
    runs_on,
)
from imagefactory.verify.gpucode.elf import code_object_target, parse_header
from imagefactory.verify.gpucode.reader import ForwardReader
from imagefactory.verify.gpucode.targets import (
    GENERIC_MEMBERS,
    MACH_PROCESSORS,
    processors_in_name,
)


def t(s: str):
    return parse_target_id(s)


@pytest.mark.parametrize(("entry", "kind", "target"), [
    ("hipv4-amdgcn-amd-amdhsa--gfx1010", "hipv4", "gfx1010"),
    ("hipv4-amdgcn-amd-amdhsa--gfx90a:xnack-", "hipv4", "gfx90a:xnack-"),
    ("hipv4-amdgcn-amd-amdhsa--gfx90a:xnack+:sramecc-", "hipv4", "gfx90a:sramecc-:xnack+"),
    ("hipv4-amdgcn-amd-amdhsa--gfx10-1-generic", "hipv4", "gfx10-1-generic"),
    ("hip-amdgcn-amd-amdhsa-gfx906", "hip", "gfx906"),  # pre-v4 IDs had no environment
    ("host-x86_64-unknown-linux-gnu-", "host", None),
    ("host-x86_64-unknown-linux", "host", None),
])
def test_entry_ids(entry: str, kind: str, target: str | None) -> None:
    k, _triple, tid = parse_entry_id(entry)
    assert k == kind
    assert (str(tid) if tid else None) == target


@pytest.mark.parametrize("bad", ["", "gfx", "hipv4-amdgcn-amd-amdhsa--sm_80x:", "x" * 600,
                                 "weird-amdgcn-amd-amdhsa--gfx1010", "hipv4-amdgcn\x00",
                                 "hipv4-amdgcn-amd-amdhsa--gfx1010:xnack"])
def test_bad_entry_ids_are_typed_errors(bad: str) -> None:
    with pytest.raises(MalformedInput):
        parse_entry_id(bad)


def test_gfx1030_code_does_not_run_on_gfx1010() -> None:
    assert not runs_on(t("gfx1030"), t("gfx1010"))
    assert not runs_on(t("gfx1010"), t("gfx1030"))
    assert runs_on(t("gfx1010"), t("gfx1010"))


def test_generic_targets_cover_their_members_only() -> None:
    for member in ("gfx1010", "gfx1011", "gfx1012", "gfx1013"):
        assert runs_on(t("gfx10-1-generic"), t(member))
    assert not runs_on(t("gfx10-1-generic"), t("gfx1030"))
    assert runs_on(t("gfx10-3-generic"), t("gfx1030"))
    assert not runs_on(t("gfx10-3-generic"), t("gfx1010"))
    # every generic name is a processor name the mach table knows
    assert set(GENERIC_MEMBERS) <= set(MACH_PROCESSORS.values())


def test_features_must_match_when_the_device_states_them() -> None:
    assert runs_on(t("gfx90a:xnack-"), t("gfx90a"))  # device mode unknown: either
    assert runs_on(t("gfx90a:xnack-"), t("gfx90a:xnack-"))
    assert not runs_on(t("gfx90a:xnack-"), t("gfx90a:xnack+"))
    assert runs_on(t("gfx90a"), t("gfx90a:xnack+"))  # "any" code runs in either mode


def test_mach_table_spot_values() -> None:
    # llvm/include/llvm/BinaryFormat/ELF.h at 008d0233ac9b38e92ee81a9d09c815d61fda1240
    assert MACH_PROCESSORS[0x033] == "gfx1010"
    assert MACH_PROCESSORS[0x035] == "gfx1012"
    assert MACH_PROCESSORS[0x036] == "gfx1030"
    assert MACH_PROCESSORS[0x052] == "gfx10-1-generic"
    assert len(set(MACH_PROCESSORS.values())) == len(MACH_PROCESSORS)


def test_code_object_features_from_e_flags() -> None:
    head = bytearray(64)
    head[:8] = b"\x7fELF\x02\x01\x01\x40"
    head[8] = 2  # code object V4
    struct.pack_into("<HHIQQQIHHHHHH", head, 16, 3, 224, 1, 0, 0, 0, 0x033 | 0x200, 64, 56,
                     0, 64, 0, 0)
    hdr = parse_header(bytes(head))
    assert hdr is not None and str(code_object_target(hdr)) == "gfx1010:xnack-"


def test_names() -> None:
    assert processors_in_name("TensileLibrary_Type_HH_Contraction_gfx1010.co") == ["gfx1010"]
    assert processors_in_name("Kernels.so-000-gfx90a.hsaco") == ["gfx90a"]
    assert processors_in_name("gfx1030_40.kdb") == ["gfx1030"]
    assert processors_in_name("x_gfx10-1-generic.co") == ["gfx10-1-generic"]
    assert processors_in_name("libfoo.so") == []
    assert library_of("/usr/lib/x86_64-linux-gnu/rocblas/4.4.1/library/A_gfx1010.co",
                      "tensile") == "rocblas"
    assert library_of("/usr/lib/x86_64-linux-gnu/hipblaslt/library/x_gfx1100.co",
                      "tensile") == "hipblaslt"
    assert library_of("/usr/lib/x86_64-linux-gnu/librocblas.so.4.4", "fatbin") == "rocblas"
    assert library_of("/opt/venv/lib/python3.12/site-packages/torch/lib/libtorch_hip.so",
                      "fatbin") == "torch"
    assert library_of("/usr/share/miopen/db/gfx1030_40.kdb", "miopen-kdb") == "miopen"


@pytest.mark.parametrize("chunk", [1, 3, 7, 24, 1 << 20])
def test_reader_finds_magics_across_chunk_edges(chunk: int) -> None:
    data = b"xx" + b"CCOB" + b"y" * 30 + b"__CLANG_OFFLOAD_BUNDLE__" + b"z" * 5
    r = ForwardReader(io.BytesIO(data), chunk=chunk)
    assert r.find((b"__CLANG_OFFLOAD_BUNDLE__", b"CCOB")) == b"CCOB" and r.pos == 2
    r.skip_to(3)
    assert r.find((b"__CLANG_OFFLOAD_BUNDLE__", b"CCOB")) == b"__CLANG_OFFLOAD_BUNDLE__"
    assert r.pos == 36
    assert r.read(24) == b"__CLANG_OFFLOAD_BUNDLE__"
    assert r.find((b"__CLANG_OFFLOAD_BUNDLE__", b"CCOB")) is None
    assert r.pos == len(data)


def test_reader_respects_end_and_skips_without_seeking() -> None:
    r2 = ForwardReader(chunk_stream([b"0123", b"456789"]), 0, 8, chunk=3)
    r2.skip_to(5)
    assert r2.read(10) == b"567"
    raw = io.BytesIO(b"0123456789")
    raw.seek(2)
    r = ForwardReader(raw, 2, 6, chunk=2)
    assert r.read(10) == b"2345"


def _inv() -> Inventory:
    rocblas = Library("rocblas", (
        CodeFile("/l/librocblas.so.4", "fatbin", "rocblas", 10, {"gfx1010": 3, "gfx1030": 3}),
        CodeFile("/l/rocblas/library/A_gfx1010.co", "tensile", "rocblas", 1, {"gfx1010": 1}),
        CodeFile("/l/rocblas/library/A_gfx1030.co", "tensile", "rocblas", 1, {"gfx1030": 1}),
    ))
    blaslt = Library("hipblaslt", (
        CodeFile("/l/libhipblaslt.so.1", "fatbin", "hipblaslt", 10, {"gfx10-1-generic": 1}),
        CodeFile("/l/hipblaslt/library/B_gfx1100.co", "tensile", "hipblaslt", 1,
                 {"gfx1100": 1}),
    ))
    miopen = Library("miopen", (
        CodeFile("/l/libMIOpen.so.1", "fatbin", "miopen", 10, {"gfx1030": 1}),
        CodeFile("/d/gfx1030_40.kdb", "miopen-kdb", "miopen", 10, {"gfx1030": 1}),
    ))
    return Inventory("/l", (blaslt, miopen, rocblas))


def test_inventory_questions() -> None:
    inv = _inv()
    assert inv.carries("rocblas", "gfx1010")
    assert inv.carries("librocblas.so.4", "gfx1010")
    assert inv.carries("rocBLAS", "gfx1030")
    assert not inv.carries("rocblas", "gfx1012")
    # the generic fatbin covers gfx1012, its Tensile files do not: both kinds are needed
    assert not inv.carries("hipblaslt", "gfx1012")
    assert inv.library("hipblaslt").missing_kinds("gfx1012") == ("tensile",)  # type: ignore[union-attr]
    assert not inv.carries("torch", "gfx1010")
    assert inv.missing(["rocblas", "hipblaslt", "torch"], "gfx1010") == [
        "hipblaslt: no gfx1010 code (tensile; it has gfx10-1-generic, gfx1100)",
        "torch: not found",
    ]
    assert inv.notes("gfx1010") and "compiles its kernels at run time" in inv.notes("gfx1010")[0]
    assert inv.notes("gfx1030") == []
    assert inv.summary("gfx1010") == (
        "gfx1010 code: hipblaslt NO, miopen compiles at run time, "
        "rocblas yes (1 Tensile file)")
    totals = inv.totals()
    assert totals["gfx1010"] == {"libraries": 1, "code_objects": 3, "tensile_files": 1,
                                 "kdb_files": 0}
    assert totals["gfx1030"]["libraries"] == 2


def test_inventory_json_round_trip() -> None:
    inv = _inv()
    text = json.dumps(inv.to_dict())
    back = Inventory.from_dict(json.loads(text))
    assert back == inv
    with pytest.raises(MalformedInput):
        Inventory.from_dict({"source": "x", "libraries": [{"name": "a"}]})
    bad = json.loads(text)
    bad["libraries"][0]["files"][0]["targets"] = {"sm_80": 1}
    with pytest.raises(MalformedInput):
        Inventory.from_dict(bad)
    bad["libraries"][0]["files"][0]["targets"] = {"gfx1010": 1}
    bad["libraries"][0]["files"][0]["kind"] = "elf"
    with pytest.raises(MalformedInput):
        Inventory.from_dict(bad)


def test_audit_path_errors(tmp_path) -> None:
    from imagefactory.verify.gpucode import AuditUsageError

    with pytest.raises(AuditUsageError):
        audit_path(tmp_path / "nope")
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "gfx1030_40.kdb").write_bytes(b"SQLite format 3\0")
    inv = audit_path(tmp_path)
    assert [lib.name for lib in inv.libraries] == ["miopen"]
    assert inv.files_seen == 2



def test_audit_tar_rejects_a_broken_stream() -> None:
    from imagefactory.verify.gpucode import GpuCodeError

    with pytest.raises(GpuCodeError):
        audit_tar(io.BytesIO(b"this is not a tar stream" * 100), "junk")


def test_override_and_runtime_isas() -> None:
    from imagefactory.verify.gpucode import AuditUsageError, isa_from_override, runtime_isas

    assert isa_from_override("10.3.0") == "gfx1030"
    assert isa_from_override("9.0.10") == "gfx90a"
    assert isa_from_override(" 10.1.0 ") == "gfx1010"
    for bad in ("10.3", "gfx1030", "", "10.3.0.1"):
        with pytest.raises(AuditUsageError):
            isa_from_override(bad)
    assert runtime_isas(("gfx1010", "gfx1012"), {}) == ("gfx1010", "gfx1012")
    assert runtime_isas(("gfx1010",), {"HSA_OVERRIDE_GFX_VERSION": "10.3.0"}) == ("gfx1030",)
    with pytest.raises(MalformedInput):
        runtime_isas(("gfx10x0",), {})


def test_check_inventory() -> None:
    from imagefactory.verify.gpucode import check_inventory

    inv = _inv()
    ok = check_inventory(inv, ("gfx1030",), ("rocblas", "miopen"))
    assert ok.passed and ok.failures == ()
    assert ok.summary == (inv.summary("gfx1030"),)
    bad = check_inventory(inv, ("gfx1010",), ("rocblas", "hipblaslt", "miopen", "torch"))
    assert not bad.passed
    assert bad.failures == (
        "hipblaslt: no gfx1010 code (tensile; it has gfx10-1-generic, gfx1100)",
        "torch: not found in /l",
    )  # MIOpen without gfx1010 code only compiles at run time: a note, not a failure
    assert bad.notes and "MIOpen" in bad.notes[0]


def test_format_inventory() -> None:
    from imagefactory.verify.gpucode import format_inventory

    text = format_inventory(_inv(), ("gfx1010",))
    assert "rocblas" in text and "gfx1010 (3 code objects, 1 Tensile file)" in text
    assert "gfx1010 code: hipblaslt NO" in text
    assert "note: MIOpen has no kernel database for gfx1010" in text


def test_brief_and_check_json() -> None:
    from imagefactory.verify.gpucode import check_inventory

    inv = _inv()
    brief = json.loads(json.dumps(inv.brief()))
    rocblas = next(lib for lib in brief["libraries"] if lib["name"] == "rocblas")
    assert rocblas == {"name": "rocblas", "kinds": ["fatbin", "tensile"], "files": 3,
                       "targets": {"gfx1010": {"code_objects": 3, "tensile_files": 1,
                                               "kdb_files": 0},
                                   "gfx1030": {"code_objects": 3, "tensile_files": 1,
                                               "kdb_files": 0}}}
    chk = check_inventory(inv, ("gfx1010",), ("rocblas", "hipblaslt"))
    d = json.loads(json.dumps(chk.to_dict()))
    assert d["passed"] is False and d["failures"][0].startswith("hipblaslt: no gfx1010")
    assert chk.detail == d["failures"][0]


def test_report_shows_the_gpu_code_section(tmp_path) -> None:
    from imagefactory.report.writer import load, markdown, to_json
    from imagefactory.verify.gpucode import check_inventory
    from imagefactory.verify.results import TestResult

    inv = _inv()
    chk = check_inventory(inv, ("gfx1010",), ("rocblas", "hipblaslt", "miopen"))
    base = dict(image_id="sha256:" + "a" * 64, checks=(), conv=(), host=None, profile=None)
    TestResult(variant="debian-rocm", passed=False, **base,  # type: ignore[arg-type]
               gpu_code={"inventory": inv.brief(), "check": chk.to_dict()}).save(tmp_path)
    # a hand-edited result: wrong shapes are skipped, table syntax is escaped
    TestResult(variant="odd", passed=False, **base,  # type: ignore[arg-type]
               gpu_code={"check": {"summary": ["a | b"], "failures": "not a list"}}
               ).save(tmp_path)
    TestResult(variant="cpu", passed=True, **base).save(tmp_path)  # type: ignore[arg-type]
    compat = load([tmp_path])
    md = markdown(compat, png=None, generated="now")
    assert "## GPU code" in md
    assert ("- **debian-rocm**: gfx1010 code: hipblaslt NO, miopen compiles at run time, "
            "rocblas yes (1 Tensile file); hipblaslt: no gfx1010 code") in md
    assert "- **odd**: a \\| b" in md
    assert "- **cpu**" not in md.split("## GPU code")[1].split("## Matrix")[0]
    rows = {r["variant"]: r for r in to_json(compat, "now")["rows"]}
    assert rows["debian-rocm"]["gpu_code"][0].startswith("gfx1010 code:")
    assert rows["cpu"]["gpu_code"] == []


def _cli(*args: str):  # type: ignore[no-untyped-def]
    import subprocess
    import sys
    from pathlib import Path

    return subprocess.run([sys.executable, "-m", "imagefactory", "audit", *args],
                          capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])


def test_audit_command_usage_errors(tmp_path) -> None:
    proc = _cli(str(tmp_path / "nope"))
    assert proc.returncode == 2 and "no such file or directory" in proc.stderr
    proc = _cli(str(tmp_path), "--isa", "gfx10x0")
    assert proc.returncode == 2 and "--isa gfx10x0: not a GPU target" in proc.stderr
    proc = _cli(str(tmp_path), "--need", "torch")
    assert proc.returncode == 2 and "--need takes effect with --isa" in proc.stderr
    assert "Traceback" not in proc.stderr
    (tmp_path / "gfx1030_40.kdb").write_bytes(b"SQLite format 3\0")
    proc = _cli(str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [lib["name"] for lib in data["inventory"]["libraries"]] == ["miopen"]
    assert data["inventory"]["totals"]["gfx1030"]["kdb_files"] == 1
