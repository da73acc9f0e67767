"""Connecting to Docker engines, with one clear line when one does not answer."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import JobError

if TYPE_CHECKING:
    import docker


def default_address() -> str:
    """What docker-py will try: DOCKER_HOST, else the current docker context, else the socket."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    try:
        from docker.context import ContextAPI

        host = ContextAPI.get_current_context().Host
        if host:
            return host
    except Exception:  # a broken context file must not hide the real connection error
        pass
    return "unix:///var/run/docker.sock"


def connect(url: str | None = None, timeout: int = 600) -> docker.DockerClient:
    """A client for the engine at `url` (default: DOCKER_HOST / docker context), pinged."""
    import docker
    from docker.errors import DockerException

    address = url or default_address()
    try:
        client = docker.DockerClient(base_url=address, timeout=timeout,
                                     use_ssh_client=address.startswith("ssh://"))
        client.ping()
    except (DockerException, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise JobError(f"cannot reach the Docker engine at {address}: {reason}") from None
    return client
