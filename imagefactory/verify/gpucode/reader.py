"""A forward-only reader over a file or a tar member stream, with bounded memory.

Everything the audit reads goes through here: it holds at most one chunk plus the bytes a
caller asked for (callers bound those), finds magic strings chunk by chunk, and skips by
seeking where the source can seek (a file on disk) or by reading and dropping (a tar stream)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import IO, Any

from .errors import MalformedInput

CHUNK = 4 << 20


class ForwardReader:
    """Reads `raw` from absolute offset `start` (where `raw` is positioned) up to `end`."""

    def __init__(self, raw: IO[bytes], start: int = 0, end: int | None = None, *,
                 seekable: bool = False, chunk: int = CHUNK, prefix: bytes = b"") -> None:
        """`prefix`: bytes already taken from `raw` that precede `start` (a sniffed head)."""
        self._raw = raw
        self._buf = prefix
        self._off = 0  # index of the next unread byte in _buf
        self._base = start - len(prefix)  # absolute offset of _buf[0]
        self._end = end
        self._eof = False
        self._seekable = seekable
        self._chunk = chunk
        self.bytes_read = 0  # what came from the source, for speed figures

    @property
    def pos(self) -> int:
        return self._base + self._off

    @property
    def end(self) -> int | None:
        return self._end

    def _want(self) -> int:
        """How many bytes the next source read may take."""
        if self._end is None:
            return self._chunk
        return max(0, min(self._chunk, self._end - (self._base + len(self._buf))))

    def _fill(self, n: int) -> None:
        """Buffer at least n unread bytes, fewer only at the end of the source."""
        while len(self._buf) - self._off < n and not self._eof:
            want = self._want()
            if want == 0:
                self._eof = True
                break
            data = self._raw.read(want)
            if not data:
                self._eof = True
                break
            self.bytes_read += len(data)
            if self._off == len(self._buf):  # all consumed: swap, no copy
                self._base += self._off
                self._buf, self._off = data, 0
                continue
            if self._off:  # drop what was consumed before growing the buffer
                self._base += self._off
                self._buf = self._buf[self._off:]
                self._off = 0
            self._buf += data

    def read(self, n: int) -> bytes:
        """Up to n bytes (fewer only at the end)."""
        self._fill(n)
        out = self._buf[self._off:self._off + n]
        self._off += len(out)
        return out

    def read_exact(self, n: int, what: str) -> bytes:
        out = self.read(n)
        if len(out) != n:
            raise MalformedInput(f"truncated {what}: wanted {n} bytes at offset {self.pos}, "
                                 f"got {len(out)}")
        return out

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return self._buf[self._off:self._off + n]

    def skip_to(self, target: int) -> None:
        """Advance to absolute offset `target` (clamped to the end); never goes back."""
        if self._end is not None:
            target = min(target, self._end)
        if target <= self.pos:
            return
        if target <= self._base + len(self._buf):
            self._off = target - self._base
            return
        # Past the buffer: drop it and move the source.
        gap = target - (self._base + len(self._buf))
        self._buf, self._off, self._base = b"", 0, target
        if self._seekable:
            self._raw.seek(gap, 1)
            return
        while gap > 0:
            data = self._raw.read(min(gap, self._chunk))
            if not data:
                self._eof = True
                return
            self.bytes_read += len(data)
            gap -= len(data)

    def find(self, magics: tuple[bytes, ...]) -> bytes | None:
        """Move to the next occurrence of any of `magics`; None (at the end) when there is none."""
        keep = max(len(m) for m in magics) - 1
        while True:
            view = self._buf
            hits = [(i, m) for m in magics if (i := view.find(m, self._off)) >= 0]
            if hits:
                i, m = min(hits)
                self._off = i
                return m
            if self._eof:
                self._off = len(self._buf)
                return None
            # Next chunk. A magic split across the chunk edge starts in the last `keep` bytes;
            # only then are tail and chunk joined (a copy): the usual case swaps buffers.
            tail = self._buf[max(self._off, len(self._buf) - keep):]
            want = self._want()
            data = self._raw.read(want) if want else b""
            if not data:
                self._eof = True
                continue
            self.bytes_read += len(data)
            edge = tail + data[:keep]
            if len(data) < keep or any(0 <= edge.find(m) < len(tail) for m in magics):
                self._base += len(self._buf) - len(tail)
                self._buf, self._off = tail + data, 0
            else:
                self._base += len(self._buf)
                self._buf, self._off = data, 0


class _ChunkStream(io.RawIOBase):
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not len(self._left):
            try:
                self._left = memoryview(next(self._it))
            except StopIteration:
                return 0
        n = min(len(b), len(self._left))
        b[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def chunk_stream(chunks: Iterable[bytes]) -> IO[bytes]:
    """A readable stream over an iterable of byte chunks, such as the generator an engine's
    export call returns, for audit_tar."""
    return io.BufferedReader(_ChunkStream(chunks), 1 << 20)
