"""The instruction-level check (verify/gpucode/isa.py) on real code objects: assembled here by
Debian's llvm-mc for gfx1030 (v_dot2c_f32_f16 and v_dot4c_i32_i8, which gfx1010 lacks and
gfx1012 has; v_fmac_legacy_f32, which gfx10.1 decodes as v_mac_legacy_f32), disassembled by
Debian's llvm-objdump. Bundles are wrapped around those real code objects in the layout
bundle.py cites. Hostile listings and code object containers: property-based."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagefactory.verify.gpucode import codeobjects
from imagefactory.verify.gpucode.audit import audit_path
from imagefactory.verify.gpucode.bundle import BUNDLE_MAGIC
from imagefactory.verify.gpucode.errors import MalformedInput
from imagefactory.verify.gpucode.isa import (
    ObjectFindings,
    compare_listings,
    find_objdump,
    kernel_table,
    loaded_isa,
    run_check,
    wanted,
)
from imagefactory.verify.gpucode.targets import parse_target_id
from tests.needs import missing

DOT = " v_dot2c_f32_f16 v0, v1, v2\n v_dot4c_i32_i8 v3, v1, v2\n"
PLAIN = " v_add_f32 v0, v1, v2\n v_mul_f32 v0, v1, v2\n"


def _llvm_mc() -> str:
    for name in ("llvm-mc-19", "llvm-mc"):
        if (p := shutil.which(name)) is not None:
            return p
    missing("llvm-mc (Debian's llvm-19) is not installed")


@pytest.fixture(scope="module")
def objdump() -> str:
    tool = find_objdump()
    if tool is None:
        missing("llvm-objdump (Debian's llvm-19) is not installed")
    return tool


def assemble(tmp: Path, name: str, body: str, mcpu: str = "gfx1030") -> Path:
    """A real code object with one kernel `k` (and its descriptor `k.kd`)."""
    src = tmp / f"{name}.s"
    src.write_text(f'.amdgcn_target "amdgcn-amd-amdhsa--{mcpu}"\n.text\n.globl k\n'
                   f".p2align 8\n.type k,@function\nk:\n{body} s_endpgm\n"
                   ".rodata\n.p2align 6\n.amdhsa_kernel k\n.amdhsa_next_free_vgpr 8\n"
                   ".amdhsa_next_free_sgpr 8\n.end_amdhsa_kernel\n")
    out = tmp / f"{name}.co"
    subprocess.run([_llvm_mc(), "-triple=amdgcn-amd-amdhsa", f"-mcpu={mcpu}", "-filetype=obj",
                    str(src), "-o", str(out)], check=True, capture_output=True)
    src.unlink()
    return out


def bundle(entries: list[tuple[str, bytes]]) -> bytes:
    """A plain offload bundle (clang's BinaryFileHandler layout) around real code objects."""
    ids = [("host-x86_64-unknown-linux-gnu-", b""), *entries]
    header = len(BUNDLE_MAGIC) + 8 + sum(24 + len(i) for i, _ in ids)
    out, body, off = [BUNDLE_MAGIC, struct.pack("<Q", len(ids))], b"", header
    for entry_id, data in ids:
        out.append(struct.pack("<QQQ", off if data else header, len(data), len(entry_id)))
        out.append(entry_id.encode())
        body += data
        off += len(data)
    return b"".join(out) + body


def ccob3(plain: bytes) -> bytes:
    payload = zstandard.ZstdCompressor().compress(plain)
    return b"CCOB" + struct.pack("<HHQQQ", 3, 1, 32 + len(payload), len(plain), 0) + payload


def audit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imagefactory", "audit", *args],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, **(env or {})})


def check(path: Path, chip: str, override: str | None = "10.3.0"):  # type: ignore[no-untyped-def]
    problems: list[str] = []
    cos = codeobjects.in_path(path, wanted(loaded_isa(chip, override)), problems)
    return run_check(cos, str(path), chip, override, problems)


def test_dot_instructions_flagged_on_gfx1010_not_gfx1012(tmp_path: Path, objdump: str) -> None:
    co = assemble(tmp_path, "dot", DOT + " v_fmac_legacy_f32 v0, v1, v2\n")
    r = check(co, "gfx1010")
    assert r.status == "fail"
    lib = next(iter(r.libraries.values()))
    assert dict(lib.undecodable) == {"v_dot2c_f32_f16": 1, "v_dot4c_i32_i8": 1}
    assert (lib.flagged, lib.symbols) == (1, 1)
    assert lib.different == {"v_fmac_legacy_f32 -> v_mac_legacy_f32": 1}
    assert "1 of 1 kernels use instructions gfx1010 lacks" in r.summary()
    assert "lds-misaligned-bug" in r.to_dict()["missing_workarounds"]
    r12 = check(co, "gfx1012")
    assert r12.status == "pass" and not next(iter(r12.libraries.values())).undecodable
    assert "all 1 kernels decode on gfx1012" in r12.summary()


def test_kernel_named_by_its_symbol_table_not_its_label(tmp_path: Path, objdump: str) -> None:
    """Tensile puts a local `NAME_preloaded` label on each kernel's first word, and the listing
    names the address by that label: the kernel is found by address in the symbol table."""
    co = assemble(tmp_path, "alias", "k_preloaded:\n" + DOT)
    listing = subprocess.run([objdump, "-d", "--mcpu=gfx1030", str(co)], capture_output=True,
                             check=True).stdout
    assert b"<k_preloaded>:" in listing and b"<k>:" not in listing
    r = check(co, "gfx1010")
    lib = next(iter(r.libraries.values()))
    assert (lib.flagged, lib.symbols) == (1, 1)
    assert lib.kernels_using() == {"v_dot2c_f32_f16": {"kernels": 1, "names": ["k"]},
                                   "v_dot4c_i32_i8": {"kernels": 1, "names": ["k"]}}
    text = "\n".join(r.lines())
    assert "    v_dot2c_f32_f16 in 1 kernel:\n      k\n" in text, text
    assert "v_dot2c_f32_f16 in 1 kernel," in r.failures()[0]


def test_identical_code_objects_are_counted_under_each_name(tmp_path: Path, objdump: str
                                                            ) -> None:
    dot = assemble(tmp_path, "dot", DOT).read_bytes()
    lib = tmp_path / "rocblas" / "library"
    lib.mkdir(parents=True)
    for name in ("a_gfx1030.co", "b_gfx1030.co"):
        (lib / name).write_bytes(dot)
    (tmp_path / "dot.co").unlink()
    r = check(tmp_path, "gfx1010")
    assert list(r.libraries) == ["rocblas"]
    rb = r.libraries["rocblas"]
    assert (rb.code_objects, rb.symbols, rb.flagged) == (2, 2, 2)
    assert rb.undecodable == {"v_dot2c_f32_f16": 2, "v_dot4c_i32_i8": 2}
    assert {e.split(":")[0] for e in rb.examples} == {str(lib / "a_gfx1030.co"),
                                                     str(lib / "b_gfx1030.co")}


def test_a_code_object_the_disassembler_refuses_is_incomplete_not_fail(tmp_path: Path,
                                                                        objdump: str) -> None:
    data = assemble(tmp_path, "plain", PLAIN).read_bytes()
    (tmp_path / "plain.co").write_bytes(data[:200])  # the ELF header, no sections
    r = check(tmp_path, "gfx1010")
    assert r.status == "incomplete" and not r.to_dict()["passed"], r.lines()
    assert "incomplete: 1 code object could not be disassembled" in r.summary()
    assert r.failures() and "llvm-objdump" in r.failures()[0]
    res = audit("--chip", "gfx1010", "--override", "10.3.0", str(tmp_path))
    assert res.returncode == 1, res.stdout + res.stderr


def test_clean_kernel_passes(tmp_path: Path, objdump: str) -> None:
    r = check(assemble(tmp_path, "plain", PLAIN), "gfx1010")
    assert r.status == "pass", r.lines()
    assert next(iter(r.libraries.values())).instructions >= 3


def test_native_profile_reads_the_chips_own_code(tmp_path: Path, objdump: str) -> None:
    assemble(tmp_path, "own", PLAIN, mcpu="gfx1010")
    assemble(tmp_path, "other", DOT)  # gfx1030: not loaded without the override
    r = check(tmp_path, "gfx1010", override=None)
    assert r.status == "pass" and r.loaded == "gfx1010"
    assert sum(lib.code_objects for lib in r.libraries.values()) == 1
    assert r.missing_workarounds == ()


def test_code_objects_inside_plain_and_compressed_bundles(tmp_path: Path, objdump: str) -> None:
    dot = assemble(tmp_path, "dot", DOT).read_bytes()
    own = assemble(tmp_path, "own", PLAIN, mcpu="gfx1010").read_bytes()
    plain = bundle([("hipv4-amdgcn-amd-amdhsa--gfx1010", own),
                    ("hipv4-amdgcn-amd-amdhsa--gfx1030", dot)])
    d = tmp_path / "lib"
    d.mkdir()
    (d / "plain.bundle").write_bytes(plain)
    (d / "ccob3.bundle").write_bytes(ccob3(plain))
    r = check(d, "gfx1010")
    assert r.status == "fail"
    assert {lib.name: lib.code_objects for lib in r.libraries.values()} == {
        "ccob3.bundle": 1, "plain.bundle": 1}
    assert all(lib.undecodable["v_dot2c_f32_f16"] == 1 for lib in r.libraries.values())


def test_skipped_without_objdump_never_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    co = tmp_path / "x.co"
    co.write_bytes(b"")
    monkeypatch.setenv("IMAGEFACTORY_LLVM_OBJDUMP", str(tmp_path / "absent"))
    r = run_check(iter(()), str(co), "gfx1010", "10.3.0")
    assert r.status == "skipped" and not r.to_dict()["passed"]
    res = audit("--chip", "gfx1010", "--override", "10.3.0", str(tmp_path),
                env={"IMAGEFACTORY_LLVM_OBJDUMP": str(tmp_path / "absent")})
    out = res.stdout + res.stderr
    assert res.returncode == 1 and "skipped" in out and "llvm-19" in out


def test_no_code_object_read_fails(tmp_path: Path, objdump: str) -> None:
    r = check(tmp_path, "gfx1010")
    assert r.status == "fail" and "no gfx1030 code object read" in r.summary()


def test_cli_chip_gfx1010_exits_1_gfx1012_exits_0(tmp_path: Path, objdump: str) -> None:
    assemble(tmp_path, "dot", DOT)
    res = audit(*["--chip", "gfx1010", "--override", "10.3.0",
                                    str(tmp_path)])
    assert res.returncode == 1, (res.stdout + res.stderr)
    out = res.stdout + res.stderr
    assert "v_dot2c_f32_f16" in out and "1 of 1 kernels" in out
    res = audit(*["--chip", "gfx1012", "--override", "10.3.0",
                                    "--json", str(tmp_path)])
    assert res.returncode == 0, (res.stdout + res.stderr)
    data = json.loads(res.stdout)["instructions"][0]
    assert data["status"] == "pass" and data["chip"] == "gfx1012"


@pytest.mark.parametrize("args", [["--chip", "gfx1030"], ["--override", "10.3.0"],
                                  ["--chip", "gfx1010", "--override", "ten"]])
def test_cli_usage_errors(tmp_path: Path, args: list[str]) -> None:
    res = audit(*[*args, str(tmp_path)])
    assert res.returncode == 2, (res.stdout + res.stderr)


# -- #25: a library given as a symlink, and an empty folder, under --isa ------------------

def test_symlinked_library_is_audited(tmp_path: Path, objdump: str) -> None:
    real = assemble(tmp_path, "dot", DOT)
    lib = tmp_path / "lib"
    lib.mkdir()
    target = lib / "libfoo.so.4"
    real.rename(target)
    (lib / "libfoo.so").symlink_to("libfoo.so.4")
    inv = audit_path(lib / "libfoo.so")
    assert inv.files_seen == 1 and inv.libraries
    inv = audit_path(lib)
    assert inv.files_seen == 1  # the link and its target are one file
    res = audit(*["--isa", "gfx1030", str(lib / "libfoo.so")])
    assert res.returncode == 0, (res.stdout + res.stderr)


def test_link_out_of_the_tree_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.co"
    outside.write_bytes(b"\x7fELF")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "link.co").symlink_to(outside)
    assert audit_path(tree).files_seen == 0


def test_isa_on_empty_folder_fails_in_one_line(tmp_path: Path) -> None:
    res = audit(*["--isa", "gfx1010", str(tmp_path)])
    assert res.returncode == 1
    assert "no GPU code object read" in (res.stdout + res.stderr)
    assert len([x for x in (res.stdout + res.stderr).splitlines() if "error" in x]) == 1


# -- hostile input ------------------------------------------------------------------------

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
insn = st.builds(lambda m, a: f"\t{m} v0, v1 // {a:012X}: 00000000\n".encode(),
                 st.sampled_from(["v_add_f32_e32", ".long", "v_dot2c_f32_f16_e32", "s_nop"]),
                 st.integers(0, 2**40))
line = st.one_of(insn, st.binary(max_size=120),
                 st.builds(lambda n: f"{n:016x} <k{n % 5}>:\n".encode(), st.integers(0, 2**40)))


@SETTINGS
@given(st.lists(line, max_size=60), st.lists(line, max_size=60))
def test_compare_listings_takes_any_lines(own: list[bytes], chip: list[bytes]) -> None:
    found = ObjectFindings("x", "lib", "gfx1030")
    compare_listings(own, chip, found, kernel_table(own))
    lines = b"".join(own).count(b"\n") + 1
    assert sum(found.undecodable.values()) + sum(found.different.values()) <= lines
    assert found.flagged <= {f"k{i}" for i in range(5)} | {"<none>"}


def _findings(found: ObjectFindings) -> tuple[object, ...]:
    return (found.instructions, found.symbols, found.flagged, found.differing,
            found.undecodable, found.different, found.users, found.examples, found.error)


@SETTINGS
@given(st.lists(line, max_size=60), st.lists(line, max_size=60), st.data())
def test_findings_do_not_depend_on_how_the_listings_are_read(
        own: list[bytes], chip: list[bytes], data: st.DataObject) -> None:
    """Pipe reads cut a listing anywhere: one chunk, its lines or random cuts give the
    same findings (the fast path and the line path agree)."""
    def cuts(lines: list[bytes]) -> list[bytes]:
        whole = b"".join(lines)
        at = sorted(data.draw(st.lists(st.integers(0, len(whole)), max_size=8)))
        return [whole[i:j] for i, j in zip([0, *at], [*at, len(whole)], strict=True)]

    results = []
    for a, b in ((own, chip), ([b"".join(own)], [b"".join(chip)]), (cuts(own), cuts(chip))):
        found = ObjectFindings("x", "lib", "gfx1030")
        compare_listings(iter(a), iter(b), found)
        results.append(_findings(found))
    assert results[0] == results[1] == results[2]


def test_a_listing_may_end_inside_the_others_last_instruction() -> None:
    own = [b"0000000000000000 <k>:\n",
           b"\tv_add_f32_e32 v0, v1, v2 // 000000000000: 06000501\n",
           b"\tv_fma_f32 v0, v1, v2, 0x3f800000 // 000000000004: D54B0000 03FE0501 3F800000\n"]
    chip = [*own[:2], b"\t.long 0xd54b0000 // 000000000004: D54B0000\n",
            b"\t.long 0x03fe0501 // 000000000008: 03FE0501\n",
            b"\t.long 0x3f800000 // 00000000000C: 3F800000\n"]
    found = ObjectFindings("x", "lib", "gfx1030")
    compare_listings(own, chip, found)
    assert found.error is None and found.undecodable == {"v_fma_f32": 1}
    found = ObjectFindings("x", "lib", "gfx1030")
    compare_listings(own, [*chip, b"\ts_nop 0 // 000000000040: BF800000\n"], found)
    assert found.error == "the two listings end at different places"
    # the other way round: three words of its own target are one instruction for the chip
    found = ObjectFindings("x", "lib", "gfx1030")
    compare_listings(chip, [*own[:2], b"\tv_long_op v0 // 000000000004: 0 0 0\n"], found)
    assert found.error is None


@SETTINGS
@given(st.lists(insn, max_size=40))
def test_identical_listings_have_no_findings(lines: list[bytes]) -> None:
    found = ObjectFindings("x", "lib", "gfx1030")
    compare_listings(lines, list(lines), found)
    assert not found.undecodable and not found.different and found.error is None


@SETTINGS
@given(st.binary(max_size=400), st.sampled_from([b"", b"\x7fELF\x02\x01", BUNDLE_MAGIC, b"CCOB"]))
def test_code_object_cutting_on_hostile_bytes(tmp_path: Path, tail: bytes, head: bytes) -> None:
    p = tmp_path / "h.so"
    p.write_bytes(head + tail)
    with p.open("rb") as f, contextlib.suppress(MalformedInput):
        list(codeobjects.from_file(str(p), f, p.stat().st_size,
                                   wanted(parse_target_id("gfx1030")), str(p)))


def test_compressed_bomb_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "bomb.bundle"
    p.write_bytes(b"CCOB" + struct.pack("<HHQQQ", 3, 1, 64, 1 << 40, 0) + b"\0" * 32)
    problems: list[str] = []
    assert list(codeobjects.in_path(p, wanted(parse_target_id("gfx1030")), problems)) == []
    assert os.path.exists(p)
