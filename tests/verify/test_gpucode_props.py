"""Property-based tests: the audit's parsers on hostile input (truncated and garbage ELF files,
bundles with absurd counts and sizes, corrupt compressed payloads). Whatever the bytes, the
parsers raise nothing but MalformedInput, the audit itself raises nothing, and memory stays
bounded. The byte layouts built here are the formats' headers (cited in bundle.py and elf.py)
filled with hostile values; real compiled code is tested in test_gpucode_image.py."""

from __future__ import annotations

import io
import struct
import tarfile
import tracemalloc
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagefactory.verify.gpucode import MalformedInput, audit_file, audit_tar
from imagefactory.verify.gpucode.bundle import BUNDLE_MAGIC, read_bundle, scan_bundles
from imagefactory.verify.gpucode.reader import ForwardReader

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
u64 = st.integers(0, 2**64 - 1)
small = st.integers(0, 4096)


def plain_bundle(entries: list[tuple[int, int, bytes]], count: int | None = None,
                 tail: bytes = b"") -> bytes:
    head = BUNDLE_MAGIC + struct.pack("<Q", len(entries) if count is None else count)
    for off, size, eid in entries:
        head += struct.pack("<QQQ", off, size, len(eid)) + eid
    return head + tail


def ccob(version: int, method: int, payload: bytes, total: int | None = None,
         usize: int = 0) -> bytes:
    hsize = {1: 20, 2: 24, 3: 32}.get(version, 24)
    total = hsize + len(payload) if total is None else total
    common = b"CCOB" + struct.pack("<HH", version, method)
    if version == 1:
        return common + struct.pack("<IQ", usize & 0xFFFFFFFF, 0) + payload
    if version == 3:
        return common + struct.pack("<QQQ", total & (2**64 - 1), usize, 0) + payload
    return common + struct.pack("<IIQ", total & 0xFFFFFFFF, usize & 0xFFFFFFFF, 0) + payload


def elf_with_section(name: bytes, data: bytes, *, sec_off: int | None = None,
                     sec_size: int | None = None, shnum: int | None = None,
                     shstrndx: int = 1, shoff_delta: int = 0, machine: int = 62) -> bytes:
    """An ELF64 LE file: header, section data, .shstrtab, then 3 section headers."""
    names = b"\0.shstrtab\0" + name + b"\0"
    data_off = 64
    str_off = data_off + len(data)
    shoff = str_off + len(names)
    hdr = bytearray(b"\x7fELF\x02\x01\x01" + bytes(9))
    hdr += struct.pack("<HHIQQQIHHHHHH", 3, machine, 1, 0, 0, shoff + shoff_delta, 0, 64, 56,
                       0, 64, 3 if shnum is None else shnum, shstrndx)
    shdrs = bytes(64)
    shdrs += struct.pack("<IIQQQQIIQQ", 1, 3, 0, 0, str_off, len(names), 0, 0, 1, 0)
    shdrs += struct.pack("<IIQQQQIIQQ", 11, 1, 2, 0,
                         data_off if sec_off is None else sec_off,
                         len(data) if sec_size is None else sec_size, 0, 0, 4096, 0)
    return bytes(hdr) + data + names + shdrs


def only_typed(data: bytes) -> list[object]:
    """Scan bytes as a bundle stream; anything but MalformedInput propagates and fails."""
    return list(scan_bundles(ForwardReader(io.BytesIO(data), 0, len(data), seekable=True,
                                           chunk=64)))


def audit_both(tmp_path: Path, data: bytes, name: str = "x.so") -> None:
    """The file path and the tar-stream path must both come back without raising."""
    f = tmp_path / name
    f.write_bytes(data)
    cf = audit_file(f)
    assert cf is None or all(isinstance(p, str) for p in cf.problems)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("usr/lib/" + name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    inv = audit_tar(buf)
    assert inv.files_seen == 1


@SETTINGS
@given(st.binary(max_size=2048), st.sampled_from([b"", b"\x7fELF", b"\x7fELF\x02\x01",
                                                    BUNDLE_MAGIC, b"CCOB"]))
def test_garbage_never_raises(tmp_path: Path, data: bytes, prefix: bytes) -> None:
    audit_both(tmp_path, prefix + data)
    audit_both(tmp_path, prefix + data, "k_gfx1010.co")


@SETTINGS
@given(count=u64, entries=st.lists(st.tuples(u64, u64, st.binary(max_size=40)), max_size=5),
       tail=st.binary(max_size=256))
def test_plain_bundles_with_absurd_fields(count: int, entries: list[tuple[int, int, bytes]],
                                          tail: bytes) -> None:
    for item in only_typed(plain_bundle(entries, count, tail)):
        assert not isinstance(item, Exception) or isinstance(item, MalformedInput)


@SETTINGS
@given(idlen=st.one_of(u64, st.just(32)), off=st.one_of(u64, small), size=st.one_of(u64, small))
def test_entry_fields_are_checked(idlen: int, off: int, size: int) -> None:
    eid = b"hipv4-amdgcn-amd-amdhsa--gfx1010"
    data = BUNDLE_MAGIC + struct.pack("<QQQQ", 1, off, size, idlen) + eid
    try:
        b = read_bundle(ForwardReader(io.BytesIO(data), 0, len(data)))
    except MalformedInput:
        return
    # accepted only when every field is consistent with the bytes there: an id that fits
    # (a shorter one is a prefix, such as a target-less `hipv4-amdgcn-amd-amdhsa-`, which
    # real bundles' empty host entries have) and code inside the file
    assert idlen <= len(eid) and off > 0 and off + size <= len(data)
    (entry,) = b.entries
    assert entry.entry_id == eid[:idlen].decode()
    if idlen == len(eid):
        assert str(entry.target) == "gfx1010"


@SETTINGS
@given(version=st.integers(0, 5), method=st.integers(0, 3), total=st.one_of(st.none(), u64),
       usize=u64, payload=st.binary(max_size=512), compress=st.booleans())
def test_compressed_bundles_with_absurd_fields(version: int, method: int, total: int | None,
                                               usize: int, payload: bytes,
                                               compress: bool) -> None:
    if compress:
        payload = zlib.compress(payload) if method == 0 else _zstd(payload)
    for item in only_typed(ccob(version, method, payload, total, usize)):
        assert not isinstance(item, Exception) or isinstance(item, MalformedInput)


@SETTINGS
@given(sec_off=st.one_of(st.none(), u64), sec_size=st.one_of(st.none(), u64),
       shnum=st.one_of(st.none(), st.integers(0, 0xFFFF)), shstrndx=st.integers(0, 0xFFFF),
       shoff_delta=st.integers(-200, 200), cut=st.integers(0, 600))
def test_elf_with_hostile_section_table(tmp_path: Path, sec_off: int | None,
                                        sec_size: int | None, shnum: int | None, shstrndx: int,
                                        shoff_delta: int, cut: int) -> None:
    eid = b"hipv4-amdgcn-amd-amdhsa--gfx1010"
    body = plain_bundle([(64, 8, eid)], tail=bytes(64) + b"x" * 8)
    data = elf_with_section(b".hip_fatbin", body, sec_off=sec_off, sec_size=sec_size,
                            shnum=shnum, shstrndx=shstrndx, shoff_delta=shoff_delta)
    audit_both(tmp_path, data[: max(0, len(data) - cut)])


def test_well_formed_synthetic_elf_is_read(tmp_path: Path) -> None:
    """The builder above makes what the hostile cases mutate: check it parses when intact."""
    body = plain_bundle([(200, 8, b"hipv4-amdgcn-amd-amdhsa--gfx1010"),
                         (208, 0, b"host-x86_64-unknown-linux-gnu-")], tail=bytes(58) + b"x" * 8)
    f = tmp_path / "lib.so"
    f.write_bytes(elf_with_section(b".hip_fatbin", body))
    cf = audit_file(f)
    assert cf is not None and cf.kind == "fatbin" and cf.targets == {"gfx1010": 1}
    assert cf.problems == ()


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


def _peak(fn) -> int:  # type: ignore[no-untyped-def]
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_memory_is_bounded_for_a_decompression_bomb(tmp_path: Path) -> None:
    """A CCOB bundle whose payload inflates to 2 GiB (a plain header then zeros), claiming
    2**63 bytes uncompressed: only the header is decompressed, and memory stays small."""
    import zstandard

    inner_head = plain_bundle([(4096, 2**31, b"hipv4-amdgcn-amd-amdhsa--gfx1010")])
    cobj = zstandard.ZstdCompressor(level=1).compressobj()
    parts = [cobj.compress(inner_head)]
    zeros = bytes(16 << 20)
    for _ in range(128):
        parts.append(cobj.compress(zeros))
    parts.append(cobj.flush())
    payload = b"".join(parts)
    data = ccob(3, 1, payload, usize=2**63)
    f = tmp_path / "bomb.co"
    f.write_bytes(data)

    peak = _peak(lambda: audit_file(f))
    cf = audit_file(f)
    assert cf is not None and cf.targets == {"gfx1010": 1}, cf
    assert peak < 16 << 20, peak


@pytest.mark.slow
def test_memory_is_bounded_for_a_huge_section(tmp_path: Path) -> None:
    """A 1 GiB sparse .hip_fatbin section of zeros: streamed in chunks, never held."""
    f = tmp_path / "huge.so"
    small_elf = elf_with_section(b".hip_fatbin", b"", sec_off=4096, sec_size=1 << 30)
    with f.open("wb") as out:
        out.write(small_elf)
        out.truncate(4096 + (1 << 30) + 4096)
    peak = _peak(lambda: audit_file(f))
    assert peak < 32 << 20, peak


@SETTINGS
@given(count=st.integers(1, 4096), idlen=st.integers(1, 512))
def test_header_limits_bound_memory(count: int, idlen: int) -> None:
    """The largest header the limits admit, claimed but truncated: typed error, small memory."""
    data = BUNDLE_MAGIC + struct.pack("<Q", count) + struct.pack("<QQQ", 4096, 1, idlen)
    with pytest.raises(MalformedInput):
        read_bundle(ForwardReader(io.BytesIO(data), 0, len(data)))


@settings(max_examples=500, deadline=None)
@given(pieces=st.lists(st.one_of(st.binary(max_size=40),
                                 st.sampled_from([BUNDLE_MAGIC, b"CCOB", b"CCO", b"__CLANG"])),
                       max_size=30),
       chunk=st.integers(1, 64), seekable=st.booleans())
def test_reader_finds_every_magic_whatever_the_chunking(pieces: list[bytes], chunk: int,
                                                        seekable: bool) -> None:
    """find() sees the same magics, at the same offsets, as a search of the whole buffer."""
    data = b"".join(pieces)
    magics = (BUNDLE_MAGIC, b"CCOB")
    expected = []
    i = 0
    while True:
        hits = [(j, m) for m in magics if (j := data.find(m, i)) >= 0]
        if not hits:
            break
        j, m = min(hits)
        expected.append((j, m))
        i = j + 1
    r = ForwardReader(io.BytesIO(data), 0, len(data), seekable=seekable, chunk=chunk)
    got = []
    while (m := r.find(magics)) is not None:
        got.append((r.pos, m))
        r.skip_to(r.pos + 1)
    assert got == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["source", "libraries", "name", "files", "path", "kind",
                                       "library", "size", "targets", "compressed", "problems",
                                       "x"]), children, max_size=6),
    max_leaves=30)


@SETTINGS
@given(data=json_values)
def test_inventory_from_hostile_json(data: object) -> None:
    """A result file edited by hand or by an attacker: a typed error, never a traceback."""
    from imagefactory.verify.gpucode import Inventory

    try:
        inv = Inventory.from_dict(data)  # type: ignore[arg-type]
    except MalformedInput:
        return
    inv.to_dict()
    inv.summary("gfx1010")
    inv.missing(["rocblas"], "gfx1010")
