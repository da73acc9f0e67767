"""Containers that are always removed: on success, on a failing check, on Ctrl-C, on SIGTERM.

Modelled on jupyter/docker-stacks' tests/utils/tracked_container.py, with two additions a
CLI needs: SIGTERM is turned into an exception (Python's default would exit without running
`finally`), and every container carries a per-run label, so cleanup also finds a container
whose create call was interrupted before its id came back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from types import FrameType

from ..identity import ROLE_LABEL, RUN_LABEL, SESSION_LABEL
from .base import ContainerEngine, ContainerInfo, ContainerSpec

# The label keys live in identity.py (the label schema); re-exported for this module's users.
__all__ = ["ROLE_LABEL", "RUN_LABEL", "SESSION_ENV", "SESSION_LABEL", "Terminated",
           "TrackedContainer", "new_run_id", "signals_deferred", "terminate_as_interrupt"]

# A test suite sets IMAGEFACTORY_TEST_SESSION so that it can find (and assert gone) every
# container made on its behalf, also by the CLI processes it runs, on a shared engine.
SESSION_ENV = "IMAGEFACTORY_TEST_SESSION"


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def session_labels() -> dict[str, str]:
    """The test session's label when a test suite runs us (SESSION_ENV set), else none: put
    on everything made in the engine that may outlive a run (containers, cache volumes)."""
    session = os.environ.get(SESSION_ENV)
    return {SESSION_LABEL: session} if session else {}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the same cleanup paths (and exit 130 in cli) run."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises `Terminated`; SIGINT already raises KeyboardInterrupt.
    Signal handlers can only be set from the main thread; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, frame: FrameType | None) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while cleaning up (a second Ctrl-C must not abandon a half-done
    removal), then deliver what arrived."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    previous = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if pending:
            signal.raise_signal(pending[0])


class TrackedContainer:
    """`with engine.run_container(spec, role="test") as container:` starts a detached
    container and removes it (and anything else created under its run id) when the block
    ends, however it ends. Works on any ContainerEngine."""

    def __init__(self, engine: ContainerEngine, spec: ContainerSpec, *, role: str,
                 run_id: str | None = None) -> None:
        self.engine = engine
        self.run_id = run_id or new_run_id()
        labels = {**spec.labels, ROLE_LABEL: role, RUN_LABEL: self.run_id, **session_labels()}
        self.spec = replace(spec, labels=labels)
        self.container: ContainerInfo | None = None
        self._id: str | None = None

    def __enter__(self) -> ContainerInfo:
        self._signals = terminate_as_interrupt()
        self._signals.__enter__()
        try:
            self._id = self.engine.create_container(self.spec)
            self.engine.start_container(self._id)
            found = [c for c in self.engine.list_containers(label=f"{RUN_LABEL}={self.run_id}")
                     if c.id == self._id]
            self.container = found[0] if found else ContainerInfo(
                self._id, self.spec.name or "", self.spec.image, "running",
                dict(self.spec.labels))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.container

    def __exit__(self, *exc: object) -> None:
        try:
            with signals_deferred():
                self.remove()
        finally:
            self._signals.__exit__(None, None, None)

    def remove(self) -> None:
        """Force-remove this run's containers; never raises for one already gone."""
        found = {c.id for c in self.engine.list_containers(label=f"{RUN_LABEL}={self.run_id}")}
        if self._id is not None:
            found.add(self._id)
        for container in sorted(found):
            self.engine.remove_container(container)
