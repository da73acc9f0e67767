"""Dockerfile instructions as Docker's own parser reads them.

Which files a build can COPY decides what goes into the build context, so this must agree
with the engine, not with Python: `str.splitlines()` also breaks at \\v, \\f, \\x1c-\\x1e,
U+0085, U+2028 and U+2029, where Docker sees one line. The rules below follow BuildKit's
frontend/dockerfile/parser (parser.go, directives.go; moby/buildkit v0.12+):

- lines end at "\\n" only (a trailing "\\r" is dropped, and a UTF-8 BOM on the first line);
- parser directives (`# escape=X`, `# syntax=...`) only before anything else;
- a line whose first non-blank character is `#` is a comment, also inside a continuation;
- an escape character (default `\\`, or the directive's) followed only by spaces/tabs at
  the end of a line continues the instruction; blank continuation lines are skipped;
- the instruction is the first word, split on [\\t\\v\\f\\r ]; `--flags` follow it; then the
  arguments: a JSON array, or words split on the same whitespace (quotes are literal).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_WS = re.compile(r"[\t\v\f\r ]+")
# Go's unicode.IsSpace, which BuildKit's trimLeadingWhitespace uses.
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007" \
            "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


class DockerfileError(ValueError):
    """Something Docker would refuse or read differently than this tool could vouch for."""


@dataclass(frozen=True)
class Instruction:
    line: int  # 1-based, where it starts
    name: str  # lowercased: copy, add, run, ...
    flags: tuple[str, ...]
    args: tuple[str, ...]
    original: str


def _lines(text: str) -> list[str]:
    if text.startswith("\ufeff"):
        text = text[1:]
    out = text.split("\n")
    return [line[:-1] if line.endswith("\r") else line for line in out]


def directives(text: str) -> dict[str, str]:
    """The parser directives (`# syntax=...`, `# escape=...`) at the top, by lowercase name."""
    lines = _lines(text)
    seen: dict[str, str] = {}
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line)
        if not m:
            break
        key = m.group(1).lower()
        if key in seen:
            raise DockerfileError(f"line {i + 1}: parser directive '{key}' given twice")
        if key == "escape" and m.group(2) not in ("\\", "`"):
            raise DockerfileError(f"line {i + 1}: invalid escape character {m.group(2)!r}")
        seen[key] = m.group(2)
    return seen


def instructions(text: str) -> list[Instruction]:
    """Every instruction of a Dockerfile, joined across continuations as Docker joins them."""
    lines = _lines(text)
    found = directives(text)
    escape = found.get("escape", "\\")
    i = len(found)  # directives are the first lines, one each
    continuation = re.compile(re.escape(escape) + r"[ \t]*$")
    out: list[Instruction] = []
    while i < len(lines):
        start = i
        line = lines[i].lstrip(_GO_SPACE)
        i += 1
        if not line or line.startswith("#"):
            continue
        joined, ended = _trim(line, continuation)
        while not ended and i < len(lines):
            nxt = lines[i].lstrip(_GO_SPACE)
            i += 1
            if nxt.startswith("#") or not nxt:
                continue
            part, ended = _trim(nxt, continuation)
            joined += part
        if not joined.strip(" \t\v\f\r"):
            continue
        out.append(_node(joined, start + 1))
    return out


def _trim(line: str, continuation: re.Pattern[str]) -> tuple[str, bool]:
    m = continuation.search(line)
    if m:
        return line[:m.start()], False
    return line, True


def _node(line: str, number: int) -> Instruction:
    parts = _WS.split(line.strip("\t\v\f\r "), maxsplit=1)
    name = parts[0].lower()
    rest = parts[1] if len(parts) > 1 else ""
    flags: list[str] = []
    while rest.startswith("--"):
        word, _, rest = _split_first(rest)
        if word == "--":
            break
        flags.append(word)
    args: tuple[str, ...]
    stripped = rest.strip("\t\v\f\r ")
    if stripped.startswith("["):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(a, str) for a in parsed):
            args = tuple(parsed)
        else:
            args = tuple(w for w in _WS.split(stripped) if w)
    else:
        args = tuple(w for w in _WS.split(stripped) if w)
    return Instruction(number, name, tuple(flags), args, line)


def _split_first(text: str) -> tuple[str, str, str]:
    parts = _WS.split(text, maxsplit=1)
    return parts[0], " ", parts[1] if len(parts) > 1 else ""


# What the classic builder cannot parse (it fails with "Unknown flag: mount" and the like).
_BUILDKIT_FLAGS = {"run": ("mount", "network", "security"),
                   "copy": ("link", "chmod", "parents", "exclude"),
                   "add": ("link", "chmod", "parents", "exclude")}
_HEREDOC = re.compile(r"<<-?['\"]?[A-Za-z_][A-Za-z0-9_]*['\"]?")


def buildkit_syntax(text: str) -> tuple[int, str] | None:
    """(line, what) of the first thing only BuildKit builds, or None.

    A family whose Dockerfile uses cache or secret mounts cannot go through the classic
    builder: it would fail at that line after building everything above it. A Dockerfile
    this reader refuses is left to the engine to refuse (None).
    """
    try:
        if "syntax" in directives(text):
            return 1, "a `# syntax=` directive"
        found = instructions(text)
    except DockerfileError:
        return None
    for ins in found:
        for flag in ins.flags:
            name = flag[2:].split("=", 1)[0].lower()
            if name in _BUILDKIT_FLAGS.get(ins.name, ()):
                return ins.line, f"{ins.name.upper()} --{name}"
        if ins.name in _BUILDKIT_FLAGS and ins.args and _HEREDOC.fullmatch(ins.args[-1]):
            return ins.line, "a here-document"
    return None


@dataclass(frozen=True)
class Stage:
    """One `FROM [--platform=P] image [AS name]` of a Dockerfile."""

    line: int
    image: str
    name: str | None  # as written (Docker compares stage names case-insensitively)
    platform: str | None


def stages(text: str) -> list[Stage]:
    """Every FROM in order, read as Docker reads it (continuations, comments, lowercase
    `as`, `--platform`): the one reader of stages for build --target, bake and ghmatrix."""
    out = []
    for ins in instructions(text):
        if ins.name != "from":
            continue
        if not ins.args:
            raise DockerfileError(f"line {ins.line}: FROM needs an image")
        name = None
        if len(ins.args) == 3 and ins.args[1].lower() == "as":
            name = ins.args[2]
        elif len(ins.args) != 1:
            raise DockerfileError(f"line {ins.line}: FROM takes an image and optionally "
                                  "AS name")
        platform = next((f.split("=", 1)[1] for f in ins.flags
                         if f.lower().startswith("--platform=")), None)
        out.append(Stage(ins.line, ins.args[0], name, platform))
    return out


def stage_names(text: str) -> list[str]:
    """The named stages (`--target` values), in order."""
    return [s.name for s in stages(text) if s.name is not None]


def context_sources(text: str) -> list[tuple[int, str]]:
    """(line, source) of every COPY/ADD that reads the build context (not `--from`)."""
    out: list[tuple[int, str]] = []
    for ins in instructions(text):
        if ins.name not in ("copy", "add"):
            continue
        if any(f.lower().startswith("--from") for f in ins.flags):
            continue
        if len(ins.args) < 2:
            raise DockerfileError(f"line {ins.line}: {ins.name.upper()} needs a source and "
                                  "a destination")
        out.extend((ins.line, a) for a in ins.args[:-1])
    return out
