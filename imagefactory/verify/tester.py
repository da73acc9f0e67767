"""Built image -> TestResult: the testinfra suite and the conv check, run in one container
that has the GPU devices, the host's video/render GIDs and the variant's env profile."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.containers import TrackedContainer
from ..engine.images import BuiltImage
from ..errors import JobError
from ..host.devices import GpuAccess
from ..host.gpuinfo import SysfsError, decode_gfx, read_sysfs
from ..matrix.loader import Matrix, Variant
from .results import Check, ConvCase, TestResult, profile_label

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

SUITE_DIR = Path(__file__).resolve().parent / "suite"
CONV_JSON = "/tmp/imagefactory-convcheck.json"
# MIOpen's kernel cache and user find-db live in a volume per image and host GPU, kept
# between `imagefactory test` runs: a first run compiles for minutes, later runs reuse it.
MIOPEN_CACHE_DIR = "/var/cache/imagefactory-miopen"
MIOPEN_CACHE_ENV = {"MIOPEN_USER_DB_PATH": f"{MIOPEN_CACHE_DIR}/db",
                    "MIOPEN_CUSTOM_CACHE_DIR": f"{MIOPEN_CACHE_DIR}/kernels"}
MIOPEN_CACHE_LABEL = "io.imagefactory.miopen-cache"
KFD_NODES = Path("/sys/class/kfd/kfd/topology/nodes")


@dataclass(frozen=True)
class TestOptions:
    __test__ = False  # not a pytest test class

    profile: str | None = None  # None: the variant's default profile
    quick: bool = False
    timeout: float | None = None  # per conv case; None: convcheck's default
    cases: str | None = None  # conv case glob; None: all (of the quick set with quick)
    results_dir: Path = Path("results")
    engine: str | None = None  # the engine URL, for testinfra's docker CLI
    run_id: str | None = None
    cold: bool = False  # empty the MIOpen cache volume first (first-run behaviour)
    # Libraries whose GPU code must cover the variant's ISA (verify/gpucode/check.py).
    gpu_libraries: tuple[str, ...] = ("torch", "rocblas", "miopen")
    # A `build --target` stage image instead of the variant's image: the suite runs the
    # checks that apply to a stage (no user, labels or entrypoint yet; torch, torch's GPU
    # code and the conv check only where the stage has torch) and says what it skipped.
    target: str | None = None


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

Echo = Callable[[str], None]
_COLOURS = {"yellow": 33, "cyan": 36, "red": 31}


class Tester:
    """Tests variants' built images; one container per variant, always removed."""

    __test__ = False  # not a pytest test class

    def __init__(self, client: docker.DockerClient, matrix: Matrix, access: GpuAccess,
                 options: TestOptions, echo: Echo = print) -> None:
        self.client = client
        self.matrix = matrix
        self.access = access
        self.options = options
        self.echo = echo
        self.host_archs = host_gpu_archs()
        self.skipped: list[tuple[str, str]] = []  # (check, why) of the last stage run

    def has_torch(self, container: Container) -> bool:
        """Whether python3 in the container finds a torch module (False without python3)."""
        code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"
        exec_id = self.client.api.exec_create(container.id, ["python3", "-c", code])["Id"]
        self.client.api.exec_start(exec_id)
        return bool(self.client.api.exec_inspect(exec_id)["ExitCode"] == 0)

    def conv_device(self, variant: Variant) -> str:
        return "cuda" if self.access.found and variant.rocm else "cpu"

    def run(self, built: BuiltImage) -> TestResult:
        variant = built.variant
        profile = variant.profile(self.options.profile)  # ConfigError if not offered
        env = variant.runtime_env(profile.name if profile else None)
        started, t0 = _now(), time.monotonic()
        checks: list[Check] = []
        gpu_code: dict[str, Any] | None = None
        conv: tuple[ConvCase, ...] = ()
        conv_info: dict[str, Any] = {}
        suite_seconds = conv_seconds = 0.0
        devices = ", ".join(d.container for d in self.access.devices) or "none"
        cache = self.miopen_cache(variant, built) if variant.rocm else None
        volumes = {}
        if cache:
            env = {**env, **MIOPEN_CACHE_ENV}
            volumes = {cache: {"bind": MIOPEN_CACHE_DIR, "mode": "rw"}}
        self.echo(f"{variant.name}: testing {built.tag} ({built.short_id}), profile "
                  f"{profile_label(profile.name if profile else None)}, devices {devices}")
        from ..host.pick import isa_mismatch

        note = isa_mismatch(self.matrix, variant, self.host_archs,
                            profile.name if profile else None)
        if note:
            self.echo(f"  note: {note}")
        tracked = TrackedContainer(
            self.client, built.image_id, role="test", run_id=self.options.run_id,
            labels={"io.imagefactory.variant": variant.name},
            name=f"imagefactory-test-{variant.name}-{self.options.run_id or 'x'}",
            command=["sleep", "infinity"],  # via the image's ENTRYPOINT, which must pass it on
            environment=env,
            devices=[d.docker_spec for d in self.access.devices],
            group_add=[str(g) for g in self.access.group_ids],
            # What ROCm needs (design.md "Running"); --ipc=host makes --shm-size moot.
            security_opt=["seccomp=unconfined"],
            ipc_mode="host",
            network_mode="none",  # nothing in the suite or the conv check needs a network
            volumes=volumes,
        )
        from docker.errors import APIError

        try:
            container = tracked.__enter__()
        except APIError as exc:
            checks.append(Check("container starts", False, _api_reason(exc)))
            container = None
        try:
            if container is not None:
                checks.append(Check("container starts", True, container.short_id))
                t = time.monotonic()
                checks += self.run_suite(container, built, env)
                suite_seconds = time.monotonic() - t
                self._echo_checks(checks)
                self.echo(f"  suite: {suite_seconds:.1f} s")
                for name, why in self.skipped:
                    self.echo(f"  skip  {name}: {why}")
                torch_here = not self.options.target or self.has_torch(container)
                libraries = tuple(lib for lib in self.options.gpu_libraries
                                  if torch_here or lib != "torch")
                code_check, gpu_code = self.run_gpu_code(container, variant, env, built.tag,
                                                         libraries)
                if code_check is not None:
                    checks.append(code_check)
                if not torch_here:
                    self.echo(f"  conv: skipped: no torch in stage '{self.options.target}' "
                              "(the conv check needs torch)")
                else:
                    t = time.monotonic()
                    conv_check, conv, conv_info = self.run_conv(container, variant, profile)
                    conv_seconds = time.monotonic() - t
                    checks.append(conv_check)
                    self.echo(f"  conv: {conv_check.detail} ({conv_seconds:.1f} s)")
                reported = conv_info.get("torch")
                if reported and reported != variant.torch.version:
                    # Shown, not hidden: tags and records carry the reported version.
                    self.echo(f"  note: declared torch {variant.torch.version}, the image "
                              f"reports {reported}")
            # One count, the one the result and the report carry: every check, the
            # container start and the conv check included.
            self.echo(f"  checks: {sum(c.passed for c in checks)}/{len(checks)} passed")
        finally:
            if container is not None:
                tracked.__exit__(None, None, None)
        # A case that fails as the variant declares (known_failures) does not fail the run.
        passed = all(c.passed for c in checks) and all(c.ok or c.known for c in conv)
        self._echo_verdicts(conv)
        return TestResult(
            variant=variant.name, image_id=built.image_id, passed=passed,
            checks=tuple(checks), conv=conv,
            host=self.host_archs[0] if self.host_archs else None,
            profile=profile.name if profile else None, image_tag=built.tag,
            inputs_hash=built.inputs_hash, device=self.conv_device(variant),
            devices=tuple(f"{d.host}:{d.container}" for d in self.access.devices),
            quick=self.options.quick,
            scope="quick" if self.options.quick else "subset" if self.options.cases else "full",
            torch=conv_info.get("torch"), hip=conv_info.get("hip"),
            gpu=conv_info.get("gpu"), conv_summary=conv_info.get("summary") or {},
            conv_verdicts=conv_info.get("verdicts") or {},
            started_at=started, finished_at=_now(), seconds=round(time.monotonic() - t0, 3),
            suite_seconds=round(suite_seconds, 3), conv_seconds=round(conv_seconds, 3),
            conv_works=conv_info.get("works") or {}, gpu_reset=conv_info.get("gpu_reset"),
            miopen_cache=cache, cold=self.options.cold and cache is not None,
            gpu_code=gpu_code,
        )

    def _echo_verdicts(self, conv: tuple[ConvCase, ...]) -> None:
        """Known failures and fixed cases, each in its own mark and colour, apart from
        regressions (which the failure summary names)."""
        marks = {"known": ("known", "yellow"), "fixed": ("FIXED", "cyan"),
                 "regression": ("REGR ", "red")}
        for c in conv:
            if c.verdict in marks:
                mark, colour = marks[c.verdict]
                why = f" ({c.known_reason}; {c.known_source})" if c.known_reason else ""
                self.echo(f"  {self.style(mark, colour)}  {c.case}: {c.status}{why}")

    @staticmethod
    def style(text: str, colour: str) -> str:
        # click.echo drops the colour codes when the output is not a terminal.
        return f"\x1b[{_COLOURS[colour]}m{text}\x1b[0m"
    def miopen_cache(self, variant: Variant, built: BuiltImage) -> str | None:
        """The named volume for this image on this host's GPU, emptied first with --cold;
        None when the engine cannot make one (the run goes on with a cold cache)."""
        from docker.errors import APIError, NotFound

        host = self.host_archs[0] if self.host_archs else "nogpu"
        name = (f"imagefactory-miopen-{variant.name}-"
                f"{built.image_id.removeprefix('sha256:')[:12]}-{host}")
        try:
            if self.options.cold:
                with contextlib.suppress(NotFound):
                    self.client.volumes.get(name).remove(force=True)
                    self.echo(f"  miopen cache: {name} emptied (--cold)")
            try:
                self.client.volumes.get(name)
            except NotFound:
                self.client.volumes.create(name, labels={MIOPEN_CACHE_LABEL: variant.name})
        except APIError as exc:
            self.echo(f"  miopen cache: no volume ({_api_reason(exc)}); running cold")
            return None
        return name

    def _echo_checks(self, checks: list[Check]) -> None:
        for c in checks:
            self.echo(f"  {'ok  ' if c.passed else 'FAIL'}  {c.name}"
                      + ("" if c.passed or not c.detail else f": {c.detail}"))

    # -- the GPU code audit (issue 13) ---------------------------------------------------

    def run_gpu_code(self, container: Container, variant: Variant, env: dict[str, str],
                     source: str, libraries: tuple[str, ...] | None = None
                     ) -> tuple[Check | None, dict[str, Any] | None]:
        """Do the libraries a ROCm variant needs carry code for the ISA it runs as (its
        gfx_targets, or gfx1030 under the override)? Read from the container's filesystem,
        streamed; no GPU needed. None for variants without ROCm."""
        if not variant.rocm or not variant.gfx_targets:
            return None, None
        from docker.errors import DockerException
        from requests.exceptions import RequestException

        from ..engine.export import container_filesystem
        from .gpucode.audit import audit_tar
        from .gpucode.check import check_inventory, runtime_isas
        from .gpucode.errors import GpuCodeError
        from .gpucode.reader import chunk_stream

        t = time.monotonic()
        try:
            isas = runtime_isas(variant.gfx_targets, env)
            inv = audit_tar(chunk_stream(container_filesystem(container)), source)
        except (GpuCodeError, DockerException, RequestException) as exc:
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
            self.echo(f"  gpu code: {line}")
        self.echo(f"  gpu code: {inv.files_seen} files read in {seconds:.1f} s")
        return check, {"inventory": inv.brief(), "check": result.to_dict(), "seconds": seconds}

    # -- the testinfra suite ------------------------------------------------------------

    def facts(self, container: Container, built: BuiltImage, env: dict[str, str]
              ) -> dict[str, Any]:
        """What the suite checks the container against (imagefactory.verify.suite.plugin)."""
        image = self.client.images.get(built.image_id)
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
            "labels": image.labels or {},
            "entrypoint": image.attrs.get("Config", {}).get("Entrypoint") or [],
            "stage": self.options.target,
        }

    def run_suite(self, container: Container, built: BuiltImage, env: dict[str, str]
                  ) -> list[Check]:
        if shutil.which("docker") is None:
            return [Check("testinfra suite", False,
                          "the docker CLI is not installed (testinfra's docker backend runs "
                          "`docker exec`)")]
        facts = self.facts(container, built, env)
        outcomes, rc = run_suite_inprocess(container.id, facts, self.options.engine)
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

    def run_conv(self, container: Container, variant: Variant, profile: Any
                 ) -> tuple[Check, tuple[ConvCase, ...], dict[str, Any]]:
        from docker.errors import DockerException
        from requests.exceptions import RequestException

        try:
            return self._run_conv(container, variant, profile)
        except (DockerException, RequestException, ValueError) as exc:
            # The engine or the container went away mid-run, or the JSON is not convcheck's.
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return Check("conv check", False, f"could not run: {reason}"), (), {}

    def _run_conv(self, container: Container, variant: Variant, profile: Any
                  ) -> tuple[Check, tuple[ConvCase, ...], dict[str, Any]]:
        cmd = self.conv_command(variant, profile.name if profile else None)
        self.echo(f"  conv: {' '.join(cmd)}")
        api = self.client.api
        exec_id = api.exec_create(container.id, cmd, stdout=True, stderr=True)["Id"]
        tail: list[str] = []
        for line in _lines(api.exec_start(exec_id, stream=True)):
            self.echo(f"  | {line}")
            tail = [*tail[-9:], line]
        rc = api.exec_inspect(exec_id)["ExitCode"]
        report = _read_file(container, CONV_JSON)
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
                                  if k in ("known", "fixed"))
        if rc != 0:  # with every case ok, the reason is only in its output
            detail += f"; convcheck exited {rc}" + (
                f": {' | '.join(tail[-3:])}" if all(c.ok for c in cases) else "")
        return Check("conv check", ok, detail), cases, data


def run_suite_inprocess(container_id: str, facts: dict[str, Any], engine: str | None
                        ) -> tuple[list[dict[str, Any]], int]:
    """pytest.main in this process: ~0.5 s less than a subprocess (no second interpreter
    importing pytest and testinfra). Returns the outcomes and pytest's exit code."""
    import pytest

    from .suite.plugin import SuitePlugin

    plugin = SuitePlugin(facts)
    args = [str(SUITE_DIR), f"--hosts=docker://{container_id}",
            "-c", str(SUITE_DIR / "pytest.ini"), "--rootdir", str(SUITE_DIR),
            "--import-mode=importlib", "-p", "testinfra.plugin", "-p", "no:cacheprovider",
            "-p", "no:terminal"]
    out = io.StringIO()
    with (_suite_environment(engine), contextlib.redirect_stdout(out),
          contextlib.redirect_stderr(out)):
        rc = int(pytest.main(args, plugins=[plugin]))
    if rc == pytest.ExitCode.INTERRUPTED:
        raise KeyboardInterrupt  # pytest swallows Ctrl-C; the run must stop and clean up
    if rc in (pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
        raise JobError(f"the testinfra suite could not run: {out.getvalue().strip()[-300:]}")
    return plugin.outcomes, rc


@contextlib.contextmanager
def _suite_environment(engine: str | None) -> Iterator[None]:
    """Isolate the in-process pytest from the user's: no PYTEST_ADDOPTS, no auto-loaded
    plugins (xdist, cov, ... would change how the suite runs; testinfra is loaded by name).
    testinfra's docker backend runs the docker CLI: point it at the same engine."""
    changes: dict[str, str | None] = {"PYTEST_ADDOPTS": None, "PYTEST_PLUGINS": None,
                                      "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    if engine:
        changes["DOCKER_HOST"] = engine
    saved = {k: os.environ.get(k) for k in changes}
    try:
        for key, value in changes.items():
            _setenv(key, value)
        yield
    finally:
        for key, value in saved.items():
            _setenv(key, value)


def _setenv(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    buf = b""
    for chunk in chunks:
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace").rstrip("\r")
    if buf:
        yield buf.decode("utf-8", "replace")


def _read_file(container: Container, path: str) -> bytes | None:
    """A file's content, copied out of the container; None when it is not there."""
    from docker.errors import NotFound

    try:
        stream, _ = container.get_archive(path)
    except NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.next()
        f = tar.extractfile(member) if member else None
        return f.read() if f else None


def _api_reason(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc).splitlines()[0]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def find_images(client: docker.DockerClient, matrix: Matrix, variants: tuple[Variant, ...],
                target: str | None = None) -> list[BuiltImage]:
    """Every variant's built image (its `target` stage image, tagged
    `<repository>:<variant>-<target>`), or one error naming the exact build command."""
    from ..engine.images import find_built

    if target is None:
        found = [(v, find_built(client, matrix, v)) for v in variants]
    else:
        found = [(v, _find_stage(client, matrix, v, target)) for v in variants]
    missing = [v.name for v, b in found if b is None]
    if missing:
        what = f"no '{target}' stage image" if target else "no built image"
        option = f" --target {target}" if target else ""
        raise JobError(f"{what} for {', '.join(missing)}: run "
                       f"`imagefactory build {' '.join(missing)}{option}` first")
    return [b for _, b in found if b is not None]


def _find_stage(client: docker.DockerClient, matrix: Matrix, variant: Variant,
                target: str) -> BuiltImage | None:
    from docker.errors import ImageNotFound

    from ..render.renderer import HASH_LABEL

    tag = f"{matrix.repository}:{variant.name}-{target}"
    try:
        image = client.images.get(tag)
    except ImageNotFound:
        return None
    return BuiltImage(variant, str(image.id), tag, (image.labels or {}).get(HASH_LABEL))
