"""Hatchling build hook: the standard wheel ships the matrix, the templates and the in-image
files as imagefactory/_shipped/ (imagefactory/project.py shipped_root reads them there).

Only the standard wheel: an editable install reads them from the checkout, and it maps the
packages exactly (pyproject's dev-mode-exact, an import hook after the path finder), so a
site-packages/imagefactory/_shipped/ copy would make site-packages/imagefactory a namespace
package that hides the checkout's imagefactory.
"""

from __future__ import annotations

from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SHIPPED = {"variants.yaml": "imagefactory/_shipped/variants.yaml",
           "dockerfiles": "imagefactory/_shipped/dockerfiles"}


class ShippedFilesHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "standard":
            build_data["force_include"].update(SHIPPED)
