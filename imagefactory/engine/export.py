"""An image's or a container's filesystem as a tar stream, for the GPU code audit.

`docker export` of a container that is created and never started: nothing in the image runs,
and the stream is read as it comes (verify/gpucode audits it without writing it to disk)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import JobError
from .containers import ROLE_LABEL, RUN_LABEL, new_run_id

if TYPE_CHECKING:
    import docker

CHUNK = 1 << 20


def container_filesystem(container: Any) -> Iterator[bytes]:
    """A (running or stopped) container's filesystem, as `docker export` chunks."""
    stream: Iterator[bytes] = container.export(chunk_size=CHUNK)
    return stream


@contextlib.contextmanager
def image_filesystem(client: docker.DockerClient, image: str,
                     run_id: str | None = None) -> Iterator[Iterator[bytes]]:
    """`with image_filesystem(client, "name:tag") as chunks:` the image's filesystem as tar
    chunks, from a container that is created (labelled, never started) and always removed."""
    from docker.errors import APIError, ImageNotFound

    labels = {ROLE_LABEL: "audit", RUN_LABEL: run_id or new_run_id()}
    try:
        container = client.containers.create(image, command=["true"], labels=labels)
    except ImageNotFound:
        raise JobError(f"no image {image} in the engine (build or pull it first)") from None
    except APIError as exc:
        reason = str(getattr(exc, "explanation", None) or exc).splitlines()[0]
        raise JobError(f"cannot create a container of {image}: {reason}") from None
    try:
        yield container_filesystem(container)
    finally:
        with contextlib.suppress(APIError):
            container.remove(force=True, v=True)
