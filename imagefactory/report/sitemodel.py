"""The compatibility site's model: what its pages show, computed once from the report's
Compatibility (writer.load), as plain values the templates only lay out.

Pages start from a card: one row per GPU model and variant (a verdict, the hosts, when it was
last seen, the `docker run` line to copy), a page per GPU model, a page per variant. The
results are the runs report/merge.py counted: local results and the bundles of other hosts,
each host once (its latest run stands for it) by its host id (a bundle's salted id, else one
per results folder); a host is shown as its results folder's name, or "host <id>" for a
bundle. Every string here is still the result file's text: the templates escape it.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from convcheck.vocabulary import FIXED, KNOWN, OK, REGRESSION

from ..engine.runspec import GpuRunSpec
from . import merge
from .writer import AREA_WORDS, Compatibility, Row, _gpu_code_lines, _works_in_words

NO_GPU = "none"  # the slug of results without an AMD GPU (the CPU variant, a CI machine)
MAX_HOSTS_SHOWN = 8  # per index row: the index stays small with thousands of hosts
VERDICT_ORDER = ("works", "mixed", "fails")
ROCM_DEVICES = (("/dev/kfd", "/dev/kfd"), ("/dev/dri", "/dev/dri"))

# (variant, profile, image) -> (env, whether the image needs the GPU devices), or None when
# the matrix does not know the variant; see commands/report.py.
RunInfo = Callable[[str, str | None], tuple[dict[str, str], bool] | None]


@dataclass(frozen=True)
class Link:
    """A known failure's source: a link only when the result declared an http(s) URL."""

    text: str
    href: str | None


@dataclass(frozen=True)
class CaseView:
    case: str
    status: str
    verdict: str  # ok | known | fixed | regression
    text: str  # the cell as words: "ok 0.04 s", "hang (known)"
    area: str
    detail: str
    known_reason: str
    source: Link | None


@dataclass(frozen=True)
class ResultView:
    index: int
    variant: str
    label: str
    host: str
    host_id: str
    digest: str  # the published digest, else the image id
    gpu_slug: str
    isa: str
    gpu_name: str
    profile: str
    torch: str
    declared_torch: str
    hip: str
    rocm: str
    image_id: str
    image_tag: str
    passed: bool
    scope: str
    finished_at: str
    summary: str
    works: tuple[tuple[str, str, str], ...]  # (area in words, verdict, classes)
    gpu_code: tuple[str, ...]
    gpu_reset: str
    checks: tuple[tuple[str, bool, str], ...]
    cases: tuple[CaseView, ...]


@dataclass(frozen=True)
class Pair:
    """One GPU model with one variant: the index's row."""

    gpu_slug: str
    gpu_label: str
    variant: str
    verdict: str  # works | mixed | fails
    words: str  # the verdict for people: "works on 2 hosts (2 known failures)"
    host_count: int  # hosts counted once each (merge's host ids)
    hosts: tuple[str, ...]  # at most MAX_HOSTS_SHOWN
    more_hosts: int
    counted: tuple[str, ...]  # merge's verdict per image digest: "works: every case on 2 hosts"
    last_seen: str
    run_line: str
    results: tuple[ResultView, ...]

    @property
    def latest(self) -> ResultView:
        return max(self.results, key=lambda r: r.finished_at)


@dataclass(frozen=True)
class GpuPage:
    slug: str
    label: str  # gfx1010 (AMD Radeon RX 5600 XT, ...)
    names: tuple[str, ...]
    pairs: tuple[Pair, ...]  # best first
    areas: tuple[str, ...]  # the columns of "what works"
    works: tuple[tuple[Pair, tuple[str, ...]], ...]  # per pair, its verdict in each area
    known: tuple[tuple[str, CaseView], ...]  # (variant, case) of declared failures seen

    @property
    def start_with(self) -> Pair | None:
        return self.pairs[0] if self.pairs else None


@dataclass(frozen=True)
class VariantPage:
    slug: str
    name: str
    digests: tuple[str, ...]
    stacks: tuple[str, ...]
    gpu_code: tuple[str, ...]
    pairs: tuple[Pair, ...]
    results: tuple[ResultView, ...]


@dataclass(frozen=True)
class Site:
    generated: str
    results: int
    pairs: tuple[Pair, ...]
    gpus: tuple[GpuPage, ...]
    variants: tuple[VariantPage, ...]


_SLUG_BAD = re.compile(r"[^a-z0-9._-]")


def slug(name: str) -> str:
    """A file-name part: variant names and ISAs already have this shape; anything else is
    made so (and can never be '..' or empty)."""
    s = _SLUG_BAD.sub("-", name.lower())[:64].strip(".") or "x"
    return s


def source_link(text: str) -> Link | None:
    if not text:
        return None
    try:
        parts = urlsplit(text.strip())
    except ValueError:
        return Link(text, None)
    ok = parts.scheme in ("http", "https") and bool(parts.netloc) and not any(
        c.isspace() or ord(c) < 32 for c in text.strip())
    return Link(text, text.strip() if ok else None)


def _case_text(status: str, verdict: str, seconds: float | None) -> str:
    if status == OK:
        t = "ok" if seconds is None else f"ok {seconds:.2f} s"
        return t + (" (fixed)" if verdict == FIXED else "")
    return f"{status} (known)" if verdict == KNOWN else status


def _result_view(i: int, row: Row, run: merge.Run) -> ResultView:
    r = row.result
    cases = tuple(CaseView(c.case, c.status, c.verdict or (OK if c.ok else REGRESSION),
                           _case_text(c.status, c.verdict, c.seconds), c.area, c.detail,
                           c.known_reason, source_link(c.known_source))
                  for c in r.conv)
    works = []
    for what, info in _works_in_words(r.conv_works):
        classes = info.get("classes")
        works.append((what, str(info.get("verdict", "?")),
                      ", ".join(map(str, classes)) if isinstance(classes, list) else ""))
    return ResultView(
        index=i, variant=r.variant, label=row.label, host=run.host, host_id=run.host_id,
        digest=run.digest,
        gpu_slug=slug(r.host) if r.host else NO_GPU, isa=r.host or "no AMD GPU",
        gpu_name=r.gpu or "", profile=row.profile, torch=r.torch or "?",
        declared_torch=r.declared_torch or "", hip=r.hip or "", rocm=r.rocm or "",
        image_id=r.image_id, image_tag=r.image_tag, passed=r.passed, scope=r.scope,
        finished_at=r.finished_at, summary=row.summary(), works=tuple(works),
        gpu_code=tuple(_gpu_code_lines(r)), gpu_reset=r.gpu_reset or "",
        checks=tuple((c.name, c.passed, c.detail) for c in r.checks), cases=cases)


def run_line(variant: str, profile: str | None, image: str, needs_gpu: bool,
             run_info: RunInfo | None) -> str:
    """The `docker run` line `imagefactory run VARIANT --print` would give on a host whose
    device groups are the user's (the same function builds it); the host's group ids and
    working-directory mount are the user's to add, so they are left out."""
    env: dict[str, str] = {}
    info = run_info(variant, profile) if run_info else None
    if info is not None:
        env, needs_gpu = info
    spec = GpuRunSpec(image=image, command=("python3",),
                      devices=ROCM_DEVICES if needs_gpu else (), env=env)
    argv = spec.docker_argv(tty=True)
    return shlex.join(argv)


def _pair(gpu_slug: str, gpu_label: str, variant: str, views: Sequence[ResultView],
          run_info: RunInfo | None, groups: Sequence[dict[str, object]]) -> Pair:
    # Each host once: its latest result stands for it (as merge.groups counts).
    latest_of: dict[str, ResultView] = {}
    for v in views:
        if v.host_id not in latest_of or v.finished_at >= latest_of[v.host_id].finished_at:
            latest_of[v.host_id] = v
    hosts_latest = list(latest_of.values())
    n = len(hosts_latest)
    passed = sum(v.passed for v in hosts_latest)
    verdict = "works" if passed == n else "fails" if passed == 0 else "mixed"
    latest = max(views, key=lambda v: v.finished_at)
    known = sum(c.verdict == "known" for c in latest.cases)
    on = f"{n} host{'s' if n != 1 else ''}"
    words = {"works": f"works on {on}", "fails": f"fails on {on}",
             "mixed": f"mixed: works on {passed} of {on}"}[verdict]
    if known:
        words += f" ({known} known failure{'s' if known != 1 else ''})"
    if latest.scope != "full":
        words += f" ({latest.scope} run)"
    # A host's name, told apart by its id where two hosts' folders share a name.
    names = Counter(v.host for v in hosts_latest)
    shown = tuple(v.host if names[v.host] == 1 else f"{v.host} ({v.host_id[:8]})"
                  for v in sorted(hosts_latest, key=lambda v: (v.host, v.host_id)))
    image = latest.image_tag or variant
    line = run_line(variant, None if latest.profile == "default" else latest.profile, image,
                    gpu_slug != NO_GPU, run_info)
    counted = tuple(f"{g['verdict']} (image {str(g['digest'])[:19]}..., {g['runs']} "
                    f"run{'s' if g['runs'] != 1 else ''}, last seen {g['last_seen'] or '?'})"
                    for g in groups)
    return Pair(gpu_slug, gpu_label, variant, verdict, words, n, shown[:MAX_HOSTS_SHOWN],
                max(0, n - MAX_HOSTS_SHOWN), counted, latest.finished_at, line, tuple(views))


def _rank(p: Pair) -> tuple[int, float, int]:
    latest = p.latest
    n = len(latest.cases) or 1
    ok = sum(c.verdict in ("ok", "fixed") for c in latest.cases)
    return VERDICT_ORDER.index(p.verdict), -ok / n, sum(c.verdict == "known"
                                                         for c in latest.cases)


def build(compat: Compatibility, generated: str, run_info: RunInfo | None = None,
          merged: merge.Merged | None = None) -> Site:
    """The site of `merged` (local results and other hosts' bundles, as the report counted
    them); without it, of the report's local results alone, one host per results folder."""
    if merged is None:
        merged = merge.of_rows(compat)
    # Local results in the report's order (grouped by ISA, as the matrix lists variants),
    # with its labels; other hosts' runs after them, labelled by their host.
    labels = {src: (i, row.label) for i, (row, src) in
              enumerate(zip(compat.rows, compat.sources, strict=False))}
    runs = sorted(merged.runs, key=lambda run: labels.get(run.source, (len(labels), ""))[0])
    views = [_result_view(i, Row(run.result, labels[run.source][1] if run.source in labels
                                 else f"{run.variant} ({run.host})"), run)
             for i, run in enumerate(runs)]
    by_pair: dict[tuple[str, str], list[dict[str, object]]] = {}
    for group in merge.groups(merged):
        isa = group["isa"]
        key = (slug(isa) if isinstance(isa, str) else NO_GPU, str(group["variant"]))
        by_pair.setdefault(key, []).append(group)
    variant_order = list(dict.fromkeys(v.variant for v in views))
    grouped: dict[tuple[str, str], list[ResultView]] = {}
    names: dict[str, dict[str, None]] = {}
    isas: dict[str, str] = {}
    for v in views:
        grouped.setdefault((v.gpu_slug, v.variant), []).append(v)
        isas[v.gpu_slug] = v.isa
        if v.gpu_name:
            names.setdefault(v.gpu_slug, {})[v.gpu_name] = None
    gpu_order = sorted(isas, key=lambda s: (s == NO_GPU, s))

    def label(s: str) -> str:
        known = list(names.get(s, {}))
        shown = ", ".join(known[:3]) + (", ..." if len(known) > 3 else "")
        return isas[s] + (f" ({shown})" if shown else "")

    pairs = {key: _pair(key[0], label(key[0]), key[1], vs, run_info, by_pair.get(key, []))
             for key, vs in grouped.items()}
    # Per GPU model, the variant to start with first.
    rank = {v: i for i, v in enumerate(variant_order)}
    gpu_rank = {g: i for i, g in enumerate(gpu_order)}
    ordered = tuple(sorted(pairs.values(), key=lambda p: (gpu_rank[p.gpu_slug],
                                                          _rank(p), rank[p.variant])))
    gpus = []
    for g in gpu_order:
        mine = [p for p in ordered if p.gpu_slug == g]
        seen = {a for p in mine for a, _, _ in p.latest.works}
        areas = [w for w in AREA_WORDS.values() if w in seen]
        areas += sorted(seen - set(areas))
        works = tuple((p, tuple({a: verdict for a, verdict, _ in p.latest.works}.get(a, "-")
                                for a in areas)) for p in mine)
        known = tuple((p.variant, c) for p in mine for c in p.latest.cases
                      if c.verdict == "known")
        gpus.append(GpuPage(g, label(g), tuple(names.get(g, {})), tuple(mine), tuple(areas),
                            works, known))
    variants = []
    for name in variant_order:
        mine_v = [v for v in views if v.variant == name]
        stacks = dict.fromkeys(
            f"torch {v.torch}" + (f" (declared {v.declared_torch})"
                                  if v.declared_torch and v.declared_torch != v.torch else "")
            + (f", HIP {v.hip}" if v.hip else "") + (f", ROCm {v.rocm}" if v.rocm else "")
            for v in mine_v)
        variants.append(VariantPage(
            slug(name), name, tuple(dict.fromkeys(v.digest for v in mine_v)), tuple(stacks),
            tuple(dict.fromkeys(x for v in mine_v for x in v.gpu_code)),
            tuple(p for p in ordered if p.variant == name), tuple(mine_v)))
    return Site(generated, len(views), ordered, tuple(gpus), tuple(variants))
