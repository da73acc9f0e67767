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

from convcheck.vocabulary import area_works

from ..errors import JobError
from ..safety import clean, escape_control
from ..schema import DIGEST, GFX, Any_, Arr, Bool, Enum, Int, Map, Node, Obj, Opt, Str, document
from ..share import reader
from ..share import record as records
from ..share.bundle import bundle_path
from ..verify.results import Check, ConvCase, TestResult, stored_results
from .writer import Compatibility, _md_escape

SCHEMA_ID = "https://github.com/imagefactory/imagefactory/schemas/compatibility.v1.json"


# What a string may be in compatibility.json (its schema's bounds): text from result files
# and bundles is escaped and cut, so a hostile local result cannot make the file invalid.
def _text(value: str | None, limit: int) -> str:
    return escape_control(value or "")[:limit]


@dataclass(frozen=True)
class Run:
    """One test run of one variant on one host: the result (a local one, or one rebuilt from
    a bundle), and what it is counted by."""

    result: TestResult
    digest: str  # sha256:... the published digest, else the image id (a host torch's hash)
    published: bool
    gpu: str
    host_id: str
    host: str  # how the site names the host: the results folder, or "host <id>" of a bundle
    source: str

    @property
    def variant(self) -> str:
        return self.result.variant

    @property
    def key(self) -> tuple[str, ...]:
        r = self.result
        return (self.host_id, r.variant, self.digest, r.profile or "", r.scope, r.finished_at)


@dataclass
class Merged:
    runs: list[Run] = field(default_factory=list)
    kept_out: list[str] = field(default_factory=list)
    _seen: set[tuple[str, ...]] = field(default_factory=set, repr=False)

    def add(self, run: Run) -> bool:
        """Count `run`, unless a run with the same host, variant, digest, profile, scope and
        time is counted already (the same result twice: a bundle copied from a results
        folder, or submitted again)."""
        if run.key in self._seen:
            self.kept_out.append(_line(f"{run.source}: kept out: a duplicate of a run already "
                                       f"counted (host {run.host_id[:12]}, "
                                       f"{run.result.finished_at or 'no time'})"))
            return False
        self._seen.add(run.key)
        self.runs.append(run)
        return True


def _line(text: str) -> str:
    return clean(text)[:KEPT_OUT_CHARS]


KEPT_OUT_CHARS = 2000


def published_digests(results_dirs: Iterable[Path]) -> dict[str, str]:
    """image id -> the digest its publish record names; every published digest maps to
    itself too (a bundle names the digest, a local result the image id)."""
    out: dict[str, str] = {}
    for d in results_dirs:
        for path in sorted(d.glob(f"*{records.SUFFIX}")) if d.is_dir() else ():
            try:  # a record that does not read (share/record.py) names nothing
                record = records.load(path)
            except JobError:
                continue
            if record is None or record.stale:
                continue
            out[record.digest] = record.digest
            if record.image_id is not None:
                out[record.image_id] = record.digest
    return out


def gpu_label(gpu: str | None, isa: str | None, device: str) -> str:
    """The GPU model a run counts under, from what torch reported (the same fields in a local
    result and in a bundle, so one card from either source is one group)."""
    if isa:
        return _text(f"{gpu or 'AMD GPU'} ({isa})", 300)
    if gpu:
        return _text(gpu, 300)
    return "CPU (no AMD GPU)" if device == "cpu" else _text(device, 300)


def _gpu_of_bundle(ours: dict[str, Any]) -> str:
    reported = ours["reported"]
    gpu, isa = reported["gpu"], reported["isa"]
    if gpu is None and isa is not None:  # torch named no GPU: the host facts' name for it
        chosen = next((g for g in ours["host"]["gpus"] if g["gfx"] == isa), None)
        if chosen is not None:
            gpu = chosen["name"] or f"PCI {chosen['pci']['vendor']}:{chosen['pci']['device']}"
    return gpu_label(gpu, isa, reported["device"])


def result_of_bundle(b: reader.Bundle) -> TestResult:
    """The bundle as a TestResult, so the report and the site show it as they show a local
    result (what a bundle does not carry, such as the GPU code audit, stays empty)."""
    ours = b.ours
    conv = tuple(ConvCase(c["case"], c["status"], c["seconds"], max_abs_err=c["max_abs_err"],
                          detail=c["detail"], verdict=c["verdict"],
                          compile_seconds=c["compile_seconds"], run_seconds=c["run_seconds"],
                          area=c["area"], dtype=c["dtype"]) for c in ours["cases"])
    reported = ours["reported"]
    if b.kind == "image-digest":
        tag = f"{b.subject['name']}@{b.digest}"  # what to pull: the tested image exactly
    elif b.kind == "host-torch":
        tag = str(b.subject["name"])
    else:
        tag = f"{b.subject['name']}:{ours['variant']}"
    return TestResult(
        variant=ours["variant"], image_id=ours["image_id"], passed=b.result != "FAILED",
        checks=tuple(Check(c["name"], c["passed"], c["detail"]) for c in ours["checks"]),
        conv=conv, host=reported["isa"], profile=ours["profile"], image_tag=tag,
        device=reported["device"], quick=ours["scope"] == "quick", scope=ours["scope"],
        torch=reported["torch"], hip=reported["hip"], rocm=reported["rocm"],
        gpu=reported["gpu"], started_at=ours["started_at"], finished_at=ours["finished_at"],
        conv_works=works(conv))


def works(conv: Sequence[ConvCase]) -> dict[str, dict[str, Any]]:
    """Per area, what the conv check's own summary says (convcheck/runner.py works(), which
    a bundle does not carry): yes, no, partly (ok/ran) or not checked."""
    return {area: area_works([c.status for c in conv if c.area == area])
            for area in dict.fromkeys(c.area for c in conv if c.area)}


def folder_host_id(results_dir: Path) -> str:
    """The host id of a results folder without bundles: each folder one host, as
    `report --results` documents."""
    try:
        where = str(results_dir.resolve())
    except (OSError, ValueError):  # a name no file system takes (a NUL): the name itself
        where = str(results_dir)
    return "local-" + hashlib.sha256(where.encode("utf-8", "surrogateescape")).hexdigest()[:26]


def _local_host(results_dir: Path, r: TestResult) -> str:
    """The host id of a local result: its bundle's (written by the same test run), else the
    folder's."""
    try:
        b = reader.load(bundle_path(results_dir, r.variant, r.scope))
        if b.ours["image_id"] == r.image_id and b.ours["finished_at"] == r.finished_at:
            return b.host_id
    except reader.BundleError:
        pass
    return folder_host_id(results_dir)


def local_run(results_dir: Path, path: Path, r: TestResult,
              published: dict[str, str]) -> Run:
    digest = published.get(r.image_id, r.image_id)
    return Run(r, digest, digest != r.image_id, gpu_label(r.gpu, r.host, r.device),
               _local_host(results_dir, r), results_dir.name or str(results_dir), str(path))


def of_rows(compat: Compatibility) -> Merged:
    """The report's local results as runs, one host per results folder (the site of a report
    built without collect(), as the tests and older callers do)."""
    merged = Merged()
    sources = list(compat.sources) + [""] * (len(compat.rows) - len(compat.sources))
    for i, (row, src) in enumerate(zip(compat.rows, sources, strict=False)):
        r = row.result
        folder = Path(src).parent if src else None
        merged.add(Run(r, r.image_id, False, gpu_label(r.gpu, r.host, r.device),
                       folder_host_id(folder) if folder else f"local-row-{i}",
                       (folder.name or str(folder)) if folder else "this host",
                       src or f"(row {i})"))
    return merged


def collect(results_dirs: Sequence[Path], reports_dirs: Sequence[Path]) -> Merged:
    merged = Merged()
    published = published_digests(results_dirs)
    for d in results_dirs:
        if not d.is_dir():
            continue
        for path, variant, _scope in stored_results(d):
            r = TestResult.load_path(path, variant)
            if r is not None:
                merged.add(local_run(d, path, r, published))
    for d in reports_dirs:
        for path in sorted(d.glob("*.json")) if d.is_dir() else ():
            add_bundle(merged, path, published)
    return merged


def add_bundle(merged: Merged, path: Path, published: dict[str, str]) -> None:
    """Count the bundle in `path`, or keep it out with one line saying why."""
    try:
        b = reader.load(path)
    except reader.BundleError as exc:
        merged.kept_out.append(_line(f"{path}: kept out: {exc}"))
        return
    if b.kind == "host-torch":
        digest, is_published = b.digest, False
    elif b.digest not in published:
        merged.kept_out.append(_line(f"{path}: kept out: image digest {b.digest[:19]}... was "
                                     "never published (no publish record names it)"))
        return
    else:
        digest, is_published = published[b.digest], True
    result = result_of_bundle(b)
    merged.add(Run(result, digest, is_published, _gpu_of_bundle(b.ours), b.host_id,
                   f"host {b.host_id[:8]}", str(path)))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def latest_per_host(runs: Iterable[Run]) -> dict[str, Run]:
    """A host's latest run stands for it (ties: the one read last)."""
    latest: dict[str, Run] = {}
    for run in runs:
        if run.host_id not in latest or \
                run.result.finished_at >= latest[run.host_id].result.finished_at:
            latest[run.host_id] = run
    return latest


def verdict(hosts: Sequence[Run]) -> str:
    """From the facts of each host's latest run: which areas fail on how many hosts, with the
    failure classes (a known failure still fails its area, marked known); a run that failed
    its image checks, or failed with no failing case, counts against "image checks"."""
    n = len(hosts)
    failing: dict[str, set[str]] = defaultdict(set)
    classes: dict[str, set[str]] = defaultdict(set)
    for run in hosts:
        r = run.result
        bad_cases = [c for c in r.conv if not c.ok]
        for c in bad_cases:
            area = _text(c.area, 64) or "other"
            failing[area].add(run.host_id)
            classes[area].add(_text(c.status, 40) + (" known" if c.known else ""))
        bad_checks = [c for c in r.checks if not c.passed]
        if bad_checks or (not r.passed and not bad_cases):
            failing["image checks"].add(run.host_id)
            classes["image checks"].add(_plural(len(bad_checks), "failed check")
                                        if bad_checks else "run failed")
    if not failing:
        if not any(run.result.conv for run in hosts):
            return f"works: every image check on {_plural(n, 'host')} (no conv cases run)"
        return f"works: every case on {_plural(n, 'host')}"
    parts = [f"{area} fail on {len(who)} of {_plural(n, 'host')} "
             f"({', '.join(sorted(classes[area])[:5])})"
             for area, who in sorted(failing.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
    words = "; ".join(parts[:8]) + (f"; {len(parts) - 8} more areas" if len(parts) > 8 else "")
    return words[:VERDICT_CHARS]


VERDICT_CHARS = 5000
CASE_CHARS = 200


def groups(merged: Merged) -> list[dict[str, Any]]:
    """Per (variant, digest, GPU): hosts (each once), runs, the cases passing on every host,
    some hosts or none, when it was last seen, and the verdict."""
    by_group: dict[tuple[str, str, str], list[Run]] = defaultdict(list)
    for run in merged.runs:
        by_group[(run.variant, run.digest, run.gpu)].append(run)
    out = []
    for (variant, digest, gpu), runs in by_group.items():
        latest = latest_per_host(runs)
        hosts = list(latest.values())
        passing: dict[str, int] = defaultdict(int)
        ran: dict[str, int] = defaultdict(int)
        for run in hosts:
            for c in run.result.conv:
                name = _text(c.case, CASE_CHARS)
                ran[name] += 1
                passing[name] += c.ok
        out.append({
            "variant": variant, "digest": digest, "published": runs[0].published, "gpu": gpu,
            "isa": runs[0].result.host, "hosts": len(hosts), "runs": len(runs),
            "host_ids": sorted(latest),
            "cases": {"every_host": sorted(c for c in ran if passing[c] == ran[c]),
                      "some_hosts": sorted(c for c in ran if 0 < passing[c] < ran[c]),
                      "no_host": sorted(c for c in ran if passing[c] == 0)},
            "last_seen": _text(max(r.result.finished_at for r in runs), 40),
            "verdict": verdict(hosts),
        })
    out.sort(key=lambda g: (g["variant"], g["gpu"], g["digest"]))
    return out


def hosts(merged: Merged) -> list[dict[str, Any]]:
    by_host: dict[str, list[Run]] = defaultdict(list)
    for run in merged.runs:
        by_host[run.host_id].append(run)
    return [{"host_id": h, "gpus": sorted({r.gpu for r in runs}), "runs": len(runs),
             "variants": sorted({r.variant for r in runs}),
             "last_seen": _text(max(r.result.finished_at for r in runs), 40)}
            for h, runs in sorted(by_host.items())]


def to_json(merged: Merged) -> dict[str, Any]:
    """The fields compatibility.json gains (added beside the existing ones, none renamed)."""
    return {"hosts": hosts(merged), "groups": groups(merged), "kept_out": merged.kept_out}


def markdown(extra: dict[str, Any]) -> list[str]:
    lines = ["", "## Across hosts", "",
             "Per variant, image digest and GPU: hosts (each counted once, its latest run), "
             "runs, and the verdict from the cases.", ""]
    for g in extra["groups"]:  # the bundles' text as inert Markdown, as writer.py does
        lines.append(f"- {_md_escape(g['variant'])} `{g['digest'][:19]}` on "
                     f"{_md_escape(g['gpu'])}: {_plural(g['hosts'], 'host')}, "
                     f"{_plural(g['runs'], 'run')}, last seen "
                     f"{_md_escape(g['last_seen'] or '?')}: {_md_escape(g['verdict'])}")
    if extra["kept_out"]:
        lines += ["", "Kept out:", ""] + [f"- {_md_escape(line)}" for line in extra["kept_out"]]
    return lines


TIME = Str(40)
GROUP = Obj({
    "variant": Str(63), "digest": Str(71, DIGEST), "published": Bool(),
    "gpu": Str(300), "isa": Opt(Str(8, GFX)), "hosts": Int(1),
    "runs": Int(1), "host_ids": Arr(Str(40), 100_000),
    "cases": Obj({"every_host": Arr(Str(CASE_CHARS), 100_000),
                  "some_hosts": Arr(Str(CASE_CHARS), 100_000),
                  "no_host": Arr(Str(CASE_CHARS), 100_000)}),
    "last_seen": TIME, "verdict": Str(VERDICT_CHARS),
})
HOST = Obj({"host_id": Str(40), "gpus": Arr(Str(300)), "runs": Int(1),
            "variants": Arr(Str(63)), "last_seen": TIME})
COMPATIBILITY: Node = Obj({
    "schema": Enum((1,)), "generated_at": Str(40), "classes": Map(Str(500), key=r"[a-z-]+"),
    "verdicts": Map(Str(500), key=r"[a-z-]+"), "cases": Arr(Any_(), 100_000),
    "rows": Arr(Obj({"label": Any_(), "variant": Any_(), "host": Any_(), "image_id": Any_(),
                     "passed": Any_(), "cells": Any_()}, extra=True), 100_000),
}, {"hosts": Arr(HOST, 100_000), "groups": Arr(GROUP, 100_000),
    "kept_out": Arr(Str(KEPT_OUT_CHARS), 1_000_000)}, extra=True)


def schema_document() -> dict[str, Any]:
    return document(COMPATIBILITY, SCHEMA_ID, "imagefactory compatibility.json, version 1",
                    "What `imagefactory report` writes: one row per test result (rows, cells), "
                    "and, merged across hosts, hosts, groups per (variant, image digest, GPU) "
                    "and the inputs kept out with why.")
