"""Docker image references: the one place their grammar is written.

It follows the distribution reference grammar (docker/distribution `reference/regexp.go`,
`reference/reference.go`): a name is an optional domain (`host[:port]`, or `[IPv6]:port`)
then path components of lowercase letters and digits joined by one `.`, one or two `_`, or
dashes; a tag is a word of at most 128 characters; a digest is `algorithm:hex`. The whole
name is at most 255 characters. Every pattern is applied with `fullmatch` (a `$` anchor
would accept a value ending in a newline).

The matrix's `base` and `repository`, and `push --registry`, are read with these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .schema import DIGEST as _DIGEST

NAME_TOTAL_MAX = 255  # reference.go NameTotalLengthMax
TAG_MAX = 128

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"  # \w under re.ASCII, spelled out for JSON Schema
DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
NAME = rf"(?:{DOMAIN}/)?{PATH_COMPONENT}(?:/{PATH_COMPONENT})*"

_COMPONENT_RE = re.compile(PATH_COMPONENT, re.ASCII)
_DOMAIN_RE = re.compile(DOMAIN, re.ASCII)
_NAME_RE = re.compile(NAME, re.ASCII)
_REFERENCE_RE = re.compile(
    rf"(?P<name>{NAME})(?::(?P<tag>{TAG}))?(?:@(?P<digest>{DIGEST}))?", re.ASCII)
_SHA256 = re.compile(_DIGEST, re.ASCII)


class ReferenceError(ValueError):
    """Why a text is not a valid reference (one line, for the caller's error)."""


@dataclass(frozen=True)
class Reference:
    name: str  # domain/path, as written
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (
            f"@{self.digest}" if self.digest else "")


def parse_reference(text: str) -> Reference:
    """`name[:tag][@digest]` by the distribution grammar; sha256 digests only (64 hex)."""
    m = _REFERENCE_RE.fullmatch(text)
    if m is None:
        raise ReferenceError("not name[:tag][@digest] by the distribution grammar (lowercase "
                             "path components joined by one of / . _ __ -, a tag of at most "
                             f"{TAG_MAX} letters, digits and _ . -)")
    name, tag, digest = m.group("name"), m.group("tag"), m.group("digest")
    if len(name) > NAME_TOTAL_MAX:
        raise ReferenceError(f"the image name is longer than {NAME_TOTAL_MAX} characters "
                             f"({len(name)})")
    if digest is not None and not _SHA256.fullmatch(digest):
        raise ReferenceError(f"digest {digest!r} is not sha256:<64 lowercase hex digits>")
    return Reference(name, tag, digest)


def check_repository(text: str) -> str:
    """A repository name (`[domain/]path`, no tag or digest); returns it."""
    if not _NAME_RE.fullmatch(text):
        raise ReferenceError(f"{text!r} is not a valid repository name (lowercase path "
                             "components of letters and digits joined by / . _ -)")
    if len(text) > NAME_TOTAL_MAX:
        raise ReferenceError(f"longer than {NAME_TOTAL_MAX} characters ({len(text)})")
    return text


def is_domain(text: str) -> bool:
    """`host[:port]` or `[IPv6][:port]` as the grammar's domain."""
    return _DOMAIN_RE.fullmatch(text) is not None


def is_path_component(text: str) -> bool:
    return _COMPONENT_RE.fullmatch(text) is not None
