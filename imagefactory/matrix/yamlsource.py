"""YAML loading that remembers where each value came from.

PyYAML's safe_load loses line numbers and silently keeps the last of two equal keys; the
matrix needs both (errors name the line, and a duplicated variant name is an error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from ..errors import ConfigError

# libyaml's parser when PyYAML has it: the same nodes and marks, several times faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Path_ = tuple[str | int, ...]


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


def load(text: str, file: str) -> Located:
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if mark and exc.context_mark and mark.line >= len(text.splitlines()):
            mark = exc.context_mark  # "unexpected end of file": point at what was left open
        line = mark.line + 1 if mark else None
        raise ConfigError(file, line, "", f"YAML syntax error: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(file, None, "", f"YAML error: {exc}") from None
    lines: dict[Path_, int] = {}
    if node is None:
        return Located({}, lines, file)
    return Located(_convert(node, (), lines, file), lines, file)


def _convert(node: yaml.Node, path: Path_, lines: dict[Path_, int], file: str) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise ConfigError(file, key_node.start_mark.line + 1, dotted(path),
                                  "YAML merge keys ('<<') are not supported; use 'extends'")
            key = _scalar(key_node)
            if not isinstance(key, str):
                raise ConfigError(file, key_node.start_mark.line + 1, dotted(path),
                                  f"keys must be strings, got {key!r}")
            if key in out:
                raise ConfigError(file, key_node.start_mark.line + 1, dotted((*path, key)),
                                  f"duplicate key '{key}' (first defined on line "
                                  f"{lines[(*path, key)]})")
            out[key] = _convert(value_node, (*path, key), lines, file)
            lines[(*path, key)] = key_node.start_mark.line + 1  # report a field at its key
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), lines, file) for i, item in enumerate(node.value)]
    return _scalar(node)


_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def _scalar(node: yaml.Node) -> Any:
    return _CONSTRUCTOR.construct_object(node, deep=True)


def dotted(path: Path_) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")
