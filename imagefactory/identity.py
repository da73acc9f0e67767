"""The image's identity in one place: the tag scheme and the label schema.

Local tags: `<repository>:<variant>` for a variant's image, `<repository>:<variant>-<stage>`
for a `--target` stage of it. Labels written at build time (by the engine, from what was
sent, not by the template): the inputs hash, the base image id, the build-args digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from .matrix.loader import Matrix, Variant

# The hash of exactly what was sent to the engine (render/renderer.py computes it).
HASH_LABEL = "io.imagefactory.inputs-hash"
# The id of the image the variant was built FROM: a rebuilt base (another variant, or a
# re-imported external base) changes it, so dependants rebuild although their inputs did not.
BASE_LABEL = "io.imagefactory.base-image-id"
# The digest of the --build-arg values a build was given (absent without any): other values
# make another image, so an image built with other values is not up to date.
ARGS_LABEL = "io.imagefactory.build-args"
TARGET_LABEL = "io.imagefactory.target"


def local_tag(matrix: Matrix, variant: Variant, target: str | None = None) -> str:
    """The engine-local tag: `<repository>:<variant>`, or `<repository>:<variant>-<stage>`."""
    return f"{matrix.repository}:{variant.name}" + (f"-{target}" if target else "")


def build_args_digest(build_args: Mapping[str, str]) -> str | None:
    """A stable digest of build-arg values (None for none), for ARGS_LABEL."""
    if not build_args:
        return None
    data = json.dumps(sorted(build_args.items()), separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()
