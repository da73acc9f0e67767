"""The host id of a bundle, and scrubbing what could name a person out of free text.

The host id is a salted hash: the salt is 32 random bytes made once and kept in the user's
state folder (`$XDG_STATE_HOME/imagefactory/host-salt`, else `~/.local/state/...`), mode
0600. The id carries nothing about the machine, so it tells nobody which machine it is; it
only lets the report count one host's repeated runs once. Deleting the salt makes a new host.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import os
import re
import secrets
import socket
from pathlib import Path

from ..errors import JobError
from ..safety import clean, read_text

SALT_FILE = "host-salt"
_SALT = re.compile(r"[0-9a-f]{64}")
_MAC = re.compile(r"(?i)\b[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b")


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                            ".local", "state")
    return Path(base) / "imagefactory"


def salt(folder: Path | None = None) -> str:
    """This host's salt, made on first use (0600, never replaced once written)."""
    folder = folder or state_dir()
    path = folder / SALT_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                     0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise JobError(clean(f"cannot make {path}: {exc.strerror or exc}")) from None
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    value = read_text(path, 256, error=JobError).strip()
    if not _SALT.fullmatch(value):
        raise JobError(clean(f"{path}: not a host salt (64 hex digits); delete it to make a "
                             "new one (this host then counts as a new host)"))
    return value


def host_id(folder: Path | None = None) -> str:
    return hashlib.sha256(b"imagefactory host id v1\0" + salt(folder).encode()).hexdigest()[:32]


def personal_words(proc: Path = Path("/proc")) -> list[str]:
    """What names this machine or its user: host names, user names, the home folder."""
    words = {socket.gethostname(), os.environ.get("HOSTNAME", ""),
             os.environ.get("USER", ""), os.environ.get("LOGNAME", ""),
             os.environ.get("SUDO_USER", ""), os.environ.get("HOME", ""),
             os.path.expanduser("~")}
    with contextlib.suppress(KeyError, OSError):
        words.add(getpass.getuser())
    with contextlib.suppress(Exception):
        words.add(read_text(proc / "sys" / "kernel" / "hostname", 256).strip())
    words |= {w.split(".")[0] for w in list(words) if "." in w and not w.startswith("/")}
    # Short words would scrub ordinary text ("a", "cpu"); "/" and "root" are nobody's.
    return sorted((w for w in words if len(w) >= 3 and w not in ("/", "root")),
                  key=len, reverse=True)


def scrubber(words: list[str]) -> re.Pattern[str] | None:
    if not words:
        return None
    return re.compile("|".join(rf"(?<![A-Za-z0-9_-]){re.escape(w)}(?![A-Za-z0-9_-])"
                               for w in words))


def scrub(text: str, pattern: re.Pattern[str] | None) -> str:
    """Free text with personal words and MAC addresses replaced."""
    text = _MAC.sub("<mac>", text)
    return pattern.sub("<redacted>", text) if pattern is not None else text
