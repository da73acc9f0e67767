"""An image's filesystem as a tar stream, for the GPU code audit.

`docker export` of a container that is created and never started: nothing in the image runs,
and the stream is read as it comes (verify/gpucode audits it without writing it to disk)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..identity import ROLE_LABEL, RUN_LABEL
from .base import ContainerEngine, ContainerSpec, EngineError
from .containers import new_run_id


@contextlib.contextmanager
def image_filesystem(engine: ContainerEngine, image: str,
                     run_id: str | None = None) -> Iterator[Iterator[bytes]]:
    """`with image_filesystem(engine, "name:tag") as chunks:` the image's filesystem as tar
    chunks, from a container that is created (labelled, never started) and always removed."""
    from ..errors import JobError

    if engine.inspect_image(image) is None:
        raise JobError(f"no image {image} in the engine (build or pull it first)")
    labels = {ROLE_LABEL: "audit", RUN_LABEL: run_id or new_run_id()}
    try:
        container = engine.create_container(ContainerSpec(image, command=["true"],
                                                          labels=labels))
    except EngineError as exc:
        raise JobError(f"cannot create a container of {image}: "
                       f"{exc.reason}") from None
    try:
        yield engine.export_container(container)
    finally:
        with contextlib.suppress(EngineError):
            engine.remove_container(container)
