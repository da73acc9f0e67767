"""One way to read an input file and one way to print untrusted text.

Every file the tool reads (variants.yaml, test results, publish records, sysfs) goes through
`read_text`: regular files only (a FIFO would block, /dev/zero would never end), a size
bound, UTF-8 decoding errors turned into one line naming the file. Every message that may
carry text from a file, an argument or an engine goes through `clean`: terminal control
characters escaped, credentials (URL userinfo, HTTP basic auth) redacted, one line.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import unicodedata
from pathlib import Path
from typing import Any

from .errors import ConfigError, ImagefactoryError

# Generous for every file the tool reads (the shipped variants.yaml is ~12 KiB, a full conv
# check result ~100 KiB), small enough that reading one is never a memory problem.
MAX_CONFIG_BYTES = 1 << 20
MAX_RESULT_BYTES = 16 << 20
MAX_SYSFS_BYTES = 4096


def read_bytes(path: Path, limit: int, *, error: type[ImagefactoryError] = ConfigError
               ) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them, else one-line error.

    The type is checked on the opened descriptor (no race with a swap after a stat), and
    O_NONBLOCK keeps opening a FIFO from blocking before it can be refused.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise _error(error, path, "no such file") from None
    except OSError as exc:
        raise _error(error, path, f"cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _error(error, path, f"not a regular file ({_kind(st.st_mode)})")
        if st.st_size > limit:
            raise _error(error, path, f"too large ({st.st_size} bytes; the limit is {limit})")
        chunks = []
        total = 0
        while True:  # the size can change after fstat (procfs/sysfs report 4096 or 0)
            chunk = os.read(fd, min(65536, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise _error(error, path, f"too large (more than {limit} bytes)")
        return b"".join(chunks)
    except OSError as exc:
        raise _error(error, path, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_text(path: Path, limit: int, *, error: type[ImagefactoryError] = ConfigError) -> str:
    data = read_bytes(path, limit, error=error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise _error(error, path, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                                  f"{exc.start})", line) from None


def _error(cls: type[ImagefactoryError], path: Path, message: str,
           line: int | None = None) -> ImagefactoryError:
    if issubclass(cls, ConfigError):
        return ConfigError(clean(str(path)), line, "", message)
    where = f"{path}:{line}" if line else str(path)
    return cls(f"{clean(where)}: {message}")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


# --- strict JSON ---------------------------------------------------------------------------

def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def json_loads(text: str) -> Any:
    """json.loads without NaN/Infinity (Python accepts them; JSON does not) and without
    duplicate keys: Python keeps the last of `"passed": false, "passed": true`, another
    reader the first, so a file that says both is refused rather than read one way."""
    return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)


class DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {escape_control(key)[:60]!r}")
        self.msg = str(self)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(key)
        out[key] = value
    return out


def finite_or_none(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def json_dumps(data: Any, **kwargs: Any) -> str:
    """json.dumps that fails on NaN/Infinity instead of writing invalid JSON."""
    return json.dumps(data, allow_nan=False, **kwargs)


# --- untrusted text in messages -------------------------------------------------------------

# Credentials in URLs. A password may hold anything but a line break (`/`, `@`, spaces
# included: people paste them unencoded), so the userinfo is what lies before the last `@`
# that is followed by a host, back to the URL's scheme (scheme://user:password@host,
# scheme://token@host) or, without one, to a `user:` (an engine address, a git remote);
# never past a line break, the previous such `@` or _MAX_SECRET characters (which keeps the
# scan linear: each character is looked at a bounded number of times).
_MAX_SECRET = 1024
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
# @host[:port], not followed by more of a name: never `repo@sha256:<hex>`.
_AT_HOST = re.compile(rf"@(?:\[[0-9A-Fa-f:.]+\]|{_LABEL}(?:\.{_LABEL})*)(?::[0-9]{{1,5}})?"
                      r"(?![A-Za-z0-9]|:[A-Za-z0-9])")
# A scheme, the userinfo after it: user:anything, or a token. (A path made from a URL keeps
# one slash: https:/u:pw@h is caught too.)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/{1,3}")
_SCHEME_USERINFO = re.compile(r"[^\s:/]*:.*|[^\s/]+", re.DOTALL)
# user: with a password that does not start with a space ("note: see bob@host" is none).
_BARE_USER = re.compile(r"(?<![\w.~%+-])[\w.~%+-]{1,256}:(?![\s/])")
# Authorization: Basic <b64>, "auth": "<b64>" (docker config), Bearer tokens.
_BASIC = re.compile(r"(?i)\b(basic|bearer)\s+[A-Za-z0-9+/=._~-]{8,}")
# "auth": "...", password=..., HF_TOKEN=..., --token x: a field named like a secret.
_AUTH_FIELD = re.compile(r'(?i)("?(?<![\w-])(?:auth|identitytoken|registrytoken|api[_-]?key|'
                         r'[\w-]{0,64}?(?:password|passwd|token|secret))"?\s*[:=]\s*)'
                         r'(?:"(?:[^"\\\r\n]|\\.){0,1024}"|"?[^"\s,}]+)')


def redact(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """Remove credentials from text: `secrets` (values known to be secret), URL userinfo
    with or without a scheme, basic/bearer auth, fields named like secrets.

    The one redaction of the tool: every writer of text that may carry text from a file,
    an argument or an engine (the terminal, logs, crash reports, results, labels) goes
    through it, usually by `clean`."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _redact_userinfo(text)
    text = _BASIC.sub(lambda m: f"{m.group(1)} ***", text)
    return _AUTH_FIELD.sub(lambda m: m.group(1) + ('"***"' if m.group(0).endswith('"')
                                                   else "***"), text)


def _redact_userinfo(text: str) -> str:
    out: list[str] = []
    done = 0  # text[:done] is in out
    floor = 0  # no userinfo reaches back before this (the previous @host)
    cut: int | None = None  # where the last redacted userinfo began
    for at in _AT_HOST.finditer(text):
        here = at.start()
        start = max(floor, here - _MAX_SECRET, text.rfind("\n", floor, here) + 1,
                    text.rfind("\r", floor, here) + 1)
        if cut is not None and start == floor and here - cut <= _MAX_SECRET \
                and "://" not in text[floor:here]:
            done = here  # user:a@b c@host: the password runs on to the last @host
        else:
            cut = _userinfo_start(text, start, here)
            if cut is not None:
                out += [text[done:cut], "***"]
                done = here
        floor = here + 1
    return "".join(out) + text[done:] if out else text


def _userinfo_start(text: str, start: int, end: int) -> int | None:
    """Where the userinfo that ends at text[end] ("@") begins, if text[start:end] has one."""
    last_url = start
    for scheme in _SCHEME.finditer(text, start, end):
        last_url = scheme.end()
        rest = text[scheme.end():end]
        if "://" not in rest and _SCHEME_USERINFO.fullmatch(rest):
            return scheme.end()
    user = _BARE_USER.search(text, last_url, end)
    return user.end() if user else None


def escape_control(text: str) -> str:
    """Terminal control and invisible line-breaking characters as visible escapes."""
    out = []
    for ch in text:
        if ch == "\t" or not is_control(ch):
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


def is_control(ch: str) -> bool:
    """C0/C1 controls, line/paragraph separators, format characters (bidi overrides...)."""
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")


def first_control(text: str) -> str | None:
    for ch in text:
        if is_control(ch):
            return ch
    return None


def clean(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """A message safe to print: credentials redacted, control characters escaped, one line."""
    return escape_control(redact(text, secrets))


# --- writing ---------------------------------------------------------------------------------

def write_atomic(path: Path, data: str | bytes, *,
                 error: type[ImagefactoryError] = ImagefactoryError, mode: int = 0o600
                 ) -> Path:
    """Write `path` whole or not at all (a reader never sees half a file), with `mode`
    whatever the umask (0600 unless the file is meant to be shared: reports, rendered
    files); a symlink at `path` is replaced, never written through; a folder that cannot be
    made or written (read-only, /proc, a file in the way) is one line, not a traceback."""
    import tempfile

    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode & 0o755)  # never group/world-writable
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise error(clean(f"cannot write {path}: {exc.strerror or exc}")) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def refuse_symlinks(path: Path, root: Path, *, error: type[ImagefactoryError]) -> None:
    """One line (`error`) when `path`, or a folder between `root` and it, is a symlink: a
    write there would land wherever the link points."""
    here = path
    while True:
        if here.is_symlink():
            raise error(clean(f"refusing to write {path}: {here} is a symlink (remove it, "
                              "then run again)"))
        if here == root or here.parent == here:
            return
        here = here.parent
