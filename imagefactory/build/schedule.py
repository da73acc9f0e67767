"""Which variants to build, in what order, how many at once, and on which engine.

Ordering: a variant that builds FROM another variant (`base_variant`) comes after it; the
bases of requested variants join the plan (they are skipped when up to date), so building a
dependant alone never uses a stale or missing base.

Engines: a dependant builds on the engine its base was built (or found up to date) on,
because its FROM names an image that exists only in that engine; we never copy images
between engines. A variant with an external base goes to an engine that already holds it up
to date (so it is skipped there), else to the engine with the fewest running builds.

Parallelism: at most `jobs` builds run at once over all engines. Workers are daemon threads:
on Ctrl-C the main thread sets `cancel` (no worker tags after that) and leaves; the process
exit closes the build connections, which makes each engine stop its build.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence

from ..errors import ConfigError
from ..matrix.loader import Matrix, Variant
from .builder import BLOCKED, FAILED, BuildResult

RunFn = Callable[[Variant, str, "BuildResult | None"], BuildResult]
ProbeFn = Callable[[Variant, str], bool]


def plan(matrix: Matrix, requested: Sequence[Variant]) -> list[Variant]:
    """`requested` plus the base variants they need, bases first, else in matrix order."""
    wanted: set[str] = set()
    for v in requested:
        name: str | None = v.name
        while name is not None and name not in wanted:
            wanted.add(name)
            name = matrix.get(name).base_variant
    order: list[Variant] = []
    placed: set[str] = set()
    remaining = [v for v in matrix.variants if v.name in wanted]
    while remaining:
        ready = [v for v in remaining if v.base_variant is None or v.base_variant in placed]
        if not ready:  # config rejects cycles; this guards hand-made matrices
            names = ", ".join(v.name for v in remaining)
            raise ConfigError(str(matrix.path), None, "base_variant",
                              f"base_variant cycle among: {names}")
        for v in ready:
            order.append(v)
            placed.add(v.name)
        remaining = [v for v in remaining if v.name not in placed]
    return order


def blocked(variant: Variant, base: BuildResult, engine: str) -> BuildResult:
    return BuildResult(variant.name, engine, BLOCKED,
                       error=f"not built: its base variant '{base.variant}' {base.status}")


class Scheduler:
    """Runs `run(variant, engine, base_result)` for each planned variant, in worker threads."""

    def __init__(self, order: Sequence[Variant], engines: Sequence[str], jobs: int,
                 run: RunFn, probe: ProbeFn | None = None,
                 on_blocked: Callable[[BuildResult], None] | None = None,
                 cancel: threading.Event | None = None) -> None:
        if not engines:
            raise ValueError("at least one engine is needed")
        self.order = list(order)
        self.engines = list(dict.fromkeys(engines))
        self.jobs = max(1, jobs)
        self._run = run
        self._probe = probe
        self._on_blocked = on_blocked
        self.cancel = cancel or threading.Event()
        self.results: dict[str, BuildResult] = {}
        self.max_running = 0  # for tests and reports: the parallelism reached
        self.grace = 3.0  # seconds Ctrl-C waits for builds to clean up (_drain)

    def _engine_for(self, variant: Variant, running: dict[str, str],
                    assigned: dict[str, int]) -> str:
        if variant.base_variant in self.results:
            return self.results[variant.base_variant].engine
        candidates = self.engines
        if self._probe is not None and len(self.engines) > 1:
            current = [e for e in self.engines if self._probe(variant, e)]
            candidates = current or self.engines
        load = {e: sum(1 for r in running.values() if r == e) for e in candidates}
        return min(candidates, key=lambda e: (load[e], assigned[e], self.engines.index(e)))

    def run(self) -> list[BuildResult]:
        """Build everything; results in plan order. Ctrl-C: sets `cancel` and re-raises."""
        done: queue.Queue[BuildResult] = queue.Queue()
        pending = list(self.order)
        running: dict[str, str] = {}  # variant -> engine
        assigned = dict.fromkeys(self.engines, 0)
        names = {v.name for v in self.order}
        try:
            while pending or running:
                for v in list(pending):
                    if len(running) >= self.jobs:
                        break
                    base_name = v.base_variant if v.base_variant in names else None
                    if base_name is not None and base_name not in self.results:
                        continue  # its base is still building
                    pending.remove(v)
                    base = self.results.get(base_name) if base_name else None
                    if base is not None and not base.ok:
                        self.results[v.name] = blocked(v, base, base.engine)
                        if self._on_blocked:
                            self._on_blocked(self.results[v.name])
                        continue
                    engine = self._engine_for(v, running, assigned)
                    running[v.name] = engine
                    assigned[engine] += 1
                    self.max_running = max(self.max_running, len(running))
                    threading.Thread(target=self._work, args=(v, engine, base, done),
                                     name=f"build-{v.name}", daemon=True).start()
                if not running:
                    continue
                while True:
                    try:
                        # A timeout keeps the main thread responsive to Ctrl-C.
                        result = done.get(timeout=0.2)
                        break
                    except queue.Empty:
                        continue
                running.pop(result.variant, None)
                self.results[result.variant] = result
        except KeyboardInterrupt:
            self.cancel.set()
            self._drain(done, running)
            raise
        return [self.results[v.name] for v in self.order]

    def _drain(self, done: queue.Queue[BuildResult], running: dict[str, str]) -> None:
        """After Ctrl-C: give builds that can end now (a BuildKit client stopped, a build
        that just finished and is not to be tagged) a moment to clean up after themselves.
        A classic build still in a step ends when the process exits: the engine stops it
        once the connection closes."""
        deadline = time.monotonic() + self.grace
        while running and time.monotonic() < deadline:
            try:
                result = done.get(timeout=0.1)
            except queue.Empty:
                continue
            running.pop(result.variant, None)
            self.results[result.variant] = result

    def _work(self, variant: Variant, engine: str, base: BuildResult | None,
              done: queue.Queue[BuildResult]) -> None:
        try:
            result = self._run(variant, engine, base)
        except Exception as exc:  # a worker must always report, or the run never ends
            result = BuildResult(variant.name, engine, FAILED,
                                 error=f"{type(exc).__name__}: {exc}")
        done.put(result)
