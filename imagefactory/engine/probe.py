"""A minimal read-only Docker engine client over a unix socket: ping and image inspect.

The no-change build only needs to ask the engine about a few images. docker-py (with
requests and urllib3) costs far more to import than that whole conversation, and even
http.client pulls in email and ssl, so this speaks the two GET requests it needs as plain
HTTP/1.0 (the engine answers, then closes: no chunking, no keep-alive). Everything else
(builds, pulls, tags, ssh:// and tcp:// engines) stays with docker-py.
"""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import quote

UNIX = "unix://"
_MAX_REPLY = 64 << 20  # an image inspect is a few KiB; anything near this is not an engine


class ProbeError(OSError):
    """The engine did not answer, or answered with an error status."""


def supports(address: str) -> bool:
    """Whether `address` is an engine this probe can talk to (a local unix socket)."""
    return address.startswith(UNIX)


def _parse(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    """An HTTP/1.x reply -> (status, headers with lower-case names, body)."""
    head, sep, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if not sep or len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProbeError(f"not an HTTP reply: {reply[:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    if length is not None and length.isdigit() and len(body) < int(length):
        raise ProbeError(f"reply cut short: {len(body)} of {length} bytes")
    return int(parts[1]), headers, body


class EngineProbe:
    """Ping and image inspection for the engine at a `unix://` address.

    Each request uses its own connection, so one probe is safe to share between threads.
    """

    def __init__(self, address: str, timeout: float = 120) -> None:
        if not supports(address):
            raise ValueError(f"not a unix socket address: {address}")
        self.address = address
        self.path = address[len(UNIX):]
        self.timeout = timeout
        self.api_version: str | None = None  # the engine's, from its ping reply
        self._pinged = False

    def _get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
                sock.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
                chunks: list[bytes] = []
                size = 0
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > _MAX_REPLY:
                        raise ProbeError(f"reply to GET {path} is over {_MAX_REPLY} bytes")
        except ProbeError:
            raise
        except OSError as exc:
            raise ProbeError(str(exc) or type(exc).__name__) from exc
        return _parse(b"".join(chunks))

    def ping(self) -> None:
        """GET /_ping; raises ProbeError unless the engine says OK."""
        status, headers, body = self._get("/_ping")
        if status != 200:
            raise ProbeError(f"/_ping answered {status}: {body[:200]!r}")
        self.api_version = headers.get("api-version")
        self._pinged = True

    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        """The engine's JSON for image `ref` (what docker-py's api.inspect_image returns), or
        None when the engine has no such image."""
        if not self._pinged:
            self.ping()
        # The same quoting and API version docker-py uses (its "auto" version is the
        # engine's own), so both see the same document.
        prefix = f"/v{self.api_version}" if self.api_version else ""
        status, _, body = self._get(f"{prefix}/images/{quote(ref, safe='/:')}/json")
        if status == 404:
            return None
        if status != 200:
            raise ProbeError(f"inspect {ref}: {status} {_message(body)}")
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProbeError(f"inspect {ref}: not an image document: {body[:200]!r}")
        return data


def _message(body: bytes) -> str:
    """The engine's error message (its JSON `message`), else the raw body."""
    try:
        return str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip()[:200]
