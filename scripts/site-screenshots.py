"""Screenshots of the compatibility site for the README (#24): the site rendered by
`imagefactory report` from a fixture set (tests/fixtures/results as this machine's results,
each published, and the bundles of a second host made by the share code from the same
results), then docs/site-index.png and docs/site-gfx1010.png taken in Debian's chromium
through Playwright.
Usage: .venv/bin/python scripts/site-screenshots.py [--out docs]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imagefactory.cli import main as cli  # noqa: E402
from imagefactory.host.facts import Roots  # noqa: E402
from imagefactory.share import bundle as bundles  # noqa: E402
from imagefactory.share.run import make_for  # noqa: E402
from imagefactory.verify.results import TestResult  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ROOTS = Roots(ROOT / "tests/fixtures/sysfs/rx5600xt", Path("/nonexistent"), Path("/nonexistent"))


def fixture(work: Path) -> tuple[Path, Path]:
    results, reports = work / "this-host", work / "reports"
    results.mkdir()
    reports.mkdir()
    for src in sorted((ROOT / "tests/fixtures/results").glob("*.json")):
        shutil.copy(src, results / src.name)
        r = TestResult.load_path(src)
        assert r is not None
        digest = "sha256:" + hashlib.sha256(r.image_id.encode()).hexdigest()
        (results / f"{r.variant}.publish.json").write_text(json.dumps(
            {"variant": r.variant, "image_id": r.image_id, "digest": digest,
             "repository": "ghcr.io/imagefactory/imagefactory"}))
        # The second host: its own salt, so its own host id.
        data = make_for(r, results, None, roots=ROOTS, state=work / "second-host-state")
        bundles.write(data, reports / f"second-host-{r.variant}.json")
    return results, reports


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        results, reports = fixture(work)
        try:
            cli(["--config", str(ROOT / "variants.yaml"), "report", "--results", str(results),
                 "--reports", str(reports), "--out", str(work / "out"), "--no-png"])
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
        site = work / "out" / "site"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for name, png in (("index.html", "site-index.png"),
                              ("gpu-gfx1010.html", "site-gfx1010.png")):
                page.goto((site / name).as_uri(), wait_until="load")
                page.screenshot(path=str(args.out / png), full_page=True)
                print(f"written: {args.out / png}")
            browser.close()


if __name__ == "__main__":
    main()
