"""Typed errors of the GPU code audit."""

from __future__ import annotations

from imagefactory.errors import ImagefactoryError, UsageError


class GpuCodeError(ImagefactoryError):
    """The audit could not run (an unreadable root, a broken tar stream): exit 1."""


class MalformedInput(GpuCodeError):
    """A file's bytes are not the format their magic promised (truncated, absurd sizes).

    Parsers raise only this; the audit records it as a problem of that one file."""


class AuditUsageError(UsageError):
    """A path or ISA given by the user is wrong: exit 2."""
