"""Built image -> TestResult: the testinfra suite and the conv check, run in one container
that has the GPU devices, the host's video/render GIDs and the variant's env profile."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convcheck.vocabulary import DECLARED, FIXED, KNOWN, REGRESSION

from ..engine.base import ContainerEngine, ContainerInfo, EngineError
from ..engine.containers import TrackedContainer, session_labels
from ..engine.images import BuiltImage
from ..engine.runspec import GpuRunSpec, Mount
from ..errors import JobError
from ..events import Emit, discard
from ..host.devices import GpuAccess
from ..host.gpuinfo import SysfsError, decode_gfx, read_sysfs
from ..identity import MIOPEN_CACHE_LABEL, VARIANT_LABEL
from ..matrix.loader import Matrix, Profile, Variant, override_in
from ..paths import RESULTS_DIR
from ..safety import clean
from .events import CheckDone, TestLine, TestNote, Verdict
from .manifest import Manifest
from .manifest import collect as collect_manifest
from .results import Check, ConvCase, TestResult, profile_label

if TYPE_CHECKING:
    from .gpucode.isa import IsaReport

log = logging.getLogger(__name__)
CONV_JSON = "/tmp/imagefactory-convcheck.json"
# MIOpen's kernel cache and user find-db live in a volume per image and host GPU, kept
# between `imagefactory test` runs: a first run compiles for minutes, later runs reuse it.
MIOPEN_CACHE_DIR = "/var/cache/imagefactory-miopen"
MIOPEN_CACHE_ENV = {"MIOPEN_USER_DB_PATH": f"{MIOPEN_CACHE_DIR}/db",
                    "MIOPEN_CUSTOM_CACHE_DIR": f"{MIOPEN_CACHE_DIR}/kernels"}
KFD_NODES = Path("/sys/class/kfd/kfd/topology/nodes")


@dataclass(frozen=True)
class TestOptions:
    __test__ = False  # not a pytest test class

    profile: str | None = None  # None: the variant's default profile
    quick: bool = False
    timeout: float | None = None  # per conv case; None: convcheck's default
    cases: str | None = None  # conv case glob; None: all (of the quick set with quick)
    results_dir: Path = RESULTS_DIR
    engine: str | None = None  # the engine URL (None: DOCKER_HOST or the docker context)
    run_id: str | None = None
    cold: bool = False  # empty the MIOpen cache volume first (first-run behaviour)
    # Libraries whose GPU code must cover the variant's ISA (verify/gpucode/check.py).
    gpu_libraries: tuple[str, ...] = ("torch", "rocblas", "miopen")
    # A `build --target` stage image instead of the variant's image: the suite runs the
    # checks that apply to a stage (no user, labels or entrypoint yet; torch, torch's GPU
    # code and the conv check only where the stage has torch) and says what it skipped.
    target: str | None = None
    # The suite by hand (`test --suite-args`, verify/suite/plugin.py suite_args): these
    # pytest options, its output shown; the result goes to <results>/debug/.
    suite_args: tuple[str, ...] = ()


# -- host GPU ---------------------------------------------------------------------------

def host_gpu_archs(nodes: Path = KFD_NODES) -> list[str]:
    """The GPU ISAs the amdgpu driver reports, in node order; empty without one."""
    archs = []
    for props in sorted(nodes.glob("*/properties"), key=lambda p: _node_index(p.parent.name)):
        with contextlib.suppress(SysfsError, ValueError):
            for line in read_sysfs(props).split("\n"):
                key, _, value = line.partition(" ")
                if key == "gfx_target_version":
                    arch = decode_gfx(int(value))
                    if arch:
                        archs.append(arch)
    return archs


def _node_index(name: str) -> int:
    return int(name) if name.isdigit() else 1 << 30


# -- the run ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RunPlan:
    """What a run decides before its container starts."""

    profile: Profile | None
    env: dict[str, str]
    scope: str  # full, quick or subset
    cache: str | None  # the MIOpen cache volume
    mounts: tuple[Mount, ...]
    started: str  # when, for the result
    t0: float  # time.monotonic() then

    @property
    def profile_name(self) -> str | None:
        return self.profile.name if self.profile else None


@dataclass
class Findings:
    """What a run finds, step by step; the TestResult is made of it."""

    checks: list[Check] = field(default_factory=list)
    gpu_code: dict[str, Any] | None = None
    conv: tuple[ConvCase, ...] = ()
    conv_info: dict[str, Any] = field(default_factory=dict)
    manifest: Manifest | None = None
    suite_seconds: float = 0.0
    conv_seconds: float = 0.0


class Tester:
    """Tests variants' built images; one container per variant, always removed."""

    __test__ = False  # not a pytest test class

    def __init__(self, engine: ContainerEngine, matrix: Matrix, access: GpuAccess,
                 options: TestOptions, emit: Emit = discard) -> None:
        self.engine = engine
        self.matrix = matrix
        self.access = access
        self.options = options
        self.emit = emit  # the progress, as verify/events.py's events
        self.host_archs = host_gpu_archs()
        self.skipped: list[tuple[str, str]] = []  # (check, why) of the last stage run

    def echo(self, text: str) -> None:
        self.emit(TestLine(text))

    def has_torch(self, container: ContainerInfo) -> bool:
        """Whether python3 in the container finds a torch module (False without python3)."""
        code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"
        return self.engine.exec(container.id, ["python3", "-c", code]) == 0

    def conv_device(self, variant: Variant) -> str:
        return "cuda" if self.access.found and variant.rocm else "cpu"

    def run(self, built: BuiltImage) -> TestResult:
        """The image's tests in one container, removed however the run ends; the result
        counts every check (the container start and the conv check included)."""
        plan = self.plan(built)
        found = Findings()
        self.announce(built, plan)
        tracked = self.engine.run_container(self.container_spec(built, plan).container_spec(),
                                            role="test", run_id=self.options.run_id)
        container = self.enter(tracked, found)
        try:
            if container is not None:
                self.test_in(container, built, plan, found)
            else:
                self.echo("  manifest: none (the container did not start)")
            # One count, the one the result and the report carry: every check, the
            # container start and the conv check included.
            self.echo(f"  checks: {sum(c.passed for c in found.checks)}/"
                      f"{len(found.checks)} passed")
        finally:
            if container is not None:
                tracked.__exit__(None, None, None)
        self._echo_verdicts(found.conv)
        return self.result(built, plan, found)

    # -- the run's steps ----------------------------------------------------------------

    def plan(self, built: BuiltImage) -> RunPlan:
        """The profile, the environment and the MIOpen cache volume (made here, for a ROCm
        variant) the container runs with."""
        variant = built.variant
        profile = variant.profile(self.options.profile)  # ConfigError if not offered
        env = variant.runtime_env(profile.name if profile else None)
        started, t0 = _now(), time.monotonic()
        scope = "quick" if self.options.quick else "subset" if self.options.cases else "full"
        cache = self.miopen_cache(variant, built) if variant.rocm else None
        mounts: tuple[Mount, ...] = ()
        if cache:
            env = {**env, **MIOPEN_CACHE_ENV}
            mounts = (Mount(cache, MIOPEN_CACHE_DIR, volume=True),)
        return RunPlan(profile, env, scope, cache, mounts, started, t0)

    def announce(self, built: BuiltImage, plan: RunPlan) -> None:
        """What is tested, how, and whether the host's GPU is the one the variant is for."""
        from ..host.pick import isa_mismatch

        variant = built.variant
        devices = ", ".join(d.container for d in self.access.devices) or "none"
        self.echo(f"{variant.name}: testing {built.tag} ({built.short_id}), profile "
                  f"{profile_label(plan.profile_name)}, devices {devices}")
        note = isa_mismatch(self.matrix, variant, self.host_archs, plan.profile_name)
        if note:
            self.emit(TestNote(note))

    def container_spec(self, built: BuiltImage, plan: RunPlan) -> GpuRunSpec:
        """The same run spec `imagefactory run` execs: devices, group ids and ROCm's flags."""
        variant = built.variant
        return GpuRunSpec(
            built.image_id, labels={VARIANT_LABEL: variant.name},
            name=f"imagefactory-test-{variant.name}-{self.options.run_id or 'x'}",
            command=("sleep", "infinity"),  # via the image's ENTRYPOINT, which must pass it on
            env=plan.env,
            devices=tuple((d.host, d.container) for d in self.access.devices),
            group_ids=self.access.group_ids,
            network="none",  # nothing in the suite or the conv check needs a network
            mounts=plan.mounts,
        )

    def enter(self, tracked: TrackedContainer, found: Findings) -> ContainerInfo | None:
        """The started container, or None: either way the "container starts" check."""
        try:
            container = tracked.__enter__()
        except EngineError as exc:
            found.checks.append(Check("container starts", False, exc.reason))
            return None
        found.checks.append(Check("container starts", True, container.short_id))
        return container

    def test_in(self, container: ContainerInfo, built: BuiltImage, plan: RunPlan,
                found: Findings) -> None:
        """The suite, the GPU code audit, the manifest (after the audit: it carries the GPU
        code found), then the conv check, in the running container."""
        self.suite_step(container, built, plan, found)
        torch_here = not self.options.target or self.has_torch(container)
        libraries = tuple(lib for lib in self.options.gpu_libraries
                          if torch_here or lib != "torch")
        code_check, found.gpu_code = self.run_gpu_code(container, built.variant, plan.env,
                                                       built.tag, libraries)
        if code_check is not None:
            found.checks.append(code_check)
        found.manifest = self.write_manifest(container, built, found.gpu_code, plan.scope)
        if not torch_here:
            self.echo(f"  conv: skipped: no torch in stage '{self.options.target}' "
                      "(the conv check needs torch)")
        else:
            self.conv_step(container, built.variant, plan, found)

    def suite_step(self, container: ContainerInfo, built: BuiltImage, plan: RunPlan,
                   found: Findings) -> None:
        t = time.monotonic()
        found.checks += self.run_suite(container, built, plan.env)
        found.suite_seconds = time.monotonic() - t
        self._echo_checks(found.checks)
        self.echo(f"  suite: {found.suite_seconds:.1f} s")
        for name, why in self.skipped:
            self.echo(f"  skip  {name}: {why}")

    def conv_step(self, container: ContainerInfo, variant: Variant, plan: RunPlan,
                  found: Findings) -> None:
        t = time.monotonic()
        conv_check, found.conv, found.conv_info = self.run_conv(container, variant,
                                                                plan.profile)
        found.conv_seconds = time.monotonic() - t
        found.checks.append(conv_check)
        self.echo(f"  conv: {conv_check.detail} ({found.conv_seconds:.1f} s)")

    def result(self, built: BuiltImage, plan: RunPlan, found: Findings) -> TestResult:
        variant, conv_info, manifest = built.variant, found.conv_info, found.manifest
        # A case that fails as the variant declares (known_failures) does not fail the run.
        passed = (all(c.passed for c in found.checks)
                  and all(c.ok or c.known for c in found.conv))
        return TestResult(
            variant=variant.name, image_id=built.image_id, passed=passed,
            checks=tuple(found.checks), conv=found.conv,
            host=self.host_archs[0] if self.host_archs else None,
            profile=plan.profile_name, image_tag=built.tag,
            inputs_hash=built.inputs_hash, device=self.conv_device(variant),
            devices=tuple(f"{d.host}:{d.container}" for d in self.access.devices),
            quick=self.options.quick, scope=plan.scope,
            # As the image reports them: the conv check's, else the manifest's.
            torch=conv_info.get("torch") or (manifest.torch if manifest else None),
            hip=conv_info.get("hip") or (manifest.hip if manifest else None),
            rocm=manifest.rocm if manifest else None,
            declared_torch=variant.torch.version,
            gpu=conv_info.get("gpu"), conv_summary=conv_info.get("summary") or {},
            conv_verdicts=conv_info.get("verdicts") or {},
            started_at=plan.started, finished_at=_now(),
            seconds=round(time.monotonic() - plan.t0, 3),
            suite_seconds=round(found.suite_seconds, 3),
            conv_seconds=round(found.conv_seconds, 3),
            conv_works=conv_info.get("works") or {}, gpu_reset=conv_info.get("gpu_reset"),
            miopen_cache=plan.cache, cold=self.options.cold and plan.cache is not None,
            gpu_code=found.gpu_code,
        )

    def write_manifest(self, container: ContainerInfo, built: BuiltImage,
                       gpu_code: dict[str, Any] | None, scope: str) -> Manifest:
        """What the image holds, with the GPU code audit's inventory, beside the result
        (<results>/manifests/<variant>[.<scope>].json); one line says what it reports."""
        variant = built.variant
        manifest = collect_manifest(self.engine, container.id, variant.name, built.image_id,
                                    variant.torch.version, variant.rocm, gpu_code)
        path = manifest.save(self.options.results_dir, scope)
        libraries = (gpu_code or {}).get("inventory", {}).get("libraries", ())
        self.echo(f"  manifest: python {manifest.python}, torch {manifest.torch}"
                  + (f", hip {manifest.hip}" if manifest.hip else "")
                  + (f", rocm {manifest.rocm}" if manifest.rocm else "")
                  + f", {len(manifest.pip)} Python and {len(manifest.dpkg)} Debian packages"
                  + (f", GPU code of {len(libraries)} libraries" if gpu_code else "")
                  + f" -> {path}")
        for note in manifest.notes:
            # Shown, not hidden: tags and records carry the reported versions.
            self.emit(TestNote(note))
        return manifest

    def _echo_verdicts(self, conv: tuple[ConvCase, ...]) -> None:
        """Known failures, fixed cases and regressions, each marked by the renderer."""
        for c in conv:
            if c.verdict in (KNOWN, FIXED, REGRESSION):
                self.emit(Verdict(c))

    def miopen_cache(self, variant: Variant, built: BuiltImage) -> str | None:
        """The named volume for this image on this host's GPU, emptied first with --cold;
        None when the engine cannot make one (the run goes on with a cold cache)."""
        host = self.host_archs[0] if self.host_archs else "nogpu"
        name = f"imagefactory-miopen-{variant.name}-{built.short_id}-{host}"
        try:
            # Kept on purpose after the run (no run label: a run removes what carries its
            # own); a test session's label lets the suite find the volumes it made.
            labels = {MIOPEN_CACHE_LABEL: variant.name, **session_labels()}
            if self.engine.ensure_volume(name, labels, empty=self.options.cold):
                self.echo(f"  miopen cache: {name} emptied (--cold)")
        except EngineError as exc:
            self.echo(f"  miopen cache: no volume ({exc.reason}); "
                      "running cold")
            return None
        return name

    def _echo_checks(self, checks: list[Check]) -> None:
        for c in checks:
            self.emit(CheckDone(c))

    # -- the GPU code audit (issue 13) ---------------------------------------------------

    def run_gpu_code(self, container: ContainerInfo, variant: Variant, env: dict[str, str],
                     source: str, libraries: tuple[str, ...] | None = None
                     ) -> tuple[Check | None, dict[str, Any] | None]:
        """Do the libraries a ROCm variant needs carry code for the ISA it runs as (its
        gfx_targets, or gfx1030 under the override)? Read from the container's filesystem,
        streamed; no GPU needed. None for variants without ROCm."""
        if not variant.rocm or not variant.gfx_targets:
            return None, None
        from .gpucode.audit import audit_tar
        from .gpucode.check import check_inventory, runtime_isas
        from .gpucode.errors import GpuCodeError
        from .gpucode.reader import chunk_stream

        t = time.monotonic()
        try:
            isas = runtime_isas(variant.gfx_targets, env)
            inv = audit_tar(chunk_stream(self.engine.export_container(container.id)), source)
        except (GpuCodeError, EngineError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            check = Check("gpu code", False, f"could not audit the image: {reason}")
            self._echo_checks([check])
            return check, None
        result = check_inventory(inv, isas, self.options.gpu_libraries
                                 if libraries is None else libraries)
        seconds = round(time.monotonic() - t, 3)
        check = Check("gpu code", result.passed, result.detail)
        self._echo_checks([check])
        for line in (*result.summary, *result.notes):
            self.echo(clean(f"  gpu code: {line}"))
        self.echo(f"  gpu code: {inv.files_seen} files read in {seconds:.1f} s")
        out: dict[str, Any] = {"inventory": inv.brief(), "check": result.to_dict(),
                               "seconds": seconds}
        isa_checks = self.run_gpu_isa(container, variant, env, source,
                                      self.options.gpu_libraries if libraries is None
                                      else libraries)
        if isa_checks:
            out["isa"] = [r.to_dict() for r in isa_checks]
            failed = [r for r in isa_checks if r.status == "fail"]
            if failed:
                check = Check("gpu code", False, "; ".join(
                    [result.detail] * (not result.passed)
                    + [f"{r.summary()}: {'; '.join(r.failures())}" for r in failed]))
        return check, out

    def run_gpu_isa(self, container: ContainerInfo, variant: Variant, env: dict[str, str],
                    source: str, libraries: tuple[str, ...] = ()) -> list[IsaReport]:
        """Under the override, can the real chips the variant is for (gfx1010...) decode the
        gfx1030 code they will load? One more export, streamed; the disassembly runs on
        this host (Debian's llvm-objdump). Skipped, never passed, without llvm-objdump.
        Only the `libraries` the variant needs (those the code check covers; all when
        empty): a library the image carries and torch never loads is not the card's
        problem."""
        override = override_in(env)
        from .gpucode import codeobjects
        from .gpucode.errors import GpuCodeError
        from .gpucode.isa import CHIPS, loaded_isa, run_check, wanted
        from .gpucode.reader import chunk_stream

        chips = [t.split(":")[0] for t in variant.gfx_targets if t.split(":")[0] in CHIPS]
        reports = []
        for chip in dict.fromkeys(chips) if override else ():
            problems: list[str] = []
            try:
                cos = codeobjects.in_tar(
                    chunk_stream(self.engine.export_container(container.id)),
                    wanted(loaded_isa(chip, override)), problems, source)
                if libraries:
                    cos = (co for co in cos if co.library in libraries)
                report = run_check(cos, source, chip, override, problems)
            except (GpuCodeError, EngineError) as exc:
                self.echo(clean(f"  gpu isa: {chip}: could not read the image: {exc}"))
                continue
            for line in report.lines():
                self.echo(clean(f"  gpu isa: {line}"))
            reports.append(report)
        return reports

    # -- the testinfra suite ------------------------------------------------------------

    def facts(self, container: ContainerInfo, built: BuiltImage, env: dict[str, str]
              ) -> dict[str, Any]:
        """What the suite checks the container against (imagefactory.verify.suite.plugin)."""
        image = self.engine.inspect_image(built.image_id)
        if image is None:
            raise JobError(f"{built.variant.name}: image {built.short_id} vanished from the "
                           "engine during its test")
        variant = built.variant
        return {
            "variant": variant.name,
            "rocm": variant.rocm,
            "expect": {
                "python": variant.expect.python, "torch": variant.expect.torch,
                "hip": variant.expect.hip, "files": list(variant.expect.files),
                "env": dict(variant.expect.env),
            },
            "env": env,
            "devices": [d.container for d in self.access.devices],
            "group_ids": list(self.access.group_ids),
            "labels": dict(image.labels),
            "entrypoint": list(image.entrypoint),
            "stage": self.options.target,
        }

    def run_suite(self, container: ContainerInfo, built: BuiltImage, env: dict[str, str]
                  ) -> list[Check]:
        """The testinfra suite, in this process, its `host` execing through this run's
        engine (verify/suite/backend.py): one Check per test that ran."""
        from .suite.backend import engine_host
        from .suite.plugin import run_suite

        facts = self.facts(container, built, env)
        run = run_suite(facts, engine_host(self.engine, container.id), self.options.suite_args)
        log.debug("suite output:\n%s", run.output)
        if run.exit_code in (2, 3, 4):  # collection errors, internal error, usage error
            tail = run.output.strip()[-300:]
            raise JobError(f"the testinfra suite could not run: {tail}")
        outcomes, rc = run.outcomes, run.exit_code
        checks = [Check(o["name"], o["passed"], o["detail"]) for o in outcomes
                  if not o.get("skipped")]
        if self.options.target:  # a stage skips checks for a reason worth saying
            self.skipped = [(o["name"], o["detail"]) for o in outcomes if o.get("skipped")
                            and not o["detail"].startswith("got empty parameter set")]
        if rc not in (0, 1) or not outcomes:  # 1: some test failed, reported above
            checks.append(Check("testinfra suite", False, f"pytest exited {rc} "
                                "(internal error or nothing collected)"))
        return checks

    # -- the conv check -----------------------------------------------------------------

    def conv_command(self, variant: Variant, profile_name: str | None) -> list[str]:
        cmd = ["python3", "-m", "convcheck", "--json", CONV_JSON,
               "--device", self.conv_device(variant)]
        if profile_name:
            cmd += ["--profile", profile_name]
        if self.options.quick:
            cmd.append("--quick")
        if self.options.timeout is not None:
            cmd += ["--timeout", f"{self.options.timeout:g}"]
        if self.options.cases:
            cmd += ["--cases", self.options.cases]
        return cmd

    def run_conv(self, container: ContainerInfo, variant: Variant, profile: Any
                 ) -> tuple[Check, tuple[ConvCase, ...], dict[str, Any]]:
        try:
            return self._run_conv(container, variant, profile)
        except (EngineError, ValueError) as exc:
            # The engine or the container went away mid-run, or the JSON is not convcheck's.
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return Check("conv check", False, f"could not run: {reason}"), (), {}

    def _run_conv(self, container: ContainerInfo, variant: Variant, profile: Any
                  ) -> tuple[Check, tuple[ConvCase, ...], dict[str, Any]]:
        cmd = self.conv_command(variant, profile.name if profile else None)
        self.echo(f"  conv: {' '.join(cmd)}")
        tail: list[str] = []
        lines = LineSplitter()

        def on_output(chunk: bytes) -> None:
            nonlocal tail
            for line in lines.feed(chunk):
                line = clean(line)  # what the image printed: escapes, credentials
                self.echo(f"  | {line}")
                tail = [*tail[-9:], line]

        rc = self.engine.exec(container.id, cmd, on_output)
        for line in map(clean, lines.close()):
            self.echo(f"  | {line}")
            tail = [*tail[-9:], line]
        report = self.engine.read_file(container.id, CONV_JSON)
        if report is None:
            return (Check("conv check", False, f"convcheck exited {rc} without writing "
                          f"{CONV_JSON}: {' | '.join(tail[-3:])}"), (), {})
        data = json.loads(report)
        from .known import annotate, judge, passes
        from .known import counts as verdict_counts

        raw = [c for c in data.get("cases", ()) if isinstance(c, dict)]
        verdicts = judge(variant, [(str(c.get("case")), str(c.get("status"))) for c in raw],
                         profile.name if profile else None)
        cases = tuple(ConvCase.from_dict(annotate(c, v)) for c, v in zip(raw, verdicts,
                                                                         strict=True))
        data["verdicts"] = verdict_counts(verdicts)
        summary = data.get("summary") or {}
        counts = ", ".join(f"{n} {k}" for k, n in sorted(summary.items())) or "no cases"
        # convcheck exits 1 when a case failed: known failures alone do not fail the check.
        ok = (rc == 0 or (rc == 1 and passes(verdicts))) and bool(cases) and passes(verdicts)
        detail = counts + "".join(f", {n} {k}" for k, n in data["verdicts"].items()
                                  if k in DECLARED)
        if rc != 0:  # with every case ok, the reason is only in its output
            detail += f"; convcheck exited {rc}" + (
                f": {' | '.join(tail[-3:])}" if all(c.ok for c in cases) else "")
        return Check("conv check", ok, detail), cases, data


class LineSplitter:
    """Bytes as they come -> whole decoded lines."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[str]:
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]

    def close(self) -> list[str]:
        rest, self._buf = self._buf, b""
        return [rest.decode("utf-8", "replace")] if rest else []


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def find_images(engine: ContainerEngine, matrix: Matrix, variants: tuple[Variant, ...],
                target: str | None = None) -> list[BuiltImage]:
    """Every variant's built image (its `target` stage image, tagged
    `<repository>:<variant>-<target>`), or one error naming the exact build command."""
    from ..engine.images import find_built

    found = [(v, find_built(engine, matrix, v, target)) for v in variants]
    missing = [v.name for v, b in found if b is None]
    if missing:
        what = f"no '{target}' stage image" if target else "no built image"
        option = f" --target {target}" if target else ""
        raise JobError(f"{what} for {', '.join(missing)}: run "
                       f"`imagefactory build {' '.join(missing)}{option}` first")
    return [b for _, b in found if b is not None]

