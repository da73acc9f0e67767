"""Connecting to Docker engines, with one clear line when one does not answer.

docker-py takes ~70 ms to import (requests, urllib3, ...), more than a no-change build needs
in all, so `Engine` asks a local engine about images through the small unix-socket probe
(engineprobe) and imports docker-py only when something has to be built, pulled or tagged.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from ..errors import JobError
from ..safety import redact
from . import probe as engineprobe

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import docker

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def _docker_config_file() -> str | None:
    """The docker CLI config file, found the way docker-py finds it."""
    home = os.path.expanduser("~")
    candidates = [os.path.join(os.environ["DOCKER_CONFIG"], "config.json")
                  if os.environ.get("DOCKER_CONFIG") else None,
                  os.path.join(home, ".docker", "config.json"),
                  os.path.join(home, ".dockercfg")]
    return next((p for p in candidates if p and os.path.exists(p)), None)


def _current_context_name() -> str:
    """The docker CLI's current context name, as docker-py reads it ("default" if unset)."""
    path = _docker_config_file()
    if not path:
        return "default"
    try:
        with open(path, encoding="utf-8") as f:
            return str(json.load(f).get("currentContext", "default"))
    except Exception:  # docker-py treats an unreadable config as no context, too
        return "default"


def default_address() -> str:
    """What docker-py will try: DOCKER_HOST, else the current docker context, else the socket."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    if _current_context_name() == "default":
        return DEFAULT_SOCKET  # docker-py's default context; no need to import it
    try:
        from docker.context import ContextAPI

        host = ContextAPI.get_current_context().Host
        if host:
            return host
    except Exception:  # a broken context file must not hide the real connection error
        pass
    return DEFAULT_SOCKET


def connect(url: str | None = None, timeout: int = 600) -> docker.DockerClient:
    """A client for the engine at `url` (default: DOCKER_HOST / docker context), pinged."""
    import docker
    from docker.errors import DockerException

    address = url or default_address()
    log.debug("connecting to %s", redact(address))
    try:
        client = docker.DockerClient(base_url=address, timeout=timeout,
                                     use_ssh_client=address.startswith("ssh://"))
        client.ping()
    except (DockerException, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise JobError(f"cannot reach the Docker engine at {address}: {reason}") from None
    return client


def is_engine_error(exc: BaseException) -> bool:
    """Whether `exc` is the engine's (or the connection's) fault, not a bug of ours.

    requests' errors are OSErrors, and so are the probe's; docker-py's own exceptions can only
    have been raised if docker was imported, so this never imports it.
    """
    if isinstance(exc, OSError):
        return True
    errors = sys.modules.get("docker.errors")
    return errors is not None and isinstance(exc, errors.DockerException)


class Engine:
    """One engine as the builder uses it: inspection through the probe where it can,
    docker-py (connected on first use) for everything else."""

    def __init__(self, address: str, *, client: docker.DockerClient | None = None,
                 probe: engineprobe.EngineProbe | None = None, timeout: int = 120) -> None:
        self.address = address
        self.timeout = timeout
        self._client = client
        self._probe = probe
        self._lock = threading.Lock()

    @property
    def client(self) -> docker.DockerClient:
        """The docker-py client; connects (raising connect's JobError) on first use."""
        with self._lock:
            if self._client is None:
                self._client = connect(self.address, timeout=self.timeout)
            return self._client

    @property
    def uses_docker_py(self) -> bool:
        """Whether a docker-py client exists (for tests: a no-change build creates none)."""
        return self._client is not None

    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        """docker-py's api.inspect_image(ref), or None when the engine has no such image."""
        if self._probe is not None:
            return self._probe.inspect_image(ref)
        from docker.errors import ImageNotFound

        try:
            return self.client.api.inspect_image(ref)
        except ImageNotFound:
            return None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def open_engine(address: str, timeout: int = 120) -> Engine:
    """The engine at `address`, pinged; unreachable: connect's one-line JobError."""
    if engineprobe.supports(address):
        probe = engineprobe.EngineProbe(address, timeout)
        try:
            probe.ping()
            return Engine(address, probe=probe, timeout=timeout)
        except OSError:
            pass  # docker-py tries too: it either connects or words the error as always
    return Engine(address, client=connect(address, timeout=timeout), timeout=timeout)
