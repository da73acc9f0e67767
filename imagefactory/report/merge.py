"""Counting results across hosts: local results and the bundles under reports/, per variant,
image digest and GPU model.

A host counts once per group however often it ran (its latest run stands for it); runs are
all counted. A case passes on every host, some or none; the verdict is derived from those
facts ("works: every case on 3 hosts", "convolutions fail on 2 of 3 hosts (aperture-
violation)"). Kept out, each with one line saying why: a bundle the strict reader refuses, a
bundle whose image digest was never published (no publish record says it), and a duplicate
of a run already counted. Linear in the number of bundles (bench/bench_merge.py).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import JobError
from ..safety import MAX_RESULT_BYTES, clean, json_loads, read_text
from ..schema import Any_, Arr, Bool, Enum, Int, Map, Node, Obj, Str, document
from ..share import reader
from ..verify.results import TestResult, stored_results

SCHEMA_ID = "https://github.com/imagefactory/imagefactory/schemas/compatibility.v1.json"


@dataclass(frozen=True)
class Run:
    """One test run of one variant on one host."""

    variant: str
    digest: str  # sha256:... the published digest, else the image id
    published: bool
    gpu: str
    host_id: str
    profile: str | None
    finished_at: str
    cases: dict[str, tuple[bool, str, str]]  # case -> (passed, status, area)
    source: str


@dataclass
class Merged:
    runs: list[Run] = field(default_factory=list)
    kept_out: list[str] = field(default_factory=list)


def published_digests(results_dirs: Iterable[Path]) -> dict[str, str]:
    """image id -> the digest its publish record names; every published digest maps to
    itself too (a bundle names the digest, a local result the image id)."""
    out: dict[str, str] = {}
    for d in results_dirs:
        for path in sorted(d.glob("*.publish.json")):
            try:
                record = json_loads(read_text(path, MAX_RESULT_BYTES, error=JobError))
            except (JobError, ValueError, RecursionError):
                continue
            if not isinstance(record, dict) or record.get("stale"):
                continue
            digest, image_id = record.get("digest"), record.get("image_id")
            if isinstance(digest, str) and digest.startswith("sha256:"):
                out[digest] = digest
                if isinstance(image_id, str):
                    out[image_id] = digest
    return out


def _gpu_of_bundle(ours: dict[str, Any]) -> str:
    isa = ours["reported"]["isa"]
    gpus = ours["host"]["gpus"]
    chosen = next((g for g in gpus if g["gfx"] == isa), gpus[0] if gpus else None)
    if chosen is not None:
        name = chosen["name"] or f"PCI {chosen['pci']['vendor']}:{chosen['pci']['device']}"
        return f"{name} ({chosen['gfx'] or isa or 'unknown ISA'})"
    if ours["reported"]["device"] == "cuda" and ours["reported"]["gpu"]:
        return str(ours["reported"]["gpu"])
    return "CPU (no AMD GPU)"


def _gpu_of_result(r: TestResult) -> str:
    if r.host:
        return f"{r.gpu or 'AMD GPU'} ({r.host})"
    return r.gpu or ("CPU (no AMD GPU)" if r.device == "cpu" else r.device)


def _local_host(results_dir: Path, r: TestResult) -> str:
    """The host id of a local result: its bundle's (written by the same test run), else one
    per results folder (each folder one host, as `report --results` documents)."""
    path = results_dir / "bundles" / (f"{r.variant}.json" if r.scope == "full"
                                      else f"{r.variant}.{r.scope}.json")
    try:
        b = reader.load(path)
        if b.ours["image_id"] == r.image_id:
            return b.host_id
    except reader.BundleError:
        pass
    return "local-" + hashlib.sha256(str(results_dir.resolve()).encode()).hexdigest()[:26]


def collect(results_dirs: Sequence[Path], reports_dirs: Sequence[Path]) -> Merged:
    merged = Merged()
    published = published_digests(results_dirs)
    seen: set[tuple[str, ...]] = set()

    def add(run: Run) -> None:
        key = (run.host_id, run.variant, run.digest, run.profile or "", run.finished_at)
        if key in seen:
            merged.kept_out.append(clean(f"{run.source}: kept out: a duplicate of a run "
                                         f"already counted (host {run.host_id[:12]}, "
                                         f"{run.finished_at or 'no time'})"))
            return
        seen.add(key)
        merged.runs.append(run)

    for d in results_dirs:
        if not d.is_dir():
            continue
        for path, variant, _scope in stored_results(d):
            r = TestResult.load_path(path, variant)
            if r is None:
                continue
            digest = published.get(r.image_id, r.image_id)
            add(Run(r.variant, digest, digest != r.image_id, _gpu_of_result(r),
                    _local_host(d, r), r.profile, r.finished_at,
                    {c.case: (c.ok or c.known, c.status, c.area) for c in r.conv}, str(path)))
    for d in reports_dirs:
        for path in sorted(d.glob("*.json")) if d.is_dir() else ():
            try:
                b = reader.load(path)
            except reader.BundleError as exc:
                merged.kept_out.append(clean(f"{path}: kept out: {exc}"))
                continue
            if b.kind == "host-torch":
                digest, is_published = b.digest, False
            elif b.digest not in published:
                merged.kept_out.append(clean(f"{path}: kept out: image digest "
                                             f"{b.digest[:19]}... was never published (no "
                                             "publish record names it)"))
                continue
            else:
                digest, is_published = b.digest, True
            ours = b.ours
            add(Run(ours["variant"], digest, is_published, _gpu_of_bundle(ours), b.host_id,
                    ours["profile"], ours["finished_at"],
                    {c["case"]: (c["status"] in ("ok", "skipped") or c["verdict"] == "known",
                                 c["status"], c["area"]) for c in ours["cases"]}, str(path)))
    return merged


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def groups(merged: Merged) -> list[dict[str, Any]]:
    by_group: dict[tuple[str, str, str], list[Run]] = defaultdict(list)
    for run in merged.runs:
        by_group[(run.variant, run.digest, run.gpu)].append(run)
    out = []
    for (variant, digest, gpu), runs in by_group.items():
        latest: dict[str, Run] = {}
        for run in runs:  # a host's latest run stands for it
            if run.host_id not in latest or run.finished_at > latest[run.host_id].finished_at:
                latest[run.host_id] = run
        hosts = list(latest.values())
        n = len(hosts)
        passing: dict[str, int] = defaultdict(int)
        ran: dict[str, int] = defaultdict(int)
        failing_areas: dict[str, set[str]] = defaultdict(set)
        classes: dict[str, set[str]] = defaultdict(set)
        for run in hosts:
            for case, (ok, status, area) in run.cases.items():
                ran[case] += 1
                if ok:
                    passing[case] += 1
                else:
                    failing_areas[area or "other"].add(run.host_id)
                    classes[area or "other"].add(status)
        every = sorted(c for c in ran if passing[c] == ran[c])
        none = sorted(c for c in ran if passing[c] == 0)
        some = sorted(c for c in ran if 0 < passing[c] < ran[c])
        if not failing_areas:
            verdict = f"works: every case on {_plural(n, 'host')}"
        else:
            verdict = "; ".join(
                f"{area} fail on {len(failing)} of {_plural(n, 'host')} "
                f"({', '.join(sorted(classes[area]))})"
                for area, failing in sorted(failing_areas.items(), key=lambda kv: -len(kv[1])))
        out.append({
            "variant": variant, "digest": digest, "published": runs[0].published, "gpu": gpu,
            "hosts": n, "runs": len(runs), "host_ids": sorted(latest),
            "cases": {"every_host": every, "some_hosts": some, "no_host": none},
            "last_seen": max(r.finished_at for r in runs), "verdict": verdict,
        })
    out.sort(key=lambda g: (g["variant"], g["gpu"], g["digest"]))
    return out


def hosts(merged: Merged) -> list[dict[str, Any]]:
    by_host: dict[str, list[Run]] = defaultdict(list)
    for run in merged.runs:
        by_host[run.host_id].append(run)
    return [{"host_id": h, "gpus": sorted({r.gpu for r in runs}), "runs": len(runs),
             "variants": sorted({r.variant for r in runs}),
             "last_seen": max(r.finished_at for r in runs)}
            for h, runs in sorted(by_host.items())]


def to_json(merged: Merged) -> dict[str, Any]:
    """The fields compatibility.json gains (added beside the existing ones, none renamed)."""
    return {"hosts": hosts(merged), "groups": groups(merged), "kept_out": merged.kept_out}


def markdown(extra: dict[str, Any]) -> list[str]:
    lines = ["", "## Across hosts", "",
             "Per variant, image digest and GPU: hosts (each counted once, its latest run), "
             "runs, and the verdict from the cases.", ""]
    for g in extra["groups"]:
        lines.append(f"- {g['variant']} `{g['digest'][:19]}` on {g['gpu']}: "
                     f"{_plural(g['hosts'], 'host')}, {_plural(g['runs'], 'run')}, last seen "
                     f"{g['last_seen'] or '?'}: {g['verdict']}")
    if extra["kept_out"]:
        lines += ["", "Kept out:", ""] + [f"- {line}" for line in extra["kept_out"]]
    return [line.replace("|", "\\|") for line in lines]


TIME = Str(40)
GROUP = Obj({
    "variant": Str(63), "digest": Str(71, r"sha256:[0-9a-f]{64}"), "published": Bool(),
    "gpu": Str(300), "hosts": Int(1), "runs": Int(1), "host_ids": Arr(Str(40)),
    "cases": Obj({"every_host": Arr(Str(200)), "some_hosts": Arr(Str(200)),
                  "no_host": Arr(Str(200))}),
    "last_seen": TIME, "verdict": Str(5000),
})
HOST = Obj({"host_id": Str(40), "gpus": Arr(Str(300)), "runs": Int(1),
            "variants": Arr(Str(63)), "last_seen": TIME})
COMPATIBILITY: Node = Obj({
    "schema": Enum((1,)), "generated_at": Str(40), "classes": Map(Str(500), key=r"[a-z-]+"),
    "verdicts": Map(Str(500), key=r"[a-z-]+"), "cases": Arr(Any_(), 100_000),
    "rows": Arr(Obj({"label": Any_(), "variant": Any_(), "host": Any_(), "image_id": Any_(),
                     "passed": Any_(), "cells": Any_()}, extra=True), 100_000),
}, {"hosts": Arr(HOST, 100_000), "groups": Arr(GROUP, 100_000),
    "kept_out": Arr(Str(2000, None), 100_000)}, extra=True)


def schema_document() -> dict[str, Any]:
    return document(COMPATIBILITY, SCHEMA_ID, "imagefactory compatibility.json, version 1",
                    "What `imagefactory report` writes: one row per test result (rows, cells), "
                    "and, merged across hosts, hosts, groups per (variant, image digest, GPU) "
                    "and the inputs kept out with why.")
