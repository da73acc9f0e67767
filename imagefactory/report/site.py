"""The compatibility site: static HTML/CSS pages from the site model (sitemodel.py), laid
out by Jinja2 templates (site_templates/) with autoescape on for every page, so every value
from a result file reaches the browser as text.

Each page carries a Content-Security-Policy that allows styles, images and scripts from the
site's own folder only and nothing inline; the one script (filter.js, the GPU filter) is an
extra: without it the GPU pages do the same job. Links leave the site only to sources a
result declared as http(s) URLs.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, StrictUndefined

from ..errors import JobError
from ..safety import write_atomic
from . import sitemodel
from .sitemodel import Site, slug
from .svgmap import layout
from .writer import Compatibility

if TYPE_CHECKING:
    from ..matrix.loader import Matrix
    from .merge import Merged

SITE_DIR = "site"
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
       "base-uri 'none'; form-action 'none'")
STATIC = ("site.css", "filter.js", "favicon.svg")
HEATMAP = "heatmap.svg"


@cache
def _env() -> Environment:
    return Environment(loader=PackageLoader("imagefactory.report", "site_templates"),
                       autoescape=True, undefined=StrictUndefined, trim_blocks=True,
                       lstrip_blocks=True)


def gpu_page(name: str) -> str:
    return f"gpu-{slug(name)}.html"


def variant_page(name: str) -> str:
    return f"variant-{slug(name)}.html"


def run_info(matrix: Matrix | None) -> sitemodel.RunInfo | None:
    """What the `docker run` line takes from the matrix: the variant's runtime env under the
    profile tested, and whether it is a ROCm image (GPU devices); None for a variant the
    matrix does not declare (a result from an older or newer matrix)."""
    if matrix is None:
        return None
    from ..errors import ConfigError

    def info(variant: str, profile: str | None) -> tuple[dict[str, str], bool] | None:
        try:
            v = matrix.get(variant)
        except ConfigError:
            return None
        try:
            env = v.runtime_env(profile)
        except ConfigError:  # a profile the variant no longer has: its default's env
            env = v.runtime_env(None)
        return env, v.rocm is not None

    return info


def build_and_write(compat: Compatibility, out_dir: Path, generated: str,
                    matrix: Matrix | None = None, merged: Merged | None = None) -> list[Path]:
    """The site of a report (with `merged`, every host's runs merge.collect counted): the
    model built once, every page written from it."""
    return write(sitemodel.build(compat, generated, run_info(matrix), merged), out_dir)


def pages(site: Site) -> dict[str, str]:
    """Every file of the site by name, as text."""
    env = _env()
    common = {"site": site, "csp": CSP, "gpu_page": gpu_page, "variant_page": variant_page}
    out = {"index.html": env.get_template("index.html").render(**common)}
    for g in site.gpus:
        out[gpu_page(g.slug)] = env.get_template("gpu.html").render(gpu=g, **common)
    for v in site.variants:
        out[variant_page(v.slug)] = env.get_template("variant.html").render(variant=v,
                                                                              **common)
    results = tuple(r for v in site.variants for r in v.results)
    out[HEATMAP] = env.get_template("heatmap.svg").render(map=layout(results))
    folder = resources.files("imagefactory.report") / "site_templates"
    for name in STATIC:
        out[name] = (folder / name).read_text(encoding="utf-8")
    return out


def write(site: Site, out_dir: Path) -> list[Path]:
    """Write the site under out_dir, each file whole or not at all."""
    return [write_atomic(out_dir / name, text, error=JobError, mode=0o644)
            for name, text in pages(site).items()]
