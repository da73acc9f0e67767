"""Containers that are always removed: on success, on a failing check, on Ctrl-C, on SIGTERM.

Modelled on jupyter/docker-stacks' tests/utils/tracked_container.py, with two additions a
CLI needs: SIGTERM is turned into an exception (Python's default would exit without running
`finally`), and every container carries a per-run label, so cleanup also finds a container
whose create call was interrupted before its id came back.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import uuid
from collections.abc import Iterator, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

ROLE_LABEL = "io.imagefactory.role"
RUN_LABEL = "io.imagefactory.run"


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


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
    """`with TrackedContainer(client, image, role="test", ...) as container:` starts a detached
    container and removes it (and anything else created under its run id) when the block
    ends, however it ends. Extra keyword arguments go to `client.containers.create`."""

    def __init__(self, client: docker.DockerClient, image: str, *, role: str,
                 run_id: str | None = None, labels: Mapping[str, str] | None = None,
                 **create_kwargs: Any) -> None:
        self.client = client
        self.image = image
        self.run_id = run_id or new_run_id()
        self.labels = {**(labels or {}), ROLE_LABEL: role, RUN_LABEL: self.run_id}
        self.create_kwargs = create_kwargs
        self.container: Container | None = None

    def __enter__(self) -> Container:
        self._signals = terminate_as_interrupt()
        self._signals.__enter__()
        try:
            self.container = self.client.containers.create(
                self.image, labels=self.labels, detach=True, **self.create_kwargs)
            self.container.start()
            self.container.reload()
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
        from docker.errors import APIError, NotFound

        found = {c.id: c for c in self.client.containers.list(
            all=True, filters={"label": f"{RUN_LABEL}={self.run_id}"})}
        if self.container is not None:
            found.setdefault(self.container.id, self.container)
        for container in found.values():
            try:
                container.remove(force=True, v=True)
            except NotFound:
                pass
            except APIError as exc:
                if exc.status_code != 409:  # 409: removal already in progress
                    raise
