"""The compatibility site (issue #24): pages from the report's model, every value escaped,
a CSP on every page, links only to http(s) sources, an SVG heatmap of bounded size, and an
index under 1 MB for 10,000 results."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fuzzing import NASTY
from hypothesis import given, settings
from hypothesis import strategies as st

from imagefactory.cli import main
from imagefactory.matrix.loader import load_matrix
from imagefactory.report import site, sitemodel, svgmap
from imagefactory.report import writer as report
from imagefactory.verify.results import Check, ConvCase, TestResult

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "results"
IMAGE = "sha256:" + "a" * 64
HOSTILE = ["<script>window.pwned=1</script>", "<img src=x onerror=window.pwned=1>",
           "\"><svg onload=window.pwned=1>", "javascript:window.pwned=1", "</textarea>",
           "<!--", "]]>", "&amp;", "{{ 7*7 }}", "{% raw %}", "\x1b]0;t\x07"]
text = st.lists(st.one_of(st.sampled_from(HOSTILE + NASTY), st.text(max_size=6)),
                max_size=4).map("".join)
ALLOWED_TAGS = {"html", "head", "meta", "title", "link", "script", "body", "header", "a",
                "span", "main", "footer", "b", "h1", "h2", "h3", "p", "code", "nav", "form",
                "label", "select", "option", "table", "thead", "tbody", "tr", "th", "td",
                "img", "section", "ul", "li", "details", "summary", "dl", "dt", "dd", "br"}


class Page(HTMLParser):
    """What a browser would build: tags with attributes, and the text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Page:
    p = Page()
    p.feed(html)
    p.close()
    return p


def check_page(name: str, html: str, files: set[str], sources: set[str]) -> Page:
    """The rules every page keeps, whatever the results held."""
    page = parse(html)
    metas = [a for t, a in page.tags if t == "meta" and a.get("http-equiv")]
    assert metas == [{"http-equiv": "Content-Security-Policy", "content": site.CSP}], name
    first_csp = next(i for i, (t, a) in enumerate(page.tags) if a.get("http-equiv"))
    first_resource = next(i for i, (t, _) in enumerate(page.tags)
                          if t in ("link", "script", "img"))
    assert first_csp < first_resource, name  # the policy comes before any resource
    for tag, attrs in page.tags:
        assert tag in ALLOWED_TAGS, (name, tag)
        assert not any(k.startswith("on") for k in attrs), (name, tag, attrs)
        assert "style" not in attrs, (name, tag)
        if tag == "script":
            assert attrs == {"src": "filter.js", "defer": None}, (name, attrs)
        for key in ("href", "src"):
            url = attrs.get(key)
            if url is None:
                continue
            if tag == "a" and url not in files:
                assert url in sources and url.startswith(("http://", "https://")), (name, url)
            else:
                assert url in files, (name, tag, url)
    return page


def _compat(results: list[tuple[str, TestResult]]) -> report.Compatibility:
    d: dict[str, Path] = {}
    rows = [report.Row(r, r.variant) for _, r in results]
    for host, _ in results:
        d[host] = Path(host) / "x.json"
    return report.Compatibility(tuple(rows), tuple(dict.fromkeys(
        c.case for _, r in results for c in r.conv)), tuple(str(d[h]) for h, _ in results))


def test_site_from_two_hosts_through_the_cli(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    a, b, out = tmp_path / "host-a", tmp_path / "host-b", tmp_path / "out"
    a.mkdir()
    b.mkdir()
    for f in FIXTURES.glob("*.json"):
        shutil.copy(f, a / f.name)
    shutil.copy(FIXTURES / "rocm62-native.json", b / "rocm62-native.json")
    main_args = ["--config", str(REPO / "variants.yaml"), "report", "--results", str(a),
                 "--results", str(b), "--out", str(out), "--no-png"]
    with pytest.raises(SystemExit) as exc:
        main(main_args)
    assert exc.value.code in (0, None), capsys.readouterr().err
    pages = {p.name: p.read_text() for p in (out / "site").iterdir()}
    assert {"index.html", "gpu-gfx1010.html", "variant-rocm62-native.html", "heatmap.svg",
            "site.css", "filter.js", "favicon.svg"} <= set(pages)
    files = set(pages)
    for name, html in pages.items():
        if name.endswith(".html"):
            check_page(name, html, files, set())
    index = parse(pages["index.html"])
    rows = [a for t, a in index.tags if t == "tr" and "data-gpu" in a]
    assert len(rows) == 4  # four variants on one GPU model
    native = pages["variant-rocm62-native.html"]
    assert "host-a: gfx1010" in native and "host-b: gfx1010" in native
    assert "host-a, host-b" in pages["index.html"]
    # The docker run line is what `imagefactory run` builds, with the variant's profile env
    # from the matrix: the patched variant overrides the ISA, the native one does not.
    gpu = pages["gpu-gfx1010.html"]
    assert "Start with rocm62-native" in gpu
    lines = [t for t in parse(gpu).text if t.startswith("docker run --")]
    assert len(lines) == 5  # the one to start with, and one per variant
    assert any("HSA_OVERRIDE_GFX_VERSION" in t and "rocm62-patched" in t for t in lines)
    assert not any("HSA_OVERRIDE_GFX_VERSION" in t and "rocm62-native" in t for t in lines)
    assert all("--device=/dev/kfd" in t and "--security-opt=seccomp=unconfined" in t
               for t in lines)


def test_run_line_takes_env_from_the_matrix() -> None:
    matrix = load_matrix(REPO / "variants.yaml")
    info = site.run_info(matrix)
    assert info is not None
    env, gpu = info("rocm62-patched", None) or ({}, False)
    line = sitemodel.run_line("rocm62-patched", None, "img:1", False, info)
    assert gpu and all(f"{k}={v}" in line for k, v in env.items())
    assert info("no-such-variant", None) is None
    assert "--device" not in sitemodel.run_line("x", None, "img:1", False, info)


@settings(max_examples=40, deadline=None)
@given(case=text, detail=text, gpu=st.none() | text, reason=text, source=text,
       tag=text, host=text, works=text, check=text)
def test_fuzz_hostile_results_render_as_text(case: str, detail: str, gpu: str | None,
                                             reason: str, source: str, tag: str, host: str,
                                             works: str, check: str) -> None:
    conv = (ConvCase(case or "c", "hang", 1.0, detail=detail, verdict="known",
                     known_reason=reason, known_source=source),
            ConvCase("ok-case", "ok", 0.1, area=works))
    r = TestResult("rocm62-native", IMAGE, False, (Check(check, False, detail),), conv,
                   "gfx1010", None, gpu=gpu, image_tag=tag,
                   conv_works={works or "w": {"verdict": works, "classes": [works]}},
                   gpu_code={"check": {"summary": [detail], "failures": detail}})
    compat = _compat([(host.replace("/", "_") or "h", r)])
    model = sitemodel.build(compat, "now")
    pages = site.pages(model)
    link = sitemodel.source_link(source)
    sources = {link.href} if link and link.href else set()
    for name, html in pages.items():
        if name.endswith(".html"):
            check_page(name, html, set(pages), sources)
    ET.fromstring(pages["heatmap.svg"])  # well-formed XML whatever the names
    svg = ET.fromstring(pages["heatmap.svg"])
    assert not [e for e in svg.iter() if not e.tag.endswith(("svg", "title", "rect", "text",
                                                            "g"))]
    assert not any(k.startswith("on") for e in svg.iter() for k in e.attrib)
    # Hostile text arrives as text: the parsed page holds it whole (one line where cut).
    variant_text = "".join(parse(pages["variant-rocm62-native.html"]).text)
    for value in (detail, reason):
        if value.strip() and "\r" not in value and "\x00" not in value:
            assert value.strip() in variant_text


@pytest.mark.parametrize("source,href", [
    ("https://github.com/ROCm/MIOpen/issues/1", "https://github.com/ROCm/MIOpen/issues/1"),
    ("http://example.org/x", "http://example.org/x"),
    ("javascript:alert(1)", None), ("JAVASCRIPT://x", None), ("data:text/html,x", None),
    ("//evil.example/x", None), ("file:///etc/passwd", None), ("https:///nohost", None),
    ("https://a.example/\nx", None), ("ROCm issue 1", None)])
def test_sources_link_only_to_http_urls(source: str, href: str | None) -> None:
    link = sitemodel.source_link(source)
    assert link is not None and link.href == href and link.text == source


def _many(n_results: int, n_cases: int = 40) -> report.Compatibility:
    variants = ["rocm62-native", "rocm62-patched", "rocm52-torch20", "cpu"]
    results = []
    for i in range(n_results):
        conv = tuple(ConvCase(f"case-{k}", "ok" if (i + k) % 7 else "hang", 0.25,
                              verdict="known" if (i + k) % 7 == 0 and i % 2 else "")
                     for k in range(n_cases))
        v = variants[i % len(variants)]
        r = TestResult(v, IMAGE, i % 3 != 0, (), conv, None if v == "cpu" else
                       ("gfx1010", "gfx1012")[i % 2], None, gpu="AMD Radeon RX 5600 XT",
                       finished_at=f"2026-11-{1 + i % 28:02d}T00:00:00Z")
        results.append((f"host-{i}", r))
    return _compat(results)


def test_index_stays_under_a_megabyte_with_10000_results() -> None:
    model = sitemodel.build(_many(10_000, 5), "now")
    pages = site.pages(model)
    assert len(pages["index.html"].encode()) < 1_000_000
    assert len(pages["heatmap.svg"].encode()) < svgmap.MAX_BYTES
    assert "and 2492 more" in pages["index.html"]  # 2,500 hosts a row: past 8, counted


def test_svg_heatmap_is_bounded_whatever_the_input() -> None:
    conv = tuple(ConvCase(f"case-{i}-" + "<x>" * 3000, "ok", 0.5, detail="d" * 100_000)
                 for i in range(1000))
    r = TestResult("v", IMAGE, True, (), conv, "gfx1010", None, gpu="G" * 50_000)
    compat = _compat([(f"h{i}", r) for i in range(100)])
    heat = svgmap.layout(sitemodel.build(compat, "now").variants[0].results)
    svg = site._env().get_template("heatmap.svg").render(map=heat)
    assert len(svg.encode()) < svgmap.MAX_BYTES
    assert heat.width < 8000 and heat.height < 5000, (heat.width, heat.height)
    assert "60 results not drawn" in svg and "850 cases not drawn" in svg
    root = ET.fromstring(svg)
    titles = [e.text or "" for e in root.iter("{http://www.w3.org/2000/svg}title")]
    assert max(len(t) for t in titles) <= svgmap.TITLE_CHARS


def test_templates_ship_in_the_wheel_layout() -> None:
    # hatch packages every file under imagefactory/: the site's templates and static files
    # are read through importlib.resources, as from an installed wheel.
    from importlib import resources

    folder = resources.files("imagefactory.report") / "site_templates"
    names = {p.name for p in folder.iterdir()}
    assert set(site.STATIC) | {"index.html", "gpu.html", "variant.html", "heatmap.svg"} <= names


def test_compatibility_json_is_unchanged_by_the_site(tmp_path: Path) -> None:
    # The site adds files; compatibility.json keeps its fields (other tools read it).
    for f in FIXTURES.glob("*.json"):
        shutil.copy(f, tmp_path / f.name)
    compat = report.load([tmp_path])
    report.write(compat, tmp_path, png=False)
    data = json.loads((tmp_path / report.JSON).read_text())
    assert set(data) == {"schema", "generated_at", "classes", "verdicts", "cases", "rows"}
