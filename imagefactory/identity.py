"""The image's identity in one place: the tag scheme and the label schema.

Local tags: `<repository>:<variant>` for a variant's image, `<repository>:<variant>-<stage>`
for a `--target` stage of it. Labels written at build time (by the engine, from what was
sent, not by the template): the inputs hash, the base image id, the build-args digest.
"""

from __future__ import annotations

import hashlib
import json
import re
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


# -- versions and published tags ------------------------------------------------------------

SHORT_HASH = 12
UNTESTED_SUFFIX = "untested"
_TAG_BAD = re.compile(r"[^A-Za-z0-9_.-]")


def tag_safe(text: str) -> str:
    """A valid tag: `+` (local versions like 2.0.1+rocm5.2) and the like become `-`."""
    return _TAG_BAD.sub("-", text).lstrip(".-")[:128]


def declared_version(variant: Variant, torch: str | None = None) -> str:
    """What is inside, as `rocm6.2.4-torch2.5.1-gfx1010` (`torch1.13.0a0-cpu`): the
    declared versions, with torch as the image reports it when `torch` is given."""
    parts = [f"rocm{variant.rocm}"] if variant.rocm else []
    parts.append(f"torch{torch or variant.torch.version}")
    parts.append("-".join(variant.gfx_targets) if variant.gfx_targets else "cpu")
    return "-".join(parts)


def descriptive_tag(variant: Variant, torch: str | None = None) -> str:
    """`<version>-<variant>` without saying a part twice: the cpu variant's is
    `torch1.13.0a0-cpu`, not `torch1.13.0a0-cpu-cpu`."""
    words = set(variant.name.split("-"))
    version = declared_version(variant, torch).split("-")
    while version and version[-1] in words:  # the trailing arch/`cpu` part the name repeats
        version.pop()
    return tag_safe("-".join([*version, variant.name]))


def publish_tags(variant: Variant, inputs_hash: str, *, torch: str | None = None,
                 untested: bool = False) -> tuple[str, ...]:
    """`<variant>`, `<variant>-<short inputs hash>`, `<version>-<variant>`.

    The first moves with each publish; the second names exactly one set of build inputs; the
    third says what is inside, with torch as the tested image reported it (`torch`). An
    emergency push without tests adds `<variant>-untested`, so the registry itself shows
    that this digest was published untested.
    """
    tags = [variant.name, f"{variant.name}-{inputs_hash[:SHORT_HASH]}",
            descriptive_tag(variant, torch)]
    if untested:
        tags.append(f"{variant.name}-{UNTESTED_SUFFIX}")
    return tuple(tags)


def version_note(declared: str, reported: str | None) -> str | None:
    """A line saying that a declared version differs from the one the image reports (the
    one shown in tags and reports); None when they agree or nothing was reported."""
    if not reported or reported == declared:
        return None
    return f"declared torch {declared}, the image reports {reported}"
