"""The conv check's words, in one place: the classes a case ends in, which of them pass, the
verdicts against a variant's known failures, and the areas cases are grouped by.

The check (in the image) and imagefactory (on the host: results, the gate, the report) both
import this module, so a class or a verdict is spelled once. Standard library only, and
nothing else of convcheck: the host imports it without torch.
"""

from __future__ import annotations

from typing import Any, Sequence

# Every class a case can end in (design.md's table), in the order summaries list them: the
# passing ones first, then the failures (classify.py decides which, most specific signature
# first), then the parent's own not-run. Each with what it means, in users' words (the
# report's legend and compatibility.json's "classes").
CLASSES: dict[str, str] = {
    "ok": "ran and matches the CPU reference",
    "skipped": "a feature this image's torch does not have (e.g. SDPA before 2.0); passes",
    "wrong-result": "ran, but differs from the CPU reference beyond tolerance",
    "hang": "no result before the timeout (and one longer budget if it was still compiling)",
    "gpu-hang": "the driver reset the GPU (HW Exception ... reason :GPU Hang); the run stops",
    "aperture-violation": "HSA_STATUS_ERROR_MEMORY_APERTURE_VIOLATION",
    "memory-fault": "Memory access fault by GPU / an illegal memory access was encountered",
    "illegal-instruction": "HSA_STATUS_ERROR_ILLEGAL_INSTRUCTION: a kernel used an instruction "
    "this GPU lacks",
    "gpu-exception": "HSA_STATUS_ERROR_EXCEPTION: another hardware exception",
    "no-kernel": "invalid device function / hipErrorNoBinaryForGpu / rocBLAS cannot read its "
    "TensileLibrary: no code for this GPU",
    "invalid-isa": "HSA_STATUS_ERROR_INVALID_ISA",
    "out-of-memory": "out of memory (HIP, torch's allocator or HSA_STATUS_ERROR_OUT_OF_RESOURCES)",
    "miopen-error": "a miopenStatus error",
    "compile-error": "torch.compile could not build the kernel (inductor / Triton error)",
    "crash": "killed by SIGSEGV / SIGABRT with no known signature",
    "error": "the case could not run",
    "not-run": "not started: a GPU reset ended the run before it",
}
OK, SKIPPED, WRONG_RESULT, ERROR, NOT_RUN = "ok", "skipped", "wrong-result", "error", "not-run"
# A case passes when it ran and matched, or was skipped (a feature this torch lacks).
PASSING: tuple[str, ...] = (OK, SKIPPED)
# Cases that say nothing about whether an area works: skipped, or never started.
UNCHECKED: tuple[str, ...] = (SKIPPED, NOT_RUN)
# Verdicts a child may report for itself (exit 0 with a result line).
CHILD_VERDICTS: tuple[str, ...] = (OK, WRONG_RESULT, SKIPPED)
# A class that ends the run: the driver reset the GPU, so every case after it would fail for
# that reason alone (they are marked not-run instead).
GPU_RESET_CLASSES: frozenset[str] = frozenset({"gpu-hang"})

# Every case's verdict against the variant's known_failures (imagefactory's verify/known.py
# gives them), beside its class.
FIXED, KNOWN, REGRESSION = "fixed", "known", "regression"
VERDICTS: dict[str, str] = {
    OK: "ran and matches the CPU reference",
    KNOWN: "failed as the variant declares (variants.yaml known_failures: reason, source)",
    FIXED: "declared a known failure, but ran and matched",
    REGRESSION: "failed and no known failure covers it",
}
# Verdicts of a failed case that a variant declares (shown apart from the classes).
DECLARED: tuple[str, ...] = (KNOWN, FIXED)

# Areas, in the order the summary lists them, with the words users ask in (the check's own
# "works" line) and the short ones the report's tables use.
AREAS: dict[str, str] = {
    "convolutions": "convolutions (fp32)",
    "fp16": "half precision (fp16/bf16 convolutions and matmul)",
    "normalization": "normalization (BatchNorm training, GroupNorm, LayerNorm)",
    "rnn": "recurrent networks (LSTM, GRU)",
    "tensor-ops": "tensor ops (nonzero, unique, cumsum, sort, topk, scatter/index_put)",
    "attention": "attention (scaled_dot_product_attention)",
    "training": "training (ResNet-18 step, SD UNet block)",
    "memory": "large allocations",
    "compile": "torch.compile (Triton/inductor kernels)",
    "int8-fp8": "int8 and fp8 matmul",
    "basics": "basic math (matmul, Linear, pooling)",
}
AREA_WORDS: dict[str, str] = {
    "convolutions": "convolutions",
    "fp16": "fp16/bf16",
    "normalization": "BatchNorm training, GroupNorm, LayerNorm",
    "rnn": "LSTM/GRU",
    "tensor-ops": "nonzero/unique/sort/scatter",
    "attention": "attention (SDPA)",
    "training": "training (ResNet-18, SD UNet block)",
    "memory": "large allocations",
    "compile": "torch.compile",
    "int8-fp8": "int8/fp8 matmul",
    "basics": "matmul, Linear, pooling",
}


def area_works(statuses: Sequence[str]) -> dict[str, Any]:
    """What the classes of one area's cases say to a user: does it work here? verdict "yes"
    (every case that ran is ok), "no" (none is), "partly (ok/ran)", "not checked" (all
    skipped or not-run); the ok/failed/unchecked counts and the failing classes. The
    check's "works" line (runner.works) and the host's merged runs (report/merge.py) both
    read it."""
    ok = sum(s == OK for s in statuses)
    unchecked = sum(s in UNCHECKED for s in statuses)
    failed = len(statuses) - ok - unchecked
    verdict = ("not checked" if ok + failed == 0 else "yes" if failed == 0
               else "no" if ok == 0 else f"partly ({ok}/{ok + failed})")
    return {"verdict": verdict, "ok": ok, "failed": failed, "unchecked": unchecked,
            "classes": sorted(set(statuses) - {*PASSING, *UNCHECKED})}
