"""The in-image conv check (dockerfiles/files/python/convcheck).

Unit tests of its pure logic run on the host without torch. The integration tests run the
real program inside the real `cpu` image (nothing mounted) and make every failure class
happen for real through the test-only fault hook (IMAGEFACTORY_CONVCHECK_FAULTS)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYDIR = REPO / "dockerfiles" / "files" / "python"
sys.path.insert(0, str(PYDIR))

from convcheck import cases, faults  # noqa: E402
from convcheck.classify import RESULT_MARK, classify, find_signature  # noqa: E402
from convcheck.profiles import PROFILES  # noqa: E402

JSON_MARK = "===CONVCHECK-JSON==="
TEST_LABEL = "io.imagefactory.test"


# ---------------------------------------------------------------- running inside the image
def run_in_image(image: str, script: str, env: dict[str, str] | None = None,
                 timeout: float = 300) -> subprocess.CompletedProcess:
    """`docker run --rm` a shell script in the image; asserts no container is left behind."""
    name = f"convcheck-test-{uuid.uuid4().hex[:12]}"
    cmd = ["docker", "run", "--rm", "--network", "none", "--name", name,
           "--label", f"{TEST_LABEL}={name}"]
    for key, value in (env or {}).items():
        cmd += ["-e", f"{key}={value}"]
    cmd += [image, "bash", "-c", script]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={TEST_LABEL}={name}"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert not left, f"container {name} left behind"
    return proc


def convcheck_in_image(image: str, args: str, env: dict[str, str] | None = None,
                       after: str = "") -> tuple[int, str, dict]:
    """(exit status, stdout, JSON report) of `python3 -m convcheck ARGS` in the image."""
    script = (f"python3 -m convcheck {args} --json /tmp/report.json; rc=$?; {after}"
              f"echo {JSON_MARK}; cat /tmp/report.json; exit $rc")
    proc = run_in_image(image, script, env)
    out, _, report = proc.stdout.partition(JSON_MARK)
    assert report.strip(), f"no JSON report\n{proc.stdout}\n{proc.stderr}"
    return proc.returncode, out, json.loads(report)


# ---------------------------------------------------------------- pure logic, on the host
@pytest.mark.parametrize(
    ("stderr", "cls"),
    [
        ("...aborting with error : HSA_STATUS_ERROR_MEMORY_APERTURE_VIOLATION: The agent",
         "aperture-violation"),
        ("Memory access fault by GPU node-1 (Agent handle: 0x1) on address 0x7f",
         "memory-fault"),
        ("error : HSA_STATUS_ERROR_MEMORY_FAULT", "memory-fault"),
        ("RuntimeError: HIP error: invalid device function", "no-kernel"),
        ("hipErrorNoBinaryForGpu: Unable to find code object for all current devices!",
         "no-kernel"),
        ("error : HSA_STATUS_ERROR_INVALID_ISA: The instruction set", "invalid-isa"),
        ("RuntimeError: miopenStatusUnknownError", "miopen-error"),
        # most specific wins when a runtime prints several
        ("Memory access fault by GPU node-1\nHSA_STATUS_ERROR_MEMORY_APERTURE_VIOLATION",
         "aperture-violation"),
        # hipBLASLt without gfx101X code (issue 27: TheRock issues 7609 and 6467)
        ('\nrocblaslt error: Cannot read "TensileLibrary_lazy_gfx1010.dat": No such file or '
         "directory\nRuntimeError: CUDA error: HIPBLAS_STATUS_INVALID_VALUE when calling "
         "`hipblasLtMatmulAlgoGetHeuristic`", "no-kernel"),
        ("rocblaslt error: Cannot read /venv/lib/python3.11/site-packages/_rocm_sdk_libraries/"
         "lib/hipblaslt/library/TensileLibrary_lazy_gfx1010.dat: No such file or directory",
         "no-kernel"),
        ("hipModuleLoad failed: Kernels.so-000-gfx1010.hsaco error: file not found",
         "no-kernel"),
    ],
)
def test_signatures_decide_the_class_of_a_failed_child(stderr: str, cls: str) -> None:
    assert classify(-6, "", stderr, timed_out=False).status == cls
    assert classify(1, "", f"Traceback ...\n{stderr}\n", timed_out=False).status == cls


FAULTS_DIR = REPO / "tests" / "fixtures" / "faults"


def fault_text(name: str) -> str:
    """A fixture's output (its first line says where it came from, and is not output)."""
    head, _, body = (FAULTS_DIR / name).read_text().partition("\n")
    assert head.startswith(("# real: ", "# upstream: ")), name
    return body


@pytest.mark.parametrize(("name", "cls", "line"), [
    # real output of Debian trixie's torch 2.6 (the cpu image's stack)
    ("inductor-no-setuptools.txt", "compile-error",
     "torch._dynamo.exc.BackendCompilerFailed: backend='inductor' raised:"),
    ("inductor-no-cxx.txt", "compile-error",
     "torch._dynamo.exc.BackendCompilerFailed: backend='inductor' raised:"),
    ("int-mm-float-cpu.txt", "error", None),  # a caller's mistake, no stack's fault
    ("scaled-mm-cpu.txt", "error", None),
    # GPU-only text, quoted from the public issues named in each file
    ("rocblaslt-no-tensile-gfx906.txt", "no-kernel",
     'rocblaslt error: Cannot read "TensileLibrary_lazy_gfx906.dat" (or .zlib variant): No '
     "such file or directory"),
    ("hip-no-binary-gfx1010.txt", "no-kernel",
     "hipErrorNoBinaryForGpu: Unable to find code object for all current devices!"),
    ("triton-kernel-image-invalid.txt", "compile-error",
     "torch._dynamo.exc.BackendCompilerFailed: backend='inductor' raised:"),
])
def test_real_fault_output_is_classified(name: str, cls: str, line: str | None) -> None:
    text = fault_text(name)
    verdict = classify(1, "", text, timed_out=False)
    assert verdict.status == cls, verdict
    if line is not None:
        assert verdict.detail == line
    # a missing code object inside a compile failure is still the missing code object
    wrapped = classify(1, "", "torch._dynamo.exc.BackendCompilerFailed: backend='inductor' "
                       f"raised:\n{text}", timed_out=False).status
    assert wrapped == (cls if cls != "error" else "compile-error")


def test_skip_rules_match_the_real_cpu_text() -> None:
    from convcheck.child import NO_COMPILER, UNSUPPORTED_OP
    # no C++ compiler: the cpu reference skips the compile case (a gap of the image)...
    assert NO_COMPILER.search(fault_text("inductor-no-cxx.txt"))
    # ...but a missing setuptools is no missing compiler: it stays a failure
    assert not NO_COMPILER.search(fault_text("inductor-no-setuptools.txt"))
    # fp8 on a CPU without _scaled_mm: skipped (the torch lacks it there)
    assert UNSUPPORTED_OP.search(fault_text("scaled-mm-cpu.txt"))
    assert not UNSUPPORTED_OP.search(fault_text("int-mm-float-cpu.txt"))


def ok_line(status: str = "ok") -> str:
    return RESULT_MARK + json.dumps({"status": status, "gflops": 1.0, "detail": "d"})


def test_classes_from_exit_status_and_result() -> None:
    assert classify(None, "", "", timed_out=True).status == "hang"
    assert classify(-9, ok_line(), "", timed_out=True).status == "hang"
    assert classify(-signal.SIGSEGV, "", "", False).status == "crash"
    assert classify(-signal.SIGABRT, "", "", False).detail == "killed by SIGABRT"
    assert classify(-signal.SIGABRT, ok_line(), "terminate called recursively\n", False
                    ).detail == "killed by SIGABRT after printing its result: terminate " \
        "called recursively"
    assert classify(128 + signal.SIGSEGV, "", "", False).status == "crash"  # via a shell
    assert classify(0, ok_line(), "", False).status == "ok"
    assert classify(0, ok_line("wrong-result"), "", False).status == "wrong-result"
    # an ordinary Python exception matching no signature
    verdict = classify(1, "", "Traceback\nValueError: boom\n", False)
    assert (verdict.status, verdict.detail) == ("error", "ValueError: boom")
    assert classify(0, "no result line", "", False).status == "error"


def test_result_then_crash_at_exit_is_a_crash_and_recovered_warnings_are_ok() -> None:
    assert classify(-signal.SIGSEGV, ok_line(), "", False).status == "crash"
    verdict = classify(0, ok_line(), "MIOpen(HIP): Warning miopenStatusUnknownError\n", False)
    assert verdict.status == "ok" and "miopenStatusUnknownError" in verdict.detail
    assert classify(0, ok_line(), "", False).status == "ok"
    assert find_signature("miopenStatusSuccess") is None


def test_case_ids_are_stable_unique_and_cover_the_spec() -> None:
    ids = [c.id for c in cases.CASES]
    assert len(ids) == len(set(ids))
    for wanted in ("conv2d-k3-c64-64x64-fwd", "conv2d-k3-c64-64x64-bwd",
                   "conv2d-k7-c64-64x64-fwd", "conv2d-k3-c64-224x224-bwd",
                   "conv2d-k3-c128-64x64-fwd", "conv2d-k3-c64-64x64-dw-bwd",
                   "conv1d-k3-c64-1024-fwd", "conv3d-k3-c16-16x32x32-bwd",
                   "convtranspose2d-k4-c64to32-32x32-s2-fwd", "matmul-512-fwd",
                   "linear-256to512-bwd", "batchnorm2d-c64-64x64-fwd",
                   "maxpool2d-k2-c64-64x64-fwd"):
        assert wanted in ids
    quick = cases.select(quick=True)
    assert 0 < len(quick) < len(ids) / 4 and {c.id for c in quick} == set(cases.QUICK)
    assert [c.id for c in cases.select(globs="matmul-512-*,linear-*-fwd")] == [
        "matmul-512-fwd", "matmul-512-bwd", "linear-256to512-fwd"]
    # issue 16's list, one id per item
    for wanted in ("conv2d-fp16-k3-c64-64x64-b1-fwd", "conv2d-fp16-k3-c64-64x64-b4-bwd",
                   "batchnorm2d-train-c64-32x32-bwd", "groupnorm-g32-c320-32x32-bwd",
                   "layernorm-768-seq77-bwd", "lstm-l2-h128-seq32-bwd", "gru-l2-h128-seq32-bwd",
                   "nonzero-1m-fwd", "unique-1m-fwd", "cumsum-1024x1024-bwd",
                   "scatter_add-1m-to-4096-bwd", "index_put-1m-to-4096-bwd", "sort-1m-fwd",
                   "topk-1m-k100-fwd", "sdpa-math-h8-s4096-d40-bwd",
                   "sdpa-efficient-h8-s4096-d40-bwd", "sdpa-flash-h8-s4096-d40-bwd",
                   "matmul-fp16-1024-fwd", "matmul-bf16-1024-fwd", "resnet18-b2-64x64-train",
                   "unet-block-c320-16x16-attn-bwd", "alloc-sweep-half-memory-fwd"):
        assert wanted in ids
    # issue 27: torch.compile of small fused graphs, int8 and fp8 matmul
    for wanted in ("compile-elementwise-64k-fwd", "compile-matmul-epilogue-256-fwd",
                   "compile-conv-relu-c16-32x32-fwd", "compile-attention-h4-s256-d32-fwd",
                   "int8-mm-256-fwd", "fp8-e4m3-mm-256-fwd"):
        assert wanted in ids
    assert {c.area for c in cases.CASES} == set(cases.AREAS)
    assert {c.area for c in quick} >= {"convolutions", "fp16", "normalization", "rnn",
                                       "tensor-ops", "attention"}


def test_analytic_flops() -> None:
    conv = cases.BY_ID["conv2d-k3-c64-64x64-fwd"]
    assert cases.flops(conv) == 2 * 2 * 64 * 64 * 64 * 64 * 9
    assert cases.flops(cases.BY_ID["conv2d-k3-c64-64x64-bwd"]) == 3 * cases.flops(conv)
    assert cases.flops(cases.BY_ID["conv2d-k3-c64-64x64-s2-fwd"]) == cases.flops(conv) / 4
    assert cases.flops(cases.BY_ID["matmul-512-fwd"]) == 2 * 512**3
    assert cases.flops(cases.BY_ID["maxpool2d-k2-c64-64x64-fwd"]) is None


def test_fault_rules() -> None:
    env = {faults.ENV: "conv2d-k3-*=hang, *=wrong"}
    assert faults.fault_for("conv2d-k3-c64-64x64-fwd", env) == "hang"
    assert faults.fault_for("matmul-512-fwd", env) == "wrong"
    assert faults.fault_for("matmul-512-fwd", {}) is None
    with pytest.raises(ValueError):
        faults.parse("conv2d-*=explode")


def test_profiles_match_variants_yaml() -> None:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load((REPO / "variants.yaml").read_text())
    assert {name: p["env"] for name, p in doc["profiles"].items()} == PROFILES


def host_convcheck(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(PYDIR))
    return subprocess.run([sys.executable, "-m", "convcheck", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_usage_errors_exit_2_and_list_needs_no_torch() -> None:
    assert host_convcheck("--profile", "bogus").returncode == 2
    assert host_convcheck("--cases", "nothing-*").returncode == 2
    assert host_convcheck("--timeout", "0").returncode == 2
    assert host_convcheck("--device", "tpu").returncode == 2
    assert host_convcheck("--isolation", "thread").returncode == 2
    listed = host_convcheck("--list")
    assert listed.returncode == 0
    assert listed.stdout.split()[0] == cases.CASES[0].id


def test_zygote_that_cannot_start_falls_back_to_spawn(tmp_path: Path) -> None:
    # A torch that cannot be imported: the zygote fails to start, the run says so and goes
    # on spawning one child per case (each then fails on its own import: error).
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('no torch here')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(PYDIR)]))
    env.pop(faults.ENV, None)
    proc = subprocess.run([sys.executable, "-m", "convcheck", "--device", "cpu",
                           "--isolation", "fork", "--cases", "matmul-*", "--json",
                           str(tmp_path / "r.json")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert "isolation=fork failed (zygote could not start: ImportError: no torch here)" \
        in proc.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["isolation"] == "fork" and len(report["isolation_notes"]) == 1
    assert [(c["status"], c["isolation"]) for c in report["cases"]] == [("error", "spawn")] * len(
        cases.select(globs="matmul-*"))
    assert "ImportError: no torch here" in report["cases"][0]["detail"]


def test_zygote_fault_points_match_only_zygote_rules() -> None:
    env = {faults.ENV: "*=segv,zygote:matmul-*=abort"}
    assert faults.zygote_fault("zygote", env) is None  # "*" is for cases, never the zygote
    assert faults.zygote_fault("zygote:matmul-512-fwd", env) == "abort"
    assert faults.fault_for("matmul-512-fwd", env) == "segv"


# ---------------------------------------------------------------- inside the real cpu image
# The cpu image carries Debian trixie's torch 2.6 with g++, libtorch-dev and Python's headers
# (issue 27): every quick case runs there, torch.compile and torch._int_mm among them.
ENTRY_KEYS = {"case", "status", "seconds", "gflops", "max_abs_err", "max_rel_err", "detail",
              "isolation", "area", "dtype", "compile_seconds", "run_seconds", "budget_extended"}


@pytest.mark.docker
@pytest.mark.slow
def test_quick_run_passes_in_the_cpu_image(cpu_image: str) -> None:
    # no --device: the cpu image's IMAGEFACTORY_GPU=none makes cpu the default there;
    # no --isolation: fork is the default where os.fork exists
    rc, out, report = convcheck_in_image(cpu_image, "--quick")
    assert rc == 0, out
    assert report["device"] == "cpu" and report["profile"] is None
    assert report["torch"].startswith("2.6") and report["gpu"] is None
    assert report["isolation"] == "fork" and report["isolation_notes"] == []
    assert report["gpu_reset"] is None
    assert report["summary"] == {"ok": len(cases.QUICK)}, out
    assert {c["case"] for c in report["cases"]} == set(cases.QUICK)
    for case in report["cases"]:
        assert set(case) == ENTRY_KEYS
        assert case["area"] == cases.BY_ID[case["case"]].area and case["seconds"] > 0
        assert case["status"] == "ok", case
        assert case["max_rel_err"] < 1e-4 or case["dtype"] != "float32", case
        assert case["isolation"] == "fork"
        assert case["run_seconds"] > 0 and case["compile_seconds"] >= 0
        assert case["budget_extended"] == 0
    for area in ("convolutions", "fp16", "attention", "compile", "int8-fp8"):
        assert report["works"][area]["verdict"] == "yes", (area, report["works"][area])
    assert "conv2d-k3-c64-64x64-fwd" in out and "GFLOP/s" in out
    assert "isolation=fork" in out.splitlines()[0]
    assert "convcheck: works: convolutions (fp32): yes" in out


@pytest.mark.docker
@pytest.mark.slow
def test_compile_and_int8_cases_pass_in_the_cpu_image(cpu_image: str) -> None:
    # inductor compiles C++ with the image's g++ (no skip for a missing compiler), and the
    # compiled graphs match eager; torch._int_mm matches the exact int64 product.
    rc, out, report = convcheck_in_image(cpu_image, "--cases 'compile-*,int8-*,fp8-*'")
    got = {c["case"]: c for c in report["cases"]}
    assert set(got) == {c.id for c in cases.select(globs="compile-*,int8-*,fp8-*")}
    for name, case in got.items():
        if name.startswith("fp8-"):  # fp8 on the CPU is the torch's to have or not
            assert case["status"] in ("ok", "skipped"), case
            continue
        assert case["status"] == "ok", (case, out)
        assert case["compile_seconds"] >= 0 and case["max_abs_err"] is not None
    assert got["int8-mm-256-fwd"]["max_abs_err"] == 0
    assert rc == 0, out


# Every class from a real fault, one per case, plus clean cases around them.
FAULTS = {
    "conv2d-k1-c64-64x64-fwd": ("hang", "hang"),
    "conv2d-k3-c64-64x64-fwd": ("segv", "crash"),
    "conv2d-k3-c64-64x64-bwd": ("abort", "crash"),
    "conv2d-k3-c16to32-32x32-fwd": ("aperture-violation", "aperture-violation"),
    "conv2d-k3-c16to32-64x64-fwd": ("memory-fault", "memory-fault"),
    "conv2d-k3-c16to32-32x32-bwd": ("no-kernel", "no-kernel"),
    "conv2d-k3-c16to32-64x64-bwd": ("invalid-isa", "invalid-isa"),
    "conv2d-k3-c16-64x64-fwd": ("miopen-error", "miopen-error"),
    "conv2d-k3-c16-64x64-bwd": ("wrong", "wrong-result"),
    "matmul-512-bwd": ("raise", "error"),
}
CLEAN = ("conv2d-k1-c64-64x64-bwd", "matmul-512-fwd", "conv1d-k3-c64-1024-fwd")
# The mark is split so that neither this scan's nor the shell's own command line matches it.
_HEAD, _TAIL = faults.GRANDCHILD_MARK[:8], faults.GRANDCHILD_MARK[8:]
GRANDCHILD_SCAN = (
    f"python3 -c \"import glob,sys; sys.exit(any(b'{_HEAD}' b'{_TAIL}' in "
    "open(p,'rb').read() for p in glob.glob('/proc/[0-9]*/cmdline')))\" "
    "|| echo GRANDCHILD-LEFT; "
)


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_every_failure_class_from_a_real_fault(cpu_image: str, isolation: str) -> None:
    spec = ",".join(f"{case}={fault}" for case, (fault, _) in FAULTS.items())
    globs = ",".join([*FAULTS, *CLEAN])
    start = time.monotonic()
    rc, out, report = convcheck_in_image(
        cpu_image, f"--device cpu --timeout 5 --isolation {isolation} --cases '{globs}'",
        {faults.ENV: spec}, after=GRANDCHILD_SCAN)
    elapsed = time.monotonic() - start
    got = {c["case"]: c["status"] for c in report["cases"]}
    assert got == {**{case: cls for case, (_, cls) in FAULTS.items()},
                   **dict.fromkeys(CLEAN, "ok")}, out
    assert rc == 1
    assert report["isolation"] == isolation and report["isolation_notes"] == [], out
    assert {c["isolation"] for c in report["cases"]} == {isolation}
    assert "GRANDCHILD-LEFT" not in out, "the hung case's process group survived"
    by_case = {c["case"]: c for c in report["cases"]}
    # idle at the timeout (or once its loaded start-up is done): killed, no retry budget spent
    hang = by_case["conv2d-k1-c64-64x64-fwd"]
    assert 5 <= hang["seconds"] < 20 + hang["budget_extended"] < 60
    assert "HSA_STATUS_ERROR_MEMORY_APERTURE_VIOLATION" in by_case[
        "conv2d-k3-c16to32-32x32-fwd"]["detail"]
    assert by_case["conv2d-k3-c16-64x64-bwd"]["max_rel_err"] > 0.1
    assert report["summary"]["ok"] == len(CLEAN) and report["summary"]["crash"] == 2
    assert elapsed < 240  # a loaded 2-core machine; ~30 s on an idle one


@pytest.mark.docker
def test_script_path_and_usage_errors_in_the_image(cpu_image: str) -> None:
    proc = run_in_image(cpu_image, "python3 /opt/imagefactory/python/convcheck/__main__.py "
                        "--list --quick; python3 -m convcheck --profile nope; echo rc=$?")
    assert proc.stdout.splitlines()[0] == cases.select(quick=True)[0].id + "  (quick)"
    assert "rc=2" in proc.stdout and "unknown profile 'nope'" in proc.stderr


@pytest.mark.docker
@pytest.mark.slow
def test_zygote_dying_under_a_case_falls_back_to_spawn(cpu_image: str) -> None:
    # The zygote aborts right after forking the hanging case's child: that child's whole
    # group is killed, the case runs again spawned (and hangs on its own), the run goes on
    # spawned and says so.
    spec = "zygote:matmul-512-fwd=abort,matmul-512-fwd=hang,linear-256to512-fwd=segv"
    rc, out, report = convcheck_in_image(
        cpu_image, "--device cpu --timeout 5 --cases "
        "'conv2d-k3-c64-64x64-fwd,matmul-512-*,linear-256to512-fwd'",
        {faults.ENV: spec}, after=GRANDCHILD_SCAN)
    got = [(c["case"], c["status"], c["isolation"]) for c in report["cases"]]
    assert got == [("conv2d-k3-c64-64x64-fwd", "ok", "fork"),
                   ("matmul-512-fwd", "hang", "spawn"), ("matmul-512-bwd", "ok", "spawn"),
                   ("linear-256to512-fwd", "crash", "spawn")], out
    assert rc == 1 and "GRANDCHILD-LEFT" not in out
    assert report["isolation_notes"] == [
        "isolation=fork failed (zygote exited -6); the cases from here on run with "
        "isolation=spawn"]
    assert f"convcheck: {report['isolation_notes'][0]}" in out


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_crash_at_exit_is_a_crash_in_either_isolation(cpu_image: str, isolation: str) -> None:
    # A child that printed its result and then aborts at exit (an atexit handler of the
    # stack) crashes for users too: it stays a crash, forked or spawned, with no rerun.
    spec = "matmul-512-bwd=exit-abort"
    rc, out, report = convcheck_in_image(
        cpu_image, f"--device cpu --isolation {isolation} --cases 'matmul-*'",
        {faults.ENV: spec})
    got = {c["case"]: (c["status"], c["isolation"]) for c in report["cases"]}
    assert got == {"matmul-512-fwd": ("ok", isolation), "matmul-512-bwd": ("crash", isolation),
                   # trixie's torch 2.6 has CPU float16 matmul kernels
                   "matmul-fp16-1024-fwd": ("ok", isolation),
                   "matmul-fp16-1024-bwd": ("ok", isolation),
                   "matmul-bf16-1024-fwd": ("ok", isolation),
                   "matmul-bf16-1024-bwd": ("ok", isolation)}, out
    assert rc == 1 and report["isolation_notes"] == []
    assert report["cases"][1]["detail"].startswith(
        f"killed by SIGABRT after printing its result: {faults.EXIT_MESSAGE}")


def test_known_failure_globs_name_real_cases() -> None:
    """A known failure whose glob matches no case would never mark anything known, nor show
    a fix as fixed (issue 27: hipBLASLt -> int8, aotriton -> flash attention)."""
    import fnmatch

    from imagefactory.project import Project

    project = Project.locate(REPO / "variants.yaml")
    ids = [c.id for c in cases.CASES]
    seen = set()
    for variant in project.matrix.variants:
        for known in variant.known_failures:
            for glob in known.cases:
                assert fnmatch.filter(ids, glob), f"{variant.name}: {glob} matches no case"
                seen.add(glob)
    assert {"int8-mm-*", "sdpa-flash-*", "compile-*"} <= seen
    therock10 = project.matrix.get("therock10-gfx1010")
    assert "triton-no-buffer-ops" in {p.name for p in therock10.profiles}
