"""A test run: the named variants' built images tested one after another, each result saved
as it comes. What `imagefactory test` does once its options are parsed, callable without
click (the command only prints the outcome and sets the exit status)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from ..engine.base import ContainerEngine
from ..errors import UsageError
from ..events import Emit, discard
from ..paths import Paths
from ..project import Project
from ..share.run import write_beside
from .events import BundleWritten, TestFinished, TestLine
from .results import TestResult
from .tester import Tester, TestOptions, find_images, host_gpu_archs

# (address or None for the default, read timeout in seconds) -> the engine, connected.
Opener = Callable[[str | None, int], ContainerEngine]


def _docker_opener(address: str | None, timeout: int) -> ContainerEngine:
    from ..engine.docker_engine import open_engine

    return open_engine(address, timeout=timeout)


def test_variants(project: Project, names: Sequence[str], options: TestOptions, *,
                  devices: tuple[str, ...] = (), emit: Emit = discard,
                  opener: Opener | None = None,
                  host_isas: Sequence[str] | None = None) -> list[TestResult]:
    """Test each named variant's image (`options.target`: its stage image) and save its
    result under `options.results_dir` (a stage's under Paths.stages, so it never stands in
    for the variant's); `emit` gets the tester's progress and a TestFinished and a
    BundleWritten per result (verify/events.py).

    A family name (therock) means the variant built for this host's GPU (`host_isas`,
    default: what the amdgpu driver reports). Usage errors (an unknown variant or profile,
    a --device that is not there) come before any engine is opened; a variant without its
    image is one JobError naming the build to run, before any test. SIGTERM ends the run as
    Ctrl-C does: the running container is removed."""
    from ..engine.containers import new_run_id, terminate_as_interrupt
    from ..host.devices import gpu_access
    from ..host.pick import resolve

    matrix = project.matrix
    if not names:  # project.variants(()) would be all of them
        raise UsageError(f"name at least one variant to test; variants: "
                         f"{', '.join(matrix.names)}")
    isas = host_gpu_archs() if host_isas is None else host_isas
    picked = []
    for name in names:
        pick = resolve(matrix, name, isas)
        if pick.note:
            emit(TestLine(pick.note))
        picked.append(pick.variant.name)
    selected = project.variants(picked)
    for v in selected:
        v.profile(options.profile)  # an unknown profile is a usage error before anything starts
    access = gpu_access(explicit=devices)
    for d in access.devices:
        if not Path(d.host).exists():
            raise UsageError(f"--device {d.host}: no such device on this host")
    if options.target is not None or options.suite_args:
        # Neither a stage's result nor a hand-run suite's stands as the variant's.
        paths = Paths.for_output(project.output_dir, options.results_dir)
        options = replace(options, results_dir=paths.debug if options.suite_args
                          else paths.stages)
    if options.run_id is None:
        options = replace(options, run_id=new_run_id())
    connect = opener or _docker_opener
    results = []
    with terminate_as_interrupt():
        # The conv check may print nothing while a case runs up to its timeout: the
        # engine connection's read timeout must outlast that.
        client = connect(options.engine, int(max(600, (options.timeout or 0) * 2 + 120)))
        built = find_images(client, matrix, selected, options.target)
        tester = Tester(client, matrix, access, options, emit=emit)
        for image in built:
            result = tester.run(image)
            path = result.save(options.results_dir)
            emit(TestFinished(result.variant, result.passed, result.seconds, path))
            # The shareable bundle beside it (`imagefactory share` prints how to send it).
            bundle = write_beside(result, options.results_dir, matrix.get(result.variant))
            emit(BundleWritten(result.variant, bundle))
            results.append(result)
    return results


test_variants.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
