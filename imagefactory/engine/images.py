"""A variant's image as it stands in an engine (its tag and what its labels say)."""

from __future__ import annotations

from dataclasses import dataclass

from ..identity import HASH_LABEL, local_tag
from ..matrix.loader import Matrix, Variant
from .base import ContainerEngine, ImageInfo


@dataclass(frozen=True)
class BuiltImage:
    """A variant's image as it stands in an engine."""

    variant: Variant
    image_id: str
    tag: str
    inputs_hash: str | None
    info: ImageInfo | None = None

    @property
    def short_id(self) -> str:
        return self.image_id.removeprefix("sha256:")[:12]


def find_built(engine: ContainerEngine, matrix: Matrix, variant: Variant,
               target: str | None = None) -> BuiltImage | None:
    """The image tagged for `variant` (or its `target` stage) in this engine, or None when
    there is none."""
    tag = local_tag(matrix, variant, target)
    image = engine.inspect_image(tag)
    if image is None:
        return None
    return BuiltImage(variant, image.id, tag, image.labels.get(HASH_LABEL), image)
