"""Conv check (issue 16): the ROCm failure signatures, compiling vs hanging, GPU reset.

Pure logic runs on the host. Everything else runs the real program in the real cpu image,
where the test-only fault hook (IMAGEFACTORY_CONVCHECK_FAULTS) makes a case's child really
print a runtime's message and abort, raise torch's own error, burn CPU or block."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1] / "dockerfiles" / "files" / "python")]

from convcheck import cli, faults, runner  # noqa: E402
from convcheck.classify import CLASSES, SIGNATURES, classify, find_signature  # noqa: E402
from test_convcheck import PYDIR, convcheck_in_image  # noqa: E402

# ---------------------------------------------------------------- pure logic, on the host
# The runtimes' own lines (see classify.py for file and ref of each).
RUNTIME_LINES = [
    ("HW Exception by GPU node-1 (Agent handle: 0x5617c4b0) reason :GPU Hang", "gpu-hang"),
    ("HW Exception by GPU node-2 (Agent handle: 0x1) reason :ECC", "gpu-hang"),
    (":0:rocdevice.cpp            :2985: 88 us: Callback: Queue 0x7f aborting with error : "
     "HSA_STATUS_ERROR_ILLEGAL_INSTRUCTION: The agent attempted to execute an illegal shader "
     "instruction. code: 0x2a", "illegal-instruction"),
    ("Callback: Queue 0x7f aborting with error : HSA_STATUS_ERROR_EXCEPTION: An HSAIL "
     "operation resulted in a hardware exception. code: 0x1016", "gpu-exception"),
    ("\nrocBLAS error: Cannot read /opt/rocm/lib/rocblas/library/TensileLibrary.dat: No such "
     "file or directory", "no-kernel"),
    ("rocBLAS error: Could not load /opt/rocm/lib/rocblas/library/TensileLibrary_gfx1010.co",
     "no-kernel"),
    ("RuntimeError: HIP error: an illegal memory access was encountered", "memory-fault"),
    ("torch.OutOfMemoryError: HIP out of memory. Tried to allocate 2.00 GiB", "out-of-memory"),
    ("RuntimeError: HIP error: out of memory", "out-of-memory"),
    ("Callback: Queue 0x7f Aborting with error : HSA_STATUS_ERROR_OUT_OF_RESOURCES: The "
     "runtime failed to allocate the necessary resources. Code: 0x1008 Available Free mem : "
     "12 MB", "out-of-memory"),
]


@pytest.mark.parametrize(("line", "cls"), RUNTIME_LINES)
def test_runtime_lines_decide_the_class(line: str, cls: str) -> None:
    assert classify(-6, "", f"some output\n{line}\n", timed_out=False).status == cls
    assert classify(1, "", f"Traceback ...\n{line}\n", timed_out=False).status == cls
    # in a child that succeeded, a line is only kept in the detail
    ok = classify(0, 'CONVCHECK-RESULT {"status": "ok", "detail": "d"}', line, False)
    assert ok.status == "ok"


def test_a_gpu_reset_outranks_what_every_queue_reports_after_it() -> None:
    out = ("Memory access fault by GPU node-1 (Agent handle: 0x1) on address 0x0\n"
           "HW Exception by GPU node-1 (Agent handle: 0x1) reason :GPU Hang\n")
    assert find_signature(out) == (
        "gpu-hang", "HW Exception by GPU node-1 (Agent handle: 0x1) reason :GPU Hang")
    assert SIGNATURES[0][0] == "gpu-hang"
    assert {cls for cls, _ in SIGNATURES} <= set(CLASSES)


def test_skipped_is_a_child_verdict_and_passes() -> None:
    verdict = classify(0, 'CONVCHECK-RESULT {"status": "skipped", "detail": "no SDPA"}', "",
                       False)
    assert (verdict.status, verdict.detail) == ("skipped", "no SDPA")
    assert cli.PASSING == ("ok", "skipped")


def test_works_summary_in_users_words() -> None:
    entries = [{"area": "convolutions", "status": "ok"},
               {"area": "convolutions", "status": "hang"},
               {"area": "fp16", "status": "skipped"},
               {"area": "attention", "status": "ok"},
               {"area": "rnn", "status": "miopen-error"},
               {"area": "memory", "status": "not-run"}]
    got = runner.works(entries)
    assert list(got) == ["convolutions", "fp16", "rnn", "attention", "memory"]
    assert got["convolutions"]["verdict"] == "partly (1/2)"
    assert got["convolutions"]["classes"] == ["hang"]
    assert got["fp16"]["verdict"] == "not checked"
    assert got["rnn"]["verdict"] == "no" and got["attention"]["verdict"] == "yes"
    assert got["memory"]["verdict"] == "not checked"


def test_compile_fault_rule() -> None:
    assert faults.parse("a=compile:2.5,b=spin") == [("a", "compile:2.5"), ("b", "spin")]
    for bad in ("a=compile:", "a=compile:x", "a=compile:-1", "a=exit-abort-forked"):
        with pytest.raises(ValueError):
            faults.parse(bad)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_fault_spec_never_crashes_the_parser(spec: str) -> None:
    try:
        rules = faults.parse(spec)
    except ValueError as exc:
        assert faults.ENV in str(exc)
    else:
        assert all(glob and fault for glob, fault in rules)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.text(max_size=12), st.floats(allow_nan=True).map(str)))
def test_retry_budget_is_a_number_or_a_usage_error(value: str) -> None:
    # --list: parses and validates everything, runs nothing (no torch needed)
    try:
        code = cli.main(["--list", "--cases", "matmul-512-fwd", "--retry-budget", value])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        assert code == 0
        assert float(value) >= 0 and float(value) != float("inf")


def test_group_cpu_seconds_of_real_processes() -> None:
    # A busy and an idle process group, each in its own session, as the cases' children.
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            start_new_session=True)
    try:
        time.sleep(0.5)
        b0, i0 = runner.group_cpu_seconds(busy.pid), runner.group_cpu_seconds(idle.pid)
        time.sleep(runner.BUSY_WINDOW)
        assert runner.group_cpu_seconds(busy.pid) - b0 >= runner.BUSY_MIN_CPU
        assert runner.group_cpu_seconds(idle.pid) - i0 < runner.BUSY_MIN_CPU
    finally:
        for proc in (busy, idle):
            proc.kill()
            proc.wait()
    assert runner.group_cpu_seconds(busy.pid) == 0.0  # gone: nothing left in the group


def test_usage_errors_for_the_new_options() -> None:
    env = dict(os.environ, PYTHONPATH=str(PYDIR))
    for args in (["--retry-budget", "-1"], ["--retry-budget", "inf"], ["--timeout", "nan"]):
        proc = subprocess.run([sys.executable, "-m", "convcheck", *args, "--list"],
                              capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, args


# ---------------------------------------------------------------- inside the real cpu image
# Each new signature from a real fault: the child prints the runtime's own line and aborts
# (as the runtime does), or torch raises its own error (a real 2**62-byte allocation).
SIGNATURE_FAULTS = {
    "conv1d-k3-c64-1024-fwd": ("illegal-instruction", "illegal-instruction"),
    "conv1d-k3-c64-1024-bwd": ("gpu-exception", "gpu-exception"),
    "matmul-512-fwd": ("tensile", "no-kernel"),
    "matmul-512-bwd": ("illegal-address", "memory-fault"),
    "linear-256to512-fwd": ("oom", "out-of-memory"),
}


@pytest.mark.docker
@pytest.mark.slow
def test_new_signatures_from_real_faults_and_a_gpu_reset_stops_the_run(cpu_image: str) -> None:
    # gpu-hang strikes maxpool2d fwd: the cases after it must be not-run, not failures.
    spec = ",".join(f"{case}={fault}" for case, (fault, _) in SIGNATURE_FAULTS.items())
    spec += ",maxpool2d-k2-c64-64x64-fwd=gpu-hang"
    globs = ",".join([*SIGNATURE_FAULTS, "linear-256to512-bwd", "maxpool2d-*", "avgpool2d-*"])
    rc, out, report = convcheck_in_image(cpu_image, f"--device cpu --timeout 120 --cases '{globs}'",
                                         {faults.ENV: spec})
    got = {c["case"]: c["status"] for c in report["cases"]}
    assert got == {**{case: cls for case, (_, cls) in SIGNATURE_FAULTS.items()},
                   "linear-256to512-bwd": "ok", "maxpool2d-k2-c64-64x64-fwd": "gpu-hang",
                   "maxpool2d-k2-c64-64x64-bwd": "not-run",
                   "avgpool2d-k2-c64-64x64-fwd": "not-run",
                   "avgpool2d-k2-c64-64x64-bwd": "not-run"}, out
    assert rc == 1
    by_case = {c["case"]: c for c in report["cases"]}
    assert "HSA_STATUS_ERROR_ILLEGAL_INSTRUCTION" in by_case["conv1d-k3-c64-1024-fwd"]["detail"]
    assert "TensileLibrary" in by_case["matmul-512-fwd"]["detail"]
    assert "can't allocate memory" in by_case["linear-256to512-fwd"]["detail"]
    assert all(by_case[c]["detail"] == "gpu reset (after maxpool2d-k2-c64-64x64-fwd)"
               and by_case[c]["seconds"] == 0.0 for c in got if got[c] == "not-run")
    # said in one line, and in the JSON
    reset_lines = [ln for ln in out.splitlines() if ln.startswith("convcheck: GPU reset")]
    assert reset_lines == [f"convcheck: {report['gpu_reset']}"]
    assert "the 3 cases after it are not-run (gpu reset)" in reset_lines[0]
    assert re.search(r"^maxpool2d-k2-c64-64x64-bwd +not-run \(gpu reset\)$", out, re.M), out
    assert report["summary"]["not-run"] == 3
    assert report["works"]["basics"]["verdict"] == "partly (1/5)"


# Generous for a loaded 2-core machine, where a spawned child's `import torch` alone can take
# 15 s: the properties checked are who gets the longer budget and who does not.
TIMEOUT = 15
COMPILE_SECONDS = TIMEOUT + 5  # the "compiling" case keeps a core busy this long
RETRY = 45


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_compiling_past_the_timeout_is_retried_and_a_real_hang_is_still_caught(
        cpu_image: str, isolation: str) -> None:
    # compile: busy past the timeout, gets the longer budget, passes (its compile time is the
    #          burn); hang: idle, killed at the timeout (+ the CPU window); spin: busy forever,
    #          killed at timeout + retry budget.
    spec = (f"matmul-512-fwd=compile:{COMPILE_SECONDS},matmul-512-bwd=hang,"
            "linear-256to512-fwd=spin")
    rc, out, report = convcheck_in_image(
        cpu_image, f"--device cpu --isolation {isolation} --timeout {TIMEOUT} "
        f"--retry-budget {RETRY} --cases 'matmul-512-*,linear-256to512-*'", {faults.ENV: spec})
    by_case = {c["case"]: c for c in report["cases"]}
    got = {case: c["status"] for case, c in by_case.items()}
    assert got == {"matmul-512-fwd": "ok", "matmul-512-bwd": "hang",
                   "linear-256to512-fwd": "hang", "linear-256to512-bwd": "ok"}, out
    assert rc == 1 and report["retry_budget"] == RETRY
    window = runner.BUSY_WINDOW
    # compiling past the timeout: given more time while busy, and it passes
    compiled = by_case["matmul-512-fwd"]
    assert compiled["seconds"] > TIMEOUT and 0 < compiled["budget_extended"] < RETRY
    assert compiled["compile_seconds"] >= COMPILE_SECONDS - 0.5
    assert compiled["run_seconds"] < 1
    assert compiled["detail"].startswith(f"still busy at the {TIMEOUT} s timeout (compiling?)")
    # a real hang (blocked, no CPU): caught as soon as a window shows it idle after the
    # timeout, never waiting out the retry budget
    hang = by_case["matmul-512-bwd"]
    assert TIMEOUT <= hang["seconds"] < TIMEOUT + window + 3 + hang["budget_extended"]
    assert hang["seconds"] < TIMEOUT + RETRY and hang["budget_extended"] < RETRY - window
    # a busy hang (spinning): killed at timeout + retry budget (+ a window and a few seconds)
    spin = by_case["linear-256to512-fwd"]
    assert TIMEOUT + RETRY <= spin["seconds"] < TIMEOUT + RETRY + window + 5
    assert spin["detail"] == (f"no result in {TIMEOUT} s + {RETRY} s more while busy "
                              "(compiling?), then out of retry budget; child killed")
