"""Clang offload bundles, plain (`__CLANG_OFFLOAD_BUNDLE__`) and compressed (`CCOB`).

Formats read from llvm/llvm-project clang/lib/Driver/OffloadBundler.cpp at
000390203c87508e7d1bbf2002bb9ce819cef1b8:
- plain (BinaryFileHandler): the 24-byte magic, a u64 entry count, then per entry u64 offset
  (from the bundle start), u64 size, u64 ID length and the ID; all little endian.
- compressed (RawCompressedBundleHeader, packed, little endian): u32 magic `CCOB`, u16 version,
  u16 method (llvm::compression::Format: 0 zlib, 1 zstd; llvm/include/llvm/Support/
  Compression.h), then version 1: u32 uncompressed size, u64 hash (20 bytes, no total size:
  LLVM finds the next bundle by searching for the next `CCOB`); version 2: u32 total size
  (header included), u32 uncompressed size, u64 hash (24 bytes); version 3: u64 total size,
  u64 uncompressed size, u64 hash (32 bytes). The payload decompresses to a plain bundle, so
  its entry IDs are only found by decompressing: only the plain header's bytes are
  decompressed, streaming, never the code objects behind it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Protocol, cast

from .errors import MalformedInput
from .reader import ForwardReader
from .targets import TargetId, parse_entry_id

BUNDLE_MAGIC = b"__CLANG_OFFLOAD_BUNDLE__"
CCOB_MAGIC = b"CCOB"
MAX_ENTRIES = 4096  # one entry per target plus the host; thousands is already absurd
MAX_ID_LEN = 512
_HEADER_SIZES = {1: 20, 2: 24, 3: 32}
_METHODS = {0: "zlib", 1: "zstd"}


@dataclass(frozen=True)
class BundleEntry:
    entry_id: str
    target: TargetId | None  # None: the host entry or a non-AMDGPU one
    size: int
    offset: int = 0  # from the start of its (decompressed) plain bundle


@dataclass(frozen=True)
class Bundle:
    offset: int  # where the bundle (or its CCOB wrapper) starts in the file
    entries: tuple[BundleEntry, ...]
    compressed: str | None = None  # "zstd:v3", "zlib:v2", ...

    @property
    def code_objects(self) -> tuple[BundleEntry, ...]:
        return tuple(e for e in self.entries if e.target is not None and e.size > 0)


class _Source(Protocol):
    def read_exact(self, n: int, what: str) -> bytes: ...


def read_plain_header(src: _Source, limit: int | None) -> tuple[list[BundleEntry], int]:
    """Parse a plain bundle header (magic included) -> (entries, bundle extent in bytes).

    `limit` is how many bytes the bundle may span, where known."""
    if src.read_exact(len(BUNDLE_MAGIC), "bundle magic") != BUNDLE_MAGIC:
        raise MalformedInput("no __CLANG_OFFLOAD_BUNDLE__ magic")
    (count,) = struct.unpack("<Q", src.read_exact(8, "bundle entry count"))
    if not 0 < count <= MAX_ENTRIES:
        raise MalformedInput(f"bundle claims {count} entries (expected 1..{MAX_ENTRIES})")
    header_len = len(BUNDLE_MAGIC) + 8
    entries: list[BundleEntry] = []
    extent = 0
    for i in range(count):
        off, size, idlen = struct.unpack("<QQQ", src.read_exact(24, f"bundle entry {i}"))
        if not 0 < idlen <= MAX_ID_LEN:
            raise MalformedInput(f"bundle entry {i} has an ID of {idlen} bytes")
        raw = src.read_exact(idlen, f"bundle entry {i} ID")
        header_len += 24 + idlen
        try:
            entry_id = raw.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedInput(f"bundle entry {i} ID is not ASCII") from None
        _kind, _triple, target = parse_entry_id(entry_id)
        if off == 0:  # LLVM's reader rejects this too (BinaryFileHandler::ReadHeader)
            raise MalformedInput(f"bundle entry {entry_id} starts at offset 0")
        if limit is not None and off + size > limit:
            raise MalformedInput(f"bundle entry {entry_id} ends at {off + size}, "
                                 f"past the {limit} bytes available")
        extent = max(extent, off + size)
        entries.append(BundleEntry(entry_id, target, size, off))
    return entries, max(extent, header_len)


class _Decompressed:
    """The first bytes of a compressed payload, decompressed on demand, bounded."""

    def __init__(self, reader: ForwardReader, method: str, length: int | None) -> None:
        self._reader = reader
        self._left = length  # compressed bytes that belong to this bundle, where known
        self._out = b""
        self._zlib = zlib.decompressobj() if method == "zlib" else None
        self._zstd = None
        if method == "zstd":
            try:
                import zstandard
            except ImportError:  # pragma: no cover - a declared dependency
                raise MalformedInput("zstd-compressed bundle: the zstandard package is "
                                     "not installed") from None
            self._zstd = zstandard.ZstdDecompressor().stream_reader(
                cast(IO[bytes], self), read_size=64 << 10, read_across_frames=False, closefd=False)

    def read(self, n: int) -> bytes:  # the zstandard stream reader pulls from here
        if self._left is not None:
            n = min(n, self._left)
        data = self._reader.read(n) if n > 0 else b""
        if self._left is not None:
            self._left -= len(data)
        return data

    def read_exact(self, n: int, what: str) -> bytes:
        try:
            while len(self._out) < n:
                want = n - len(self._out)
                if self._zstd is not None:
                    more = self._zstd.read(want)
                    progressed = bool(more)
                else:
                    z = self._zlib
                    assert z is not None
                    data = b"" if z.eof else (z.unconsumed_tail or self.read(64 << 10))
                    more = z.decompress(data, want) if data else b""
                    progressed = bool(data)
                if not progressed:
                    raise MalformedInput(f"compressed bundle ends inside the {what}")
                self._out += more
        except MalformedInput:
            raise
        except Exception as exc:  # zlib.error, zstandard.ZstdError: a corrupt payload
            raise MalformedInput(f"compressed bundle does not decompress: {exc}") from None
        out, self._out = self._out[:n], self._out[n:]
        return out


def read_bundle(reader: ForwardReader) -> Bundle:
    """Parse the bundle at the reader's position and leave the reader past it (plain bundles,
    compressed version 2 and 3) or past what was decompressed (compressed version 1)."""
    start = reader.pos
    limit = None if reader.end is None else reader.end - start
    magic = reader.peek(len(BUNDLE_MAGIC))
    if magic == BUNDLE_MAGIC:
        entries, extent = read_plain_header(reader, limit)
        reader.skip_to(start + extent)
        return Bundle(start, tuple(entries))
    if magic[:4] != CCOB_MAGIC:
        raise MalformedInput("no offload bundle magic")
    _m, version, method = struct.unpack("<4sHH", reader.read_exact(8, "CCOB header"))
    if version not in _HEADER_SIZES:
        raise MalformedInput(f"compressed bundle version {version} is not 1, 2 or 3")
    if method not in _METHODS:
        raise MalformedInput(f"compressed bundle method {method} is neither zlib nor zstd")
    rest = reader.read_exact(_HEADER_SIZES[version] - 8, f"CCOB v{version} header")
    total: int | None
    if version == 1:
        total = None
        (usize, _hash) = struct.unpack("<IQ", rest)
    elif version == 2:
        total, usize, _hash = struct.unpack("<IIQ", rest)
    else:
        total, usize, _hash = struct.unpack("<QQQ", rest)
    if total is not None:
        if total <= _HEADER_SIZES[version]:
            raise MalformedInput(f"compressed bundle total size {total} is not past its header")
        if limit is not None and total > limit:
            raise MalformedInput(f"compressed bundle claims {total} bytes, "
                                 f"{limit} are available")
    payload = None if total is None else total - _HEADER_SIZES[version]
    src = _Decompressed(reader, _METHODS[method], payload)
    entries, extent = read_plain_header(src, usize)
    if total is not None:
        reader.skip_to(start + total)
    return Bundle(start, tuple(entries), f"{_METHODS[method]}:v{version}")


def scan_bundles(reader: ForwardReader) -> Iterator[Bundle | MalformedInput]:
    """Every bundle from the reader's position to its end.

    A magic that does not start a well-formed bundle is yielded as MalformedInput when it
    claimed to be one (a plain magic, or a CCOB header with a known version and method) and
    skipped silently otherwise: "CCOB" occurs by chance in compressed data."""
    while (magic := reader.find((BUNDLE_MAGIC, CCOB_MAGIC))) is not None:
        at = reader.pos
        head = reader.peek(8)
        claimed = magic == BUNDLE_MAGIC or (
            len(head) == 8 and struct.unpack("<H", head[4:6])[0] in _HEADER_SIZES
            and struct.unpack("<H", head[6:8])[0] in _METHODS)
        try:
            yield read_bundle(reader)
        except MalformedInput as exc:
            if claimed:
                yield MalformedInput(f"at offset {at}: {exc}")
            reader.skip_to(at + 1)  # no-op when the parse already read past it
