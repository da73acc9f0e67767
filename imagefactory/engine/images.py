"""Local image names and what a built image says about itself (its labels)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..matrix.loader import Matrix, Variant
from ..render.renderer import HASH_LABEL

if TYPE_CHECKING:
    import docker


def local_tag(matrix: Matrix, variant: Variant) -> str:
    """The engine-local tag of a variant's image: `<repository>:<variant>`."""
    return f"{matrix.repository}:{variant.name}"


@dataclass(frozen=True)
class BuiltImage:
    """A variant's image as it stands in an engine."""

    variant: Variant
    image_id: str
    tag: str
    inputs_hash: str | None

    @property
    def short_id(self) -> str:
        return self.image_id.removeprefix("sha256:")[:12]


def find_built(client: docker.DockerClient, matrix: Matrix, variant: Variant) -> BuiltImage | None:
    """The image tagged for `variant` in this engine, or None when there is none."""
    from docker.errors import ImageNotFound

    tag = local_tag(matrix, variant)
    try:
        image = client.images.get(tag)
    except ImageNotFound:
        return None
    labels = image.labels or {}
    return BuiltImage(variant, image.id, tag, labels.get(HASH_LABEL))
