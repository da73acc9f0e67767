"""The compatibility site in a real browser (issue #24): Debian's chromium, headless, driven
by Playwright for Python. Pages load with no console error and no failed request, the GPU
filter leaves only that GPU's rows, and hostile result text stays text (a payload that would
set a global leaves it unset). Missing chromium fails under IMAGEFACTORY_REQUIRE_DOCKER=1."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from needs import missing

from imagefactory.report import site, sitemodel
from imagefactory.report import writer as report
from imagefactory.verify.results import ConvCase, TestResult

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "results"
CHROMIUM = "/usr/bin/chromium"
IMAGE = "sha256:" + "b" * 64
PAYLOADS = ["<script>window.pwned=1</script>", "<img src=x onerror=\"window.pwned=1\">",
            "\"><svg onload=window.pwned=1>", "'><script>window.pwned=1</script>",
            "javascript:window.pwned=1"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (scripts/setup-test-env.sh installs it)")
    if not Path(CHROMIUM).exists():
        missing(f"no {CHROMIUM} (Debian's chromium; scripts/setup-test-env.sh installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _write_site(out: Path, hostile: bool) -> None:
    results = tmp = out / "results"
    tmp.mkdir(parents=True)
    for f in FIXTURES.glob("*.json"):
        shutil.copy(f, results / f.name)
    if hostile:
        conv = tuple(ConvCase(p, "hang", 1.0, detail=p, verdict="known", known_reason=p,
                              known_source=p) for p in PAYLOADS)
        other = results.parent / PAYLOADS[1].replace("/", "_")
        other.mkdir()
        TestResult("rocm62-patched", IMAGE, False, (), conv, "gfx1012", None,
                   gpu=PAYLOADS[0], image_tag=PAYLOADS[2]).save(other)
        dirs = [results, other]
    else:
        dirs = [results]
    compat = report.load(dirs)
    site.write(sitemodel.build(compat, "now"), out / "site")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The site over a local http.server on 127.0.0.1 (and so over http, as Pages serves)."""
    out = tmp_path_factory.mktemp("site")
    _write_site(out, hostile=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(out / "site"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(10)


def _open(browser: Any, url: str) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}")
            if r.status >= 400 else None)
    page.goto(url, wait_until="load")
    return page, problems


def test_every_page_loads_clean(browser: Any, served: str) -> None:
    page, problems = _open(browser, served + "/index.html")
    links = page.eval_on_selector_all("a[href$='.html']", "as => as.map(a => a.href)")
    page.close()
    assert problems == []
    assert any("gpu-gfx1010.html" in u for u in links)
    for url in sorted(set(links)):
        page, problems = _open(browser, url)
        assert problems == [], url
        assert page.evaluate("typeof window.pwned") == "undefined", url
        page.close()


def test_hostile_strings_render_as_text(browser: Any, served: str) -> None:
    for name in ("index.html", "gpu-gfx1012.html", "variant-rocm62-patched.html"):
        page, problems = _open(browser, f"{served}/{name}")
        assert page.evaluate("typeof window.pwned") == "undefined", name
        body = page.inner_text("body")
        assert PAYLOADS[0] in body, name  # shown, as text
        # No element the payloads would make; the only scripts are the site's own.
        assert page.eval_on_selector_all("svg, img[src=x]", "e => e.length") == 0, name
        srcs = page.eval_on_selector_all("script", "s => s.map(x => x.getAttribute('src'))")
        assert srcs in ([], ["filter.js"]), (name, srcs)
        assert problems == [], name
        page.close()
    page, _ = _open(browser, f"{served}/variant-rocm62-patched.html")
    hrefs = page.eval_on_selector_all("a", "as => as.map(a => a.getAttribute('href'))")
    assert not any(h.lower().startswith("javascript") for h in hrefs)
    page.close()


def test_gpu_filter_shows_only_that_gpus_rows(browser: Any, served: str) -> None:
    page, problems = _open(browser, served + "/index.html")
    assert page.is_visible("#gpu-filter")  # the script ran (the CSP let it) and showed it
    visible = "rs => rs.filter(r => r.offsetParent !== null).map(r => r.dataset.gpu)"
    before = page.eval_on_selector_all("tr[data-gpu]", visible)
    assert set(before) == {"gfx1010", "gfx1012"}
    page.select_option("#gpu-filter", "gfx1010")
    after = page.eval_on_selector_all("tr[data-gpu]", visible)
    assert after and set(after) == {"gfx1010"}
    assert len(after) == before.count("gfx1010")
    page.select_option("#gpu-filter", "")
    assert len(page.eval_on_selector_all("tr[data-gpu]", visible)) == len(before)
    assert problems == []
    page.close()


def test_pages_work_from_files_too(browser: Any, tmp_path: Path) -> None:
    # Opened straight from disk (file://): the CSP's 'self' still lets the CSS and filter in.
    _write_site(tmp_path, hostile=False)
    page, problems = _open(browser, (tmp_path / "site" / "index.html").as_uri())
    assert problems == []
    assert page.is_visible("#gpu-filter")
    colour = page.eval_on_selector("header", "h => getComputedStyle(h).backgroundColor")
    assert colour == "rgb(38, 50, 56)"  # site.css applied
    page.close()


def test_two_hosts_shown_in_the_browser(browser: Any, tmp_path: Path) -> None:
    """This machine's results plus a second host's bundle (made by the share code, its own
    salt), through `imagefactory report`: chromium shows the pair on 2 hosts."""
    import json

    from imagefactory.cli import main
    from imagefactory.host.facts import Roots
    from imagefactory.share import bundle as bundles
    from imagefactory.share.run import make_for

    results, reports, out = tmp_path / "this-host", tmp_path / "reports", tmp_path / "out"
    results.mkdir()
    reports.mkdir()
    shutil.copy(FIXTURES / "rocm62-native.json", results / "rocm62-native.json")
    r = TestResult.load_path(results / "rocm62-native.json")
    assert r is not None
    (results / "rocm62-native.publish.json").write_text(json.dumps(
        {"variant": r.variant, "image_id": r.image_id, "digest": "sha256:" + "c" * 64,
         "repository": "ghcr.io/o/imagefactory"}))
    roots = Roots(REPO / "tests/fixtures/sysfs/rx5600xt", tmp_path / "proc", tmp_path / "x")
    bundles.write(make_for(r, results, None, roots=roots, state=tmp_path / "second"),
                  reports / "second.json")
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(REPO / "variants.yaml"), "report", "--results", str(results),
              "--reports", str(reports), "--out", str(out), "--no-png"])
    assert exc.value.code in (0, None)
    for name in ("index.html", "gpu-gfx1010.html"):
        page, problems = _open(browser, (out / "site" / name).as_uri())
        body = page.inner_text("body")
        assert "works on 2 hosts" in body and "this-host" in body, name
        assert problems == [], name
        page.close()
