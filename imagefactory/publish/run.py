"""A publish run: every named variant checked against its test result, then each pushed,
verified in the registry and recorded. What `imagefactory push` does once its options are
parsed and the login resolved, callable without click."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..engine.base import ContainerEngine
from ..errors import JobError
from ..events import Emit, discard
from ..matrix.loader import Matrix, Variant
from .events import Pushing, Recorded, Refused, TagPublished, TestsSkipped
from .publisher import Plan, Published, Publisher, plan, shared_tags
from .registry import Credentials, Target

# (address or None for the default, read timeout in seconds) -> the engine, connected.
Opener = Callable[[str | None, int], ContainerEngine]


def _docker_opener(address: str | None, timeout: int) -> ContainerEngine:
    from ..engine.docker_engine import open_engine

    return open_engine(address, timeout=timeout)


def publish_variants(matrix: Matrix, variants: Sequence[Variant], target: Target,
                     creds: Credentials | None, results_dir: Path, *,
                     rendered_hash: Callable[[Variant], str],
                     skip_tests: bool = False, allow_quick: bool = False, retries: int = 3,
                     engine: str | None = None, opener: Opener | None = None,
                     emit: Emit = discard) -> list[Published]:
    """Push `variants` to `target`; the published images, in order.

    Every variant is decided (built, tested, tags) before any push, so a refusal never
    leaves half a release: one refusal is that JobError, several are a Refused each and one
    JobError, and nothing is pushed. `emit` gets the progress and a TagPublished per tag
    (publish/events.py); records go to `results_dir`. `rendered_hash` gives
    the inputs hash each variant renders to now (the gate refuses an image built from other
    inputs)."""
    client = (opener or _docker_opener)(engine, 600)
    plans: list[Plan] = []
    refused: list[str] = []
    for variant in variants:
        try:
            plans.append(plan(client, matrix, variant, target, results_dir, skip_tests,
                              allow_quick, rendered_hash=rendered_hash(variant)))
        except JobError as exc:
            refused.append(str(exc))
    refused += shared_tags(plans)
    if len(refused) == 1:
        raise JobError(refused[0] + ("; nothing pushed" if len(variants) > 1 else ""))
    if refused:
        for line in refused:
            emit(Refused(line))
        raise JobError(f"{len(refused)} of {len(variants)} variants cannot be published; "
                       "nothing pushed")

    publisher = Publisher(client, target, creds, results_dir, retries=retries, emit=emit)
    published = []
    for p in plans:
        if p.tests_skipped:
            emit(TestsSkipped(p.variant.name, p.built.short_id, p.tags[-1]))
        emit(Pushing(p.variant.name, p.built.short_id, p.repository, tuple(p.tags)))
        done = publisher.publish(p)
        for tag in p.tags:
            emit(TagPublished(p.repository, tag, done.reference))
        emit(Recorded(p.variant.name, done.record_path))
        published.append(done)
    return published
