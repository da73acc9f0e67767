"""YAML loading that remembers where each value came from, with bounded cost.

PyYAML's safe_load loses line numbers and silently keeps the last of two equal keys; the
matrix needs both (errors name the line, and a duplicated variant name is an error). It also
expands aliases without limit (a 400-byte "billion laughs" document takes gigabytes) and
composes recursively (libyaml's composer segfaults on a 100,000-deep `[[[...`). So this
module builds values from the parser's event stream itself: nesting depth, the number of
values after alias expansion, recursive aliases and tags are checked as events arrive, and
every problem is a ConfigError naming the file and line.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import yaml

from ..errors import ConfigError
from ..safety import escape_control

# libyaml's parser when PyYAML has it: the same events and marks, several times faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Path_ = tuple[str | int, ...]

MAX_DEPTH = 32  # variants.yaml needs 6
MAX_VALUES = 100_000  # after alias expansion; the shipped matrix has ~400
_SCALAR_TAGS = {
    "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null",
}
_MERGE = "tag:yaml.org,2002:merge"
_RESOLVER = yaml.resolver.Resolver()
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


@dataclass(frozen=True)
class Located:
    """A parsed YAML document plus the 1-based line of every value, keyed by its path."""

    data: Any
    lines: dict[Path_, int]
    file: str

    def line(self, path: Path_) -> int | None:
        # Fall back to the nearest enclosing value: a missing key is reported at its parent.
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


@dataclass
class _Open:
    """A mapping or sequence being filled."""

    value: dict[str, Any] | list[Any]
    path: Path_
    anchor: str | None
    size: int = 1
    key: str | None = None  # mapping: the key waiting for its value
    key_line: int = 0
    have_key: bool = False


# What YAML's reader refuses (yaml.reader.Reader.NON_PRINTABLE), plus lone surrogates (not
# UTF-8 encodable). Found before parsing, so the error names its line: the reader's own error
# carries only a character offset.
_NON_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD"
                            "\U00010000-\U0010FFFF]")


def load(text: str, file: str) -> Located:
    bad = _NON_PRINTABLE.search(text)
    if bad is not None:
        raise ConfigError(file, text.count("\n", 0, bad.start()) + 1, "",
                          f"character U+{ord(bad.group()):04X} (a control character or lone "
                          "surrogate) is not allowed in YAML; write it escaped in a "
                          "double-quoted string")
    try:
        return _Builder(file).run(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if mark and exc.context_mark and mark.line >= len(text.split("\n")) - 1:
            mark = exc.context_mark  # "unexpected end of file": point at what was left open
        line = mark.line + 1 if mark else None
        raise ConfigError(file, line, "", f"YAML syntax error: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(file, None, "", f"YAML error: {_one_line(str(exc))}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[Path_, int] = {}
        self.anchors: dict[str, tuple[Any, int]] = {}  # name -> (value, expanded size)
        self.open_anchors: set[str] = set()
        self.stack: list[_Open] = []
        self.values = 0
        self.root: Any = None
        self.docs = 0

    def fail(self, line: int, path: Path_, message: str) -> ConfigError:
        return ConfigError(self.file, line, escape_control(dotted(path)[:200]),
                           escape_control(message))

    def run(self, text: str) -> Located:
        for event in yaml.parse(text, Loader=_LOADER):
            line = event.start_mark.line + 1 if event.start_mark else 0
            if isinstance(event, yaml.DocumentStartEvent):
                self.docs += 1
                if self.docs > 1:
                    raise self.fail(line, (), "only one YAML document is allowed")
            elif isinstance(event, yaml.ScalarEvent):
                self._scalar(event, line)
            elif isinstance(event, yaml.AliasEvent):
                self._alias(event, line)
            elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                self._start(event, line)
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                self._end()
        return Located({} if self.root is None else self.root, self.lines, self.file)

    # --- placing values ------------------------------------------------------------------

    def _next_path(self, line: int) -> Path_ | None:
        """The path of the value about to be placed; None when it is a mapping key."""
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.value, list):
            return (*top.path, len(top.value))
        if not top.have_key:
            return None
        assert top.key is not None
        return (*top.path, top.key)

    def _count(self, n: int, line: int, path: Path_) -> None:
        self.values += n
        if self.values > MAX_VALUES:
            raise self.fail(line, path, f"more than {MAX_VALUES} values (after expanding "
                                        "aliases): refused")
        for o in self.stack:
            o.size += n

    def _place(self, value: Any, line: int, path: Path_) -> None:
        if not self.stack:
            self.root = value
            self.lines.setdefault((), line)
            return
        top = self.stack[-1]
        if isinstance(top.value, list):
            top.value.append(value)
            self.lines[path] = line
        else:
            assert top.key is not None
            top.value[top.key] = value
            self.lines[path] = top.key_line  # report a field at its key
            top.have_key = False

    def _key(self, key: Any, line: int) -> None:
        top = self.stack[-1]
        assert isinstance(top.value, dict)
        if not isinstance(key, str):
            raise self.fail(line, top.path, f"keys must be strings, got {key!r}")
        if key in top.value:
            raise self.fail(line, (*top.path, key), f"duplicate key '{key}' (first defined "
                                                    f"on line {self.lines[(*top.path, key)]})")
        top.key, top.key_line, top.have_key = key, line, True

    # --- events --------------------------------------------------------------------------

    def _scalar(self, event: yaml.ScalarEvent, line: int) -> None:
        tag = event.tag
        if tag is None or tag == "!":
            tag = _RESOLVER.resolve(yaml.ScalarNode, event.value,  # type: ignore[no-untyped-call]
                                    event.implicit)
            if tag == "tag:yaml.org,2002:timestamp":
                tag = "tag:yaml.org,2002:str"  # a plain 2024-01-01 stays the text written
        path = self._next_path(line)
        if tag == _MERGE:
            raise self.fail(line, self.stack[-1].path if self.stack else (),
                            "YAML merge keys ('<<') are not supported; use 'extends'")
        if tag not in _SCALAR_TAGS:
            raise self.fail(line, path or (), f"YAML tag {tag} is not allowed (only "
                                              "strings, numbers, booleans and null)")
        node = yaml.ScalarNode(tag, event.value)
        try:
            value = _CONSTRUCTOR.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            raise self.fail(line, path or (), f"bad scalar: {_one_line(str(exc))}") from None
        if path is None:
            self._key(value, line)
            return
        self._count(1, line, path)
        if event.anchor:
            self.anchors[event.anchor] = (value, 1)
        self._place(value, line, path)

    def _alias(self, event: yaml.AliasEvent, line: int) -> None:
        name = event.anchor
        if name in self.open_anchors:
            raise self.fail(line, self.stack[-1].path if self.stack else (),
                            f"recursive alias *{name}")
        if name not in self.anchors:
            raise self.fail(line, self.stack[-1].path if self.stack else (),
                            f"unknown alias *{name}")
        value, size = self.anchors[name]
        path = self._next_path(line)
        if path is None:
            self._key(value, line)
            return
        self._count(size, line, path)
        self._place(copy.deepcopy(value), line, path)

    def _start(self, event: yaml.CollectionStartEvent, line: int) -> None:
        path = self._next_path(line)
        if path is None:
            raise self.fail(line, self.stack[-1].path, "keys must be strings, not "
                                                       "mappings or lists")
        if len(self.stack) >= MAX_DEPTH:
            raise self.fail(line, path, f"nested more than {MAX_DEPTH} levels deep: refused")
        tag = event.tag
        expected = ("tag:yaml.org,2002:map" if isinstance(event, yaml.MappingStartEvent)
                    else "tag:yaml.org,2002:seq")
        if tag not in (None, "!", expected):
            raise self.fail(line, path, f"YAML tag {tag} is not allowed")
        self._count(1, line, path)
        value: dict[str, Any] | list[Any] = ({} if isinstance(event, yaml.MappingStartEvent)
                                             else [])
        self._place(value, line, path)
        self.stack.append(_Open(value, path, event.anchor))
        if event.anchor:
            self.open_anchors.add(event.anchor)

    def _end(self) -> None:
        done = self.stack.pop()
        if done.anchor:
            self.open_anchors.discard(done.anchor)
            self.anchors[done.anchor] = (done.value, done.size)


def dotted(path: Path_) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")
