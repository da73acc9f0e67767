"""testinfra's `host`, connected to a container through the engine interface.

testinfra's own docker backend runs the docker CLI (`docker exec`), which reaches whichever
engine DOCKER_HOST and the docker config name, needs the CLI installed, and knows nothing of
the engine the rest of a test run uses. This backend execs through that `ContainerEngine`
(engine/base.py) instead: the same connection (a remote DOCKER_HOST, TLS, a docker context,
the in-memory fake of unit tests), stdout and stderr kept apart as testinfra's results have
them. No docker import: the engine is handed in.
"""

from __future__ import annotations

from typing import Any

import testinfra.host
from testinfra.backend.base import BaseBackend, CommandResult

from ...engine.base import ContainerEngine


class EngineBackend(BaseBackend):  # type: ignore[misc]  # testinfra is untyped
    """Runs each command as testinfra's docker backend does (`/bin/sh -c COMMAND` in the
    container, as the image's user), through `engine.exec`."""

    NAME = "imagefactory"

    def __init__(self, engine: ContainerEngine, container: str, *args: Any,
                 **kwargs: Any) -> None:
        self.engine = engine
        self.container = container
        super().__init__(container[:12], *args, **kwargs)

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        cmd = self.get_command(command, *args)
        out: list[bytes] = []
        err: list[bytes] = []
        rc = self.engine.exec(self.container, ["/bin/sh", "-c", cmd], out.append,
                              on_stderr=err.append)
        result: CommandResult = self.result(rc, self.encode(cmd), b"".join(out), b"".join(err))
        return result


def engine_host(engine: ContainerEngine, container: str) -> Any:
    """A testinfra Host (`host.run`, `host.file`, ...) for the running `container`."""
    backend = EngineBackend(engine, container)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host
