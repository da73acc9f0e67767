"""The image's identity in one place: the tag scheme and the label schema.

Local tags: `<repository>:<variant>` for a variant's image, `<repository>:<variant>-<stage>`
for a `--target` stage of it. Labels: those the template writes (`image_labels`: what the
variant declares, and the inputs hash), those the engine adds at build time (the base image
id, the build-args digest, the target), and those on containers and volumes imagefactory
makes (role, run, test session, MIOpen cache), so cleanup finds them. Published tags: the
variant, its inputs hash, and what is inside as the tested image reports it.

Nothing here imports engine/ (engine/ imports this).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping

from .matrix.loader import Matrix, Variant

LABEL_PREFIX = "io.imagefactory."

# -- written by the template (image_labels): what the variant declares -------------------
VARIANT_LABEL = LABEL_PREFIX + "variant"
FAMILY_LABEL = LABEL_PREFIX + "family"
ROCM_LABEL = LABEL_PREFIX + "rocm"  # declared; "none" for a CPU variant
TORCH_DECLARED_LABEL = LABEL_PREFIX + "torch-declared"
GFX_TARGETS_LABEL = LABEL_PREFIX + "gfx-targets"
DEFAULT_PROFILE_LABEL = LABEL_PREFIX + "default-profile"
# The hash of exactly what was sent to the engine (render/renderer.py computes it).
HASH_LABEL = LABEL_PREFIX + "inputs-hash"

# -- added by the engine at build time (build/builder.py, render/bake.py) ------------------
# The id of the image the variant was built FROM: a rebuilt base (another variant, or a
# re-imported external base) changes it, so dependants rebuild although their inputs did not.
BASE_LABEL = LABEL_PREFIX + "base-image-id"
# The digest of the --build-arg values a build was given (absent without any): other values
# make another image, so an image built with other values is not up to date.
ARGS_LABEL = LABEL_PREFIX + "build-args"
TARGET_LABEL = LABEL_PREFIX + "target"
BUILT_BY_LABEL = LABEL_PREFIX + "built-by"  # "bake" on images docker buildx bake made

# -- on containers and volumes imagefactory makes (engine/containers.py, verify/tester.py) --
ROLE_LABEL = LABEL_PREFIX + "role"  # test | audit
RUN_LABEL = LABEL_PREFIX + "run"  # one id per CLI run: cleanup finds what it made
SESSION_LABEL = LABEL_PREFIX + "test-session"  # the test suite's session (SESSION_ENV)
MIOPEN_CACHE_LABEL = LABEL_PREFIX + "miopen-cache"  # the variant whose MIOpen cache it holds


def image_labels(variant: Variant, matrix: Matrix, inputs_hash: str) -> list[tuple[str, str]]:
    """The LABELs the template writes on the final stage, in order."""
    out = [
        ("org.opencontainers.image.title", local_tag(matrix, variant)),
        ("org.opencontainers.image.description", variant.description),
    ]
    if matrix.source:
        out.append(("org.opencontainers.image.source", matrix.source))
    out += [
        (VARIANT_LABEL, variant.name),
        (FAMILY_LABEL, variant.family),
        (ROCM_LABEL, variant.rocm or "none"),
        # Declared, not measured: what the image reports is in its test manifest and tags.
        (TORCH_DECLARED_LABEL, variant.torch.version),
        (GFX_TARGETS_LABEL, ",".join(variant.gfx_targets) or "none"),
        (DEFAULT_PROFILE_LABEL,
         variant.default_profile.name if variant.default_profile else "none"),
        (HASH_LABEL, inputs_hash),
    ]
    return out

def local_tag(matrix: Matrix, variant: Variant, target: str | None = None) -> str:
    """The engine-local tag: `<repository>:<variant>`, or `<repository>:<variant>-<stage>`."""
    return f"{matrix.repository}:{variant.name}" + (f"-{target}" if target else "")


def build_args_digest(build_args: Mapping[str, str], key: bytes) -> str | None:
    """ARGS_LABEL's value (None for no build args): the names, and an HMAC of the values
    under `key` (the host's secret salt, share/hostid.py). An unsalted hash of the values
    would let anyone holding the image test guesses of a secret value offline; the names
    alone would not tell an image built with other values from this one."""
    if not build_args:
        return None
    data = json.dumps(sorted(build_args.items()), separators=(",", ":")).encode()
    mac = hmac.new(b"imagefactory build-args v2\0" + key, data, hashlib.sha256).hexdigest()
    return f"{','.join(sorted(build_args))} hmac-sha256:{mac}"


# -- versions and published tags ------------------------------------------------------------

SHORT_HASH = 12
UNTESTED_SUFFIX = "untested"
_TAG_BAD = re.compile(r"[^A-Za-z0-9_.-]")


MAX_TAG = 128  # the distribution spec's limit on a tag


def tag_safe(text: str) -> str:
    """A valid tag: `+` (local versions like 2.0.1+rocm5.2) and the like become `-`."""
    return _tag_chars(text)[:MAX_TAG]


def _tag_chars(text: str) -> str:
    return _TAG_BAD.sub("-", text).lstrip(".-")


class TagTooLong(ValueError):
    """A publish tag that would have to be cut to fit: cut, two variants could share it."""


def declared_version(variant: Variant, torch: str | None = None,
                     rocm: str | None = None) -> str:
    """What is inside, as `rocm6.2.4-torch2.5.1-gfx1010` (`torch1.13.0a0-cpu`): the
    declared versions, with torch and ROCm as the image reports them when `torch`/`rocm`
    are given (a variant that declares no ROCm has no ROCm part, whatever it reports)."""
    parts = [f"rocm{rocm or variant.rocm}"] if variant.rocm else []
    parts.append(f"torch{torch or variant.torch.version}")
    parts.append("-".join(variant.gfx_targets) if variant.gfx_targets else "cpu")
    return "-".join(parts)


def descriptive_tag(variant: Variant, torch: str | None = None,
                    rocm: str | None = None) -> str:
    """`<version>-<variant>` without saying a part twice: the cpu variant's is
    `torch1.13.0a0-cpu`, not `torch1.13.0a0-cpu-cpu`. Cut to a tag's length; publishing
    refuses a tag that would be cut (`publish_tags`)."""
    return descriptive_tag_untruncated(variant, torch, rocm)[:MAX_TAG]


def descriptive_tag_untruncated(variant: Variant, torch: str | None = None,
                                rocm: str | None = None) -> str:
    words = set(variant.name.split("-"))
    version = declared_version(variant, torch, rocm).split("-")
    while version and version[-1] in words:  # the trailing arch/`cpu` part the name repeats
        version.pop()
    return _tag_chars("-".join([*version, variant.name]))


def publish_tags(variant: Variant, inputs_hash: str, *, torch: str | None = None,
                 rocm: str | None = None, untested: bool = False) -> tuple[str, ...]:
    """`<variant>`, `<variant>-<short inputs hash>`, `<version>-<variant>`.

    The first moves with each publish; the second names exactly one set of build inputs; the
    third says what is inside, with torch and ROCm as the tested image reported them
    (`torch`, `rocm`; the declared ones where it reported none). An emergency push without
    tests adds `<variant>-untested`, so the registry itself shows that this digest was
    published untested.
    """
    described = descriptive_tag_untruncated(variant, torch, rocm)
    if len(described) > MAX_TAG:
        raise TagTooLong(f"the tag {described[:40]}... would be {len(described)} characters; "
                         f"a tag holds at most {MAX_TAG}, and a cut one could name another "
                         "variant's image")
    tags = [variant.name, f"{variant.name}-{inputs_hash[:SHORT_HASH]}", described]
    if untested:
        tags.append(f"{variant.name}-{UNTESTED_SUFFIX}")
    return tuple(tags)


def version_note(declared: str, reported: str | None, what: str = "torch") -> str | None:
    """A line saying that a declared version differs from the one the image reports (the
    one shown in tags and reports); None when they agree or nothing was reported."""
    if not reported or reported == declared:
        return None
    return f"declared {what} {declared}, the image reports {reported}"
