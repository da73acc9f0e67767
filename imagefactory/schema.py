"""One description of a document read from outside, two uses: the strict reader checks input
against it, and the published JSON Schema (schemas/*.json) is rendered from it, so the two
cannot drift. The reader is the stricter of the two where JSON Schema cannot say a thing (no
control or bidi characters anywhere, whole numbers that are JSON integers, bounded
numbers); whatever the reader accepts, the schema accepts (tests/share check both ways).

The result bundle, compatibility.json, the stored test result (verify/results.py) and the
publish record (share/record.py) are read with `Node.check`; variants.yaml is read by
matrix/loader.py (file:line errors) and its schema is rendered from the recipes and the
loader's keys (matrix/schema.py), all with the shared patterns below.
`python -m imagefactory.schemafiles` rewrites schemas/.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .safety import escape_control, first_control

MAX_NUMBER = 1e15  # seconds, errors, sizes: anything larger is not a measurement

# --- the shapes every reader shares: variants.yaml (matrix/loader.py, matrix/recipes.py), the
# stored test result and publish record (verify/), the result bundle (share/reader.py) and
# compatibility.json (report/merge.py). Defined once, here at the bottom layer; each is applied
# with fullmatch and written so ECMA-262 reads it the same (the published schemas).

# A variant's name becomes file and folder names (dockerfiles/<v>/, results/<v>.json,
# <v>.quick.json, <v>.publish.json, ...): no dot, so `<v>.quick` cannot be a variant.
VARIANT_NAME = r"[a-z0-9][a-z0-9_-]{0,62}"
NAME = r"[a-z0-9][a-z0-9._-]{0,62}"  # profile and family names
GFX = r"gfx[0-9a-f]{3,4}"  # one GPU target (gfx1010, gfx90a)
SHA256 = r"[0-9a-f]{64}"  # a sha256 in hex, lowercase
DIGEST = rf"sha256:{SHA256}"  # an image id, or the manifest digest a registry serves
STATUS = r"[a-z][a-z0-9-]{0,39}"  # a conv check case's status word (ok, hang, not-run...)


class SchemaError(ValueError):
    """A document that does not follow its schema: the field and what is wrong."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where or '(top)'}: {message}")
        self.where = where
        self.message = message


def kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "true/false", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


class Node:
    def check(self, value: Any, where: str) -> Any:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Str(Node):
    max: int = 200
    pattern: str | None = None  # full match; written so ECMA-262 reads it the same
    # What a value the pattern refuses is, said before any other problem: "{value!r} is not
    # a valid variant" ({value} is the text escaped and cut to 40 characters).
    message: str | None = None
    controls: bool = False  # free text that may hold newlines and tabs (a check's detail)

    def check(self, value: Any, where: str) -> Any:
        if type(value) is not str:
            raise SchemaError(where, f"expected a string, got {kind(value)}")
        if self.message is not None and self.pattern is not None and \
                not re.fullmatch(self.pattern, value):
            raise SchemaError(where, self.message.format(value=escape_control(value)[:40]))
        if len(value) > self.max:
            raise SchemaError(where, f"longer than {self.max} characters")
        bad = None if self.controls else first_control(value)
        if bad is not None:
            raise SchemaError(where, f"control character {escape_control(bad)} in the text")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise SchemaError(where, f"{escape_control(value)[:40]!r} is not of the form "
                                     f"{self.pattern}")
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string", "maxLength": self.max}
        if not self.controls:
            out["not"] = {"pattern": "[\\u0000-\\u001f\\u007f-\\u009f]"}
        if self.pattern is not None:
            out["pattern"] = f"^(?:{self.pattern})$"
        return out


@dataclass(frozen=True)
class Int(Node):
    min: int = 0
    max: int = (1 << 53) - 1

    def check(self, value: Any, where: str) -> Any:
        if type(value) is not int:
            raise SchemaError(where, f"expected a whole number, got {kind(value)}")
        if not self.min <= value <= self.max:
            raise SchemaError(where, f"{value} is outside {self.min}..{self.max}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.min, "maximum": self.max}


@dataclass(frozen=True)
class Num(Node):
    def check(self, value: Any, where: str) -> Any:
        if type(value) not in (int, float) or not math.isfinite(value):
            raise SchemaError(where, f"expected a finite number, got {kind(value)}")
        if abs(value) > MAX_NUMBER:
            raise SchemaError(where, f"{value:g} is not a plausible measurement")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER}


@dataclass(frozen=True)
class Bool(Node):
    def check(self, value: Any, where: str) -> Any:
        if type(value) is not bool:
            raise SchemaError(where, f"expected true or false, got {kind(value)}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Enum(Node):
    values: tuple[Any, ...]

    def check(self, value: Any, where: str) -> Any:
        # Typed as JSON Schema compares: true is not 1.
        if not any(type(value) is type(v) and value == v for v in self.values):
            shown = escape_control(str(value))[:40] if isinstance(value, str) else kind(value)
            raise SchemaError(where, f"{shown!r} is not one of "
                                     f"{', '.join(map(str, self.values))}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"enum": list(self.values)} if len(self.values) > 1 else \
            {"const": self.values[0]}


@dataclass(frozen=True)
class Opt(Node):
    """`node` or null."""

    node: Node

    def check(self, value: Any, where: str) -> Any:
        return None if value is None else self.node.check(value, where)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [self.node.schema(), {"type": "null"}]}


@dataclass(frozen=True)
class Arr(Node):
    item: Node
    max: int = 10_000
    min: int = 0

    def check(self, value: Any, where: str) -> Any:
        if type(value) is not list:
            raise SchemaError(where, f"expected a list, got {kind(value)}")
        if len(value) > self.max:
            raise SchemaError(where, f"more than {self.max} items")
        if len(value) < self.min:
            raise SchemaError(where, f"needs at least {self.min} item(s)")
        return [self.item.check(v, f"{where}[{i}]") for i, v in enumerate(value)]

    def schema(self) -> dict[str, Any]:
        out = {"type": "array", "items": self.item.schema(), "maxItems": self.max}
        if self.min:
            out["minItems"] = self.min
        return out


@dataclass(frozen=True)
class Map(Node):
    """An object with free keys of one shape and values of one shape."""

    value: Node
    key: str | None = r"[A-Za-z_][A-Za-z0-9_.-]{0,63}"  # None: any string
    max: int = 200
    min: int = 0

    def check(self, value: Any, where: str) -> Any:
        if type(value) is not dict:
            raise SchemaError(where, f"expected an object, got {kind(value)}")
        if len(value) > self.max:
            raise SchemaError(where, f"more than {self.max} keys")
        if len(value) < self.min:
            raise SchemaError(where, f"needs at least {self.min} key(s)")
        out = {}
        for k, v in value.items():
            if type(k) is not str or (self.key is not None and not re.fullmatch(self.key, k)):
                raise SchemaError(where, f"key {escape_control(k)[:40]!r} is not of the form "
                                         f"{self.key}")
            out[k] = self.value.check(v, f"{where}.{k}")
        return out

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "object"}
        if self.key is not None:
            out["propertyNames"] = {"pattern": f"^(?:{self.key})$"}
        out.update(additionalProperties=self.value.schema(), maxProperties=self.max)
        if self.min:
            out["minProperties"] = self.min
        return out


@dataclass(frozen=True)
class Any_(Node):
    """Any JSON value (fields of an older document this version only carries along)."""

    def check(self, value: Any, where: str) -> Any:
        return value

    def schema(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class Obj(Node):
    required: Mapping[str, Node]
    optional: Mapping[str, Node] = field(default_factory=dict)
    extra: bool = False  # other keys allowed (and ignored)
    # A check across fields, after each field passed (raise SchemaError).
    also: Callable[[dict[str, Any], str], None] | None = None

    def check(self, value: Any, where: str) -> Any:
        if type(value) is not dict:
            raise SchemaError(where, f"expected an object, got {kind(value)}")
        out = {}
        for k, node in self.required.items():
            if k not in value:
                raise SchemaError(_join(where, k), "missing")
            out[k] = node.check(value[k], _join(where, k))
        for k, node in self.optional.items():
            if k in value:
                out[k] = node.check(value[k], _join(where, k))
        if not self.extra:
            for k in value:
                if k not in self.required and k not in self.optional:
                    raise SchemaError(_join(where, escape_control(str(k))[:40]),
                                      "not a field of this schema")
        if self.also is not None:
            self.also(out, where)
        return out

    def schema(self) -> dict[str, Any]:
        props = {k: n.schema() for k, n in {**self.required, **self.optional}.items()}
        return {"type": "object", "properties": props, "required": list(self.required),
                "additionalProperties": self.extra}


@dataclass(frozen=True)
class Make(Node):
    """`node`, then what `make` builds from its reading (a frozen dataclass): the document is
    described once and the reader returns objects, never the raw JSON."""

    node: Node
    make: Callable[[Any], Any]

    def check(self, value: Any, where: str) -> Any:
        return self.make(self.node.check(value, where))

    def schema(self) -> dict[str, Any]:
        return self.node.schema()


# --- combinations: a document whose shape depends on its own fields (variants.yaml) ----------


@dataclass(frozen=True)
class AllOf(Node):
    """Every node holds; the value is the first node's reading."""

    nodes: tuple[Node, ...]

    def check(self, value: Any, where: str) -> Any:
        out = [node.check(value, where) for node in self.nodes]
        return out[0] if out else value

    def schema(self) -> dict[str, Any]:
        return {"allOf": [node.schema() for node in self.nodes]}


@dataclass(frozen=True)
class AnyOf(Node):
    """At least one node holds (the first that does reads the value)."""

    nodes: tuple[Node, ...]

    def check(self, value: Any, where: str) -> Any:
        problems = []
        for node in self.nodes:
            try:
                return node.check(value, where)
            except SchemaError as exc:
                problems.append(str(exc).removeprefix(f"{where or '(top)'}: "))
        raise SchemaError(where, " or ".join(dict.fromkeys(problems)))

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [node.schema() for node in self.nodes]}


@dataclass(frozen=True)
class Not(Node):
    node: Node
    message: str  # what is wrong when `node` holds

    def check(self, value: Any, where: str) -> Any:
        try:
            self.node.check(value, where)
        except SchemaError:
            return value
        raise SchemaError(where, self.message)

    def schema(self) -> dict[str, Any]:
        return {"not": self.node.schema()}


@dataclass(frozen=True)
class When(Node):
    """Where `condition` holds (it reads the value without error), `then` must too."""

    condition: Node
    then: Node

    def check(self, value: Any, where: str) -> Any:
        try:
            self.condition.check(value, where)
        except SchemaError:
            return value
        return self.then.check(value, where)

    def schema(self) -> dict[str, Any]:
        return {"if": self.condition.schema(), "then": self.then.schema()}


def has(*keys: str, **values: Node) -> Obj:
    """An object with these keys (any value) and these keys' values: for conditions."""
    return Obj({**dict.fromkeys(keys, Any_()), **values}, extra=True)


def where_set(**values: Node) -> Obj:
    """An object whose keys, where present, have these values."""
    return Obj({}, values, extra=True)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def document(node: Node, schema_id: str, title: str, description: str) -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_id,
            "title": title, "description": description, **node.schema()}
