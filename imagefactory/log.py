"""Logging set-up and the last-resort handler for unexpected exceptions.

Library modules log through `logging.getLogger(__name__)`; nothing is shown below WARNING
unless `--debug` or IMAGEFACTORY_DEBUG=1 is given, which shows DEBUG records (engine calls
among them) and tracebacks. A bug never ends in a bare traceback: one line names the
error and the file the full traceback was written to.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from .paths import Paths

ENV_DEBUG = "IMAGEFACTORY_DEBUG"
_FORMAT = "imagefactory: %(levelname)s: %(name)s: %(message)s"


def debug_requested(argv: list[str] | None = None) -> bool:
    """--debug among the global options, or IMAGEFACTORY_DEBUG set to a true value."""
    if os.environ.get(ENV_DEBUG, "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    args = sys.argv[1:] if argv is None else argv
    return "--debug" in args[: args.index("--")] if "--" in args else "--debug" in args


def setup(debug: bool) -> None:
    """Root handler on stderr: DEBUG with --debug, else WARNING and above."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_imagefactory", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler._imagefactory = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    level = logging.DEBUG if debug else logging.WARNING
    logging.getLogger("imagefactory").setLevel(level)
    if not debug:
        root.setLevel(logging.WARNING)
    else:
        # docker-py's and urllib3's own debug lines show each HTTP call to the engine.
        for name in ("docker", "urllib3"):
            logging.getLogger(name).setLevel(logging.DEBUG)
        root.setLevel(logging.DEBUG)


def write_crash_report(exc: BaseException, argv: list[str] | None = None,
                       commands: Iterable[str] = ()) -> Path | None:
    """The full traceback (and the command line's option names) in a file of its own, mode
    0600; its path, or None when no file could be written.

    Argument values are left out (`--build-arg HF_TOKEN=...`, an engine URL with a password,
    a variant name are all values: only `--option` names are kept), the traceback goes
    through safety.redact, and text that is not UTF-8 (argv is bytes on POSIX) is escaped,
    so the handler of last resort cannot fail on what it reports."""
    from .safety import redact

    directory = Paths().crashes  # per user: no project need be found first
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S.%f")
    path = directory / f"crash-{stamp}-{os.getpid()}.txt"
    args = sys.argv[1:] if argv is None else argv
    body = f"imagefactory {' '.join(option_names(args, commands))}\n\n{redact(text)}"
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_CLOEXEC", 0), 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # whatever the umask
            f.write(body.encode("utf-8", errors="backslashreplace"))
    except OSError:
        return None
    return path


def option_names(args: list[str], commands: Iterable[str] = ()) -> list[str]:
    """argv with every value replaced: `--opt=value` -> `--opt=...`, a value -> `...`; the
    command's name is kept (the first of `commands`, the tool's command names, that appears;
    the CLI passes them, so this module needs nothing above it)."""
    names = set(commands)
    out = []
    for arg in args:
        if arg in names:
            out.append(arg)
            names = set()
        elif arg.startswith("-") and arg != "-":
            name, eq, _ = arg.partition("=")
            name = name if name.isascii() and name.isprintable() else "--?"
            out.append(name + ("=..." if eq else ""))
        else:
            out.append("...")
    return out


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
