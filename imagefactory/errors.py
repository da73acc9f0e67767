"""Errors the CLI turns into one line on stderr and an exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class ImagefactoryError(Exception):
    """An expected failure: printed as one line, never as a traceback."""

    exit_code = EXIT_FAILED


class JobError(ImagefactoryError):
    """The job ran and failed (a build, a test, a push): exit 1."""

    exit_code = EXIT_FAILED


class UsageError(ImagefactoryError):
    """Bad command-line input: exit 2."""

    exit_code = EXIT_USAGE


class ConfigError(ImagefactoryError):
    """Bad configuration: names the file, the line where known, the field and what is wrong."""

    exit_code = EXIT_USAGE

    def __init__(self, path: str, line: int | None, field: str, message: str) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.message = message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")
