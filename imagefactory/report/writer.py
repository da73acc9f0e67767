"""The compatibility report: which variant runs which convolution on which GPU.

Reads the `imagefactory test` results (one JSON per variant, verify/results.py) and writes
COMPATIBILITY.md (summary lines and the variant x case matrix), compatibility.json (the same
data for scripts and sites) and compatibility.png (a heatmap: read at a glance).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

from convcheck import vocabulary
from convcheck.vocabulary import OK, REGRESSION

from ..errors import JobError
from ..safety import escape_control, json_dumps, write_atomic
from ..verify.results import ConvCase, TestResult, profile_label, stored_results

SCHEMA = 1
MARKDOWN = "COMPATIBILITY.md"
JSON = "compatibility.json"
PNG = "compatibility.png"

# design.md's failure classes with what each means, passing first, and the verdicts against
# the variant's known_failures (verify/known.py), shown apart from classes: convcheck's words
# (convcheck/vocabulary.py), as the check itself uses them.
CLASSES: dict[str, str] = vocabulary.CLASSES
NOT_RUN = vocabulary.NOT_RUN
VERDICTS: dict[str, str] = {k: v for k, v in vocabulary.VERDICTS.items() if k != vocabulary.OK}


@dataclass(frozen=True)
class Row:
    """One test result: a variant tested on one host under one profile."""

    result: TestResult
    label: str

    @cached_property  # looked up once per case: computed once, not once per lookup
    def cells(self) -> dict[str, ConvCase]:
        return {c.case: c for c in self.result.conv}

    @cached_property
    def counts(self) -> Counter[str]:
        return Counter(c.status for c in self.result.conv)

    @property
    def verdicts(self) -> Counter[str]:
        """known / fixed / regression (failed cases of results without verdicts count as
        regressions)."""
        out: Counter[str] = Counter()
        for c in self.result.conv:
            if c.verdict in vocabulary.DECLARED:
                out[c.verdict] += 1
            elif not c.ok:
                out[vocabulary.REGRESSION] += 1
        return out

    @property
    def isa(self) -> str:
        return self.result.host or "no AMD GPU"

    @property
    def where(self) -> str:
        r = self.result
        if r.host:
            return f"{r.host}" + (f" ({r.gpu})" if r.gpu else "")
        return "CPU (no AMD GPU)" if r.device == "cpu" else r.device

    @property
    def profile(self) -> str:
        return profile_label(self.result.profile)

    def summary(self) -> str:
        r = self.result
        n = len(r.conv)
        ok = self.counts.get(vocabulary.OK, 0)
        bad = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items(), key=_class_order)
                        if k != vocabulary.OK)
        checks = f"{sum(c.passed for c in r.checks)}/{len(r.checks)} image checks passed"
        scope = "" if r.scope == "full" else f" ({r.scope} run)"
        v = self.verdicts
        judged = ", ".join(f"{v[k]} {k}" for k in VERDICTS if v[k])
        return (f"{'PASSED' if r.passed else 'FAILED'}{scope}: {ok}/{n} conv cases ok"
                + (f" ({bad})" if bad else "") + (f"; {judged}" if judged else "")
                + f"; {checks}")


@dataclass(frozen=True)
class Compatibility:
    rows: tuple[Row, ...]
    cases: tuple[str, ...]
    sources: tuple[str, ...]

    def cell(self, row: Row, case: str) -> ConvCase | None:
        return row.cells.get(case)


def _class_order(item: tuple[str, int]) -> int:
    keys = list(CLASSES)
    return keys.index(item[0]) if item[0] in keys else len(keys)


def load(results_dirs: Sequence[Path], variant_order: Iterable[str] = ()) -> Compatibility:
    """Every <variant>.json under the given folders, ordered as the matrix lists variants."""
    results: list[tuple[TestResult, str]] = []
    for d in results_dirs:
        if not d.is_dir():
            raise JobError(f"no results folder {d}: run `imagefactory test VARIANT "
                           f"--results {d}` first")
        for path, variant, _scope in stored_results(d):
            r = TestResult.load_path(path, variant)
            if r is not None:
                results.append((r, str(path)))
    if not results:
        dirs = ", ".join(str(d) for d in results_dirs)
        raise JobError(f"no test results in {dirs}: run `imagefactory test VARIANT` first")
    order = {name: i for i, name in enumerate(variant_order)}
    # Grouped by the ISA each result was tested on (results without an AMD GPU last), then
    # as the matrix lists variants.
    results.sort(key=lambda rp: (rp[0].host is None, rp[0].host or "",
                                 order.get(rp[0].variant, len(order)), rp[0].variant,
                                 rp[0].profile or ""))
    # A variant tested more than once is told apart by what differs: host, profile.
    hosts: dict[str, set[str]] = {}
    profiles: dict[str, set[str]] = {}
    for r, _ in results:
        hosts.setdefault(r.variant, set()).add(r.host or "no GPU")
        profiles.setdefault(r.variant, set()).add(profile_label(r.profile))
    rows = []
    for r, _ in results:
        parts = []
        if len(hosts[r.variant]) > 1:
            parts.append(r.host or "no GPU")
        if len(profiles[r.variant]) > 1:
            parts.append(profile_label(r.profile))
        rows.append(Row(r, r.variant + (f" ({', '.join(parts)})" if parts else "")))
    # Two hosts of one ISA, same variant and profile (#25): number them, never one label twice.
    counts = Counter(row.label for row in rows)
    seen: Counter[str] = Counter()
    for i, row in enumerate(rows):
        if counts[row.label] > 1:
            seen[row.label] += 1
            rows[i] = Row(row.result, f"{row.label} [host {seen[row.label]}]")
    cases: dict[str, None] = {}  # insertion-ordered set: linear in the number of cases
    for r, _ in results:
        for c in r.conv:
            cases.setdefault(c.case, None)
    return Compatibility(tuple(rows), tuple(cases), tuple(p for _, p in results))


def _seconds(s: float | None) -> str:
    if s is None:
        return ""
    return f"{s:.2f} s" if s < 100 else f"{s:.0f} s"


def cell_text(c: ConvCase | None) -> str:
    if c is None:
        return "·"
    if c.status == vocabulary.OK:
        compiled = (f" (compile {_seconds(c.compile_seconds)})"
                    if c.compile_seconds is not None and c.compile_seconds >= 1 else "")
        return (f"ok {_seconds(c.seconds)}{compiled}".strip()
                + (" (fixed)" if c.verdict == vocabulary.FIXED else ""))
    if c.status in vocabulary.UNCHECKED:
        return c.status
    if c.verdict == vocabulary.KNOWN:
        return f"{c.status} (known)"
    extra = ""
    if c.status == vocabulary.WRONG_RESULT and c.max_abs_err is not None:
        extra = f" (err {c.max_abs_err:.1e})"
    elif c.status == "hang" and c.seconds is not None:
        extra = f" (> {_seconds(c.seconds)})"
    return f"**{_md_escape(c.status)}**{extra}"


# What can start inline markup, raw HTML or a new table cell mid-line (the escaped text never
# starts a line, so block markers such as # - + need no escape).
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def _md_escape(text: str) -> str:
    """Text from a result file as inert Markdown: no markup, no HTML, one table cell."""
    text = " ".join(escape_control(text).split())
    return _MD_SPECIAL.sub(r"\\\1", text.replace("&", "&amp;"))


def _md_code(text: str) -> str:
    """A code span that holds `text` literally, whatever backticks or pipes it contains."""
    text = " ".join(escape_control(text).split()).replace("|", "\\|")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown(compat: Compatibility, png: str | None = PNG, generated: str | None = None,
             extra: Sequence[str] = ()) -> str:
    lines = ["# Compatibility", ""]
    when = generated or _now()
    lines += [f"Generated by `imagefactory report` at {when} from {len(compat.rows)} test "
              f"result(s). Each cell is one conv check case run in its own process: its class "
              "and, when it ran, its time.", ""]
    lines += ["## Summary", ""]
    isa = None
    for row in compat.rows:
        if row.isa != isa:
            isa = row.isa
            lines += [f"### {isa}", ""]
        lines.append(f"- **{_md_escape(row.label)}** on {_md_escape(row.where)}, profile "
                     f"{_md_code(row.profile)}: {_md_escape(row.summary())}")
    known = [(row, c) for row in compat.rows for c in row.result.conv if c.known]
    if known:
        lines += ["", "## Known failures", "",
                  "Failures the variant declares in variants.yaml (`known_failures`); they do "
                  "not fail a run. A declared case that passes is marked fixed.", ""]
        for row, c in known:
            lines.append(f"- {_md_escape(row.label)} {_md_code(c.case)}: "
                         f"{_md_escape(c.status)}: {_md_escape(c.known_reason)} "
                         f"({_md_escape(c.known_source)})")
    lines.append("")
    lines += ["", "| variant | GPU | profile | torch | HIP | image | tested |",
              "|---|---|---|---|---|---|---|"]
    for row in compat.rows:
        r = row.result
        image = r.image_id.removeprefix("sha256:")[:12]
        lines.append(f"| {_md_escape(row.label)} | {_md_escape(row.where)} | "
                     f"{_md_code(row.profile)} | {_md_escape(r.torch or '?')} | "
                     f"{_md_escape(r.hip or '-')} | {_md_code(image)} | "
                     f"{_md_escape(r.finished_at[:16].replace('T', ' ') or '?')} |")
    works = [row for row in compat.rows if row.result.conv_works]
    if works:
        lines += ["", "## What works", "",
                  "Per variant, in the conv check's areas: yes (every case that ran is ok), "
                  "partly (ok/ran), no, or not checked (skipped: this torch lacks it).", ""]
        for row in works:
            # Each piece escaped on its own: the bold markup is ours, the words are the file's.
            parts = [f"{_md_escape(what)}: **{_md_escape(str(info.get('verdict', '?')))}**"
                     + (f" ({_md_escape(', '.join(map(str, classes)))})"
                        if isinstance(classes := info.get("classes"), list) and classes
                        else "")
                     for what, info in _works_in_words(row.result.conv_works)]
            lines.append(f"- **{_md_escape(row.label)}** on {_md_escape(row.where)}: "
                         + "; ".join(parts))
    resets = [row for row in compat.rows if row.result.gpu_reset]
    for row in resets:
        lines.append(f"- {_md_escape(row.label)}: {_md_escape(row.result.gpu_reset or '')}")
    gpu_lines = [(row, _gpu_code_lines(row.result)) for row in compat.rows]
    if any(found for _, found in gpu_lines):
        lines += ["", "## GPU code", "",
                  "What the image's libraries carry code for (the GPU code audit, read from "
                  "the files; no GPU needed). A missing target means `no-kernel` at run time. "
                  "Under the override, `instructions` says whether the chip can decode the "
                  "gfx1030 code it loads (necessary, not sufficient: only the card shows how "
                  "it runs).",
                  ""]
        for row, found in gpu_lines:
            if found:
                lines.append(f"- **{_md_escape(row.label)}**: "
                             + "; ".join(_md_escape(x) for x in found))
    lines += ["", "## Matrix", ""]
    if png:
        lines += [f"![variant x case heatmap]({png})", ""]
    lines.append("| case | " + " | ".join(_md_escape(r.label) for r in compat.rows) + " |")
    lines.append("|---" * (len(compat.rows) + 1) + "|")
    for case in compat.cases:
        cells = [cell_text(compat.cell(row, case)) for row in compat.rows]
        lines.append(f"| {_md_code(case)} | " + " | ".join(cells) + " |")
    lines += ["", "## Classes", ""]
    lines += [f"- `{name}`: {what}" for name, what in CLASSES.items()]
    lines += [f"- ({name}): {what}" for name, what in VERDICTS.items()
              if name != vocabulary.REGRESSION]
    lines += ["- `·`: not run in that result (a --quick or --cases run)", ""]
    return "\n".join([*lines, *extra])


def _gpu_code_lines(r: TestResult) -> list[str]:
    """The GPU code check's summary and failures from a result (verify/gpucode), then one
    line per instruction check (`gpu_code.isa`, override variants); [] without."""
    gpu = r.gpu_code if isinstance(r.gpu_code, dict) else {}
    check = gpu.get("check")
    # Each key may hold any JSON value in a hostile file: only lists and strings are read.
    out: list[str] = []
    if isinstance(check, dict):
        for key in ("summary", "failures", "notes"):
            value = check.get(key)
            if isinstance(value, list):
                out += [str(x) for x in value]
    isa = gpu.get("isa")
    for item in isa if isinstance(isa, list) else ():
        if isinstance(item, dict) and isinstance(item.get("summary"), str):
            status = item.get("status")
            out.append(f"instructions ({status if isinstance(status, str) else '?'}): "
                       f"{item['summary']}")
    return out[:20]


def to_json(compat: Compatibility, generated: str | None = None,
            extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`extra`: fields added beside these (report/merge.py's hosts, groups, kept_out)."""
    rows = []
    for row in compat.rows:
        r = row.result
        rows.append({
            "label": row.label, "variant": r.variant, "host": r.host, "gpu": r.gpu,
            "device": r.device, "profile": r.profile, "torch": r.torch, "hip": r.hip,
            "image_id": r.image_id, "passed": r.passed, "quick": r.quick,
            "finished_at": r.finished_at, "summary": dict(sorted(row.counts.items(),
                                                                 key=_class_order)),
            "isa": r.host, "verdicts": dict(row.verdicts),
            "cells": {c.case: {"status": c.status, "seconds": c.seconds, "gflops": c.gflops,
                               "max_abs_err": c.max_abs_err, "area": c.area,
                               "compile_seconds": c.compile_seconds,
                               "run_seconds": c.run_seconds,
                               "verdict": c.verdict or (OK if c.ok else REGRESSION),
                               "known_reason": c.known_reason,
                               "known_source": c.known_source} for c in r.conv},
            "works": {k: dict(v) for k, v in r.conv_works.items()},
            "gpu_reset": r.gpu_reset,
            "gpu_code": _gpu_code_lines(r),
        })
    return {"schema": SCHEMA, "generated_at": generated or _now(), "classes": CLASSES,
            "verdicts": VERDICTS,
            "cases": list(compat.cases), "rows": rows, **(extra or {})}


# convcheck's areas in users' short words (convcheck/vocabulary.py, beside cases' AREAS).
AREA_WORDS: dict[str, str] = vocabulary.AREA_WORDS


def _works_in_words(works: Any) -> list[tuple[str, dict[str, Any]]]:
    known = [(AREA_WORDS[a], dict(works[a])) for a in AREA_WORDS if a in works]
    return known + [(str(a), dict(v)) for a, v in works.items() if a not in AREA_WORDS]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


now = _now  # the report's timestamp, for the site (report/site.py)


def write(compat: Compatibility, out_dir: Path, png: bool = True,
          extra: Mapping[str, Any] | None = None, extra_md: Sequence[str] = ()) -> list[Path]:
    """Write the three files, each whole or not at all; an unwritable folder is one line."""
    generated = _now()
    written = []
    path = write_atomic(out_dir / MARKDOWN, markdown(compat, PNG if png else None, generated,
                                                     extra_md), error=JobError, mode=0o644)
    written.append(path)
    path = write_atomic(out_dir / JSON, json_dumps(to_json(compat, generated, extra), indent=2)
                        + "\n", error=JobError, mode=0o644)
    written.append(path)
    if png:
        import io

        from .heatmap import render

        image, _ = render(compat)
        buf = io.BytesIO()
        image.save(buf, format="PNG", optimize=True)
        written.append(write_atomic(out_dir / PNG, buf.getvalue(), error=JobError, mode=0o644))
    return written
