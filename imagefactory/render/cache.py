"""Rendered Dockerfiles remembered between runs, so a no-change build needs no Jinja2.

Importing Jinja2 and compiling the templates costs more than the rest of the skip decision.
A variant's Dockerfile depends only on the templates, the parsed matrix and the code that
renders it; the files it COPYs are read and hashed on every run regardless. So an entry keyed
by a fingerprint of all of those (the templates' bytes, repr() of the whole Matrix, the
rendering code's and Jinja2's source) stands for the render itself. Anything that differs
misses and renders as usual; an unreadable or unwritable cache only costs the render.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.util import find_spec
from pathlib import Path

from .. import __version__
from ..matrix.loader import Variant
from ..project import Project
from .renderer import BuildContext, Renderer

FORMAT = 1
# what turns YAML and templates into text (paths inside the imagefactory package)
_CODE = ("render/renderer.py", "matrix/loader.py", "project.py")


def _fingerprint(project: Project) -> str:
    """Everything a render reads except the variant's name and the COPYed files."""
    digest = hashlib.sha256(f"{FORMAT}\0{__version__}\0{project.matrix!r}\0".encode())
    here = Path(__file__).parent.parent  # the imagefactory package
    jinja = find_spec("jinja2")
    sources = [here / name for name in _CODE]
    if jinja and jinja.origin:
        sources.append(Path(jinja.origin))  # holds Jinja2's version
    sources += sorted(p for p in project.templates_dir.rglob("*") if p.is_file())
    for path in sources:
        digest.update(f"\0{path}\0".encode() + path.read_bytes())
    return digest.hexdigest()


class CachedRenderer:
    """Renderer.render with the Dockerfile text remembered in a JSON file."""

    def __init__(self, project: Project, path: Path) -> None:
        self.renderer = Renderer(project)
        self.path = path
        self.hits = 0  # for tests and reports
        self._entries: dict[str, dict[str, str]] = {}
        self._dirty = False
        try:
            self._key: str | None = _fingerprint(project)
        except OSError:
            self._key = None  # never a hit, never saved
            return
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(entries, dict):
            self._entries = entries

    def render(self, variant: Variant) -> BuildContext:
        entry = self._entries.get(variant.name)
        if self._key and isinstance(entry, dict) and entry.get("key") == self._key:
            draft, text = entry.get("draft"), entry.get("dockerfile")
            if isinstance(draft, str) and isinstance(text, str):
                files, inputs_hash = self.renderer.inputs(variant, draft)
                # A COPYed file changed: the final text carries the new hash; render it.
                if inputs_hash == entry.get("inputs_hash"):
                    self.hits += 1
                    return BuildContext(variant, text, files, inputs_hash)
        ctx = self.renderer.render(variant)
        self._entries[variant.name] = {"key": self._key, "draft": self.renderer.draft(variant),
                                       "dockerfile": ctx.dockerfile,
                                       "inputs_hash": ctx.inputs_hash}
        self._dirty = self._key is not None
        return ctx

    def save(self) -> None:
        """Write the entries back (atomically: parallel runs may share the file)."""
        if not self._dirty:
            return
        import tempfile

        self._dirty = False
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".render-cache-")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self._entries, f)
            os.replace(tmp, self.path)
        except OSError:
            if tmp:  # only the next run's speed depends on the cache
                Path(tmp).unlink(missing_ok=True)
