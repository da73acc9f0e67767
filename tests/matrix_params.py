"""Variant names for parametrizing tests, read from the repository's variants.yaml, so a
variant added to (or removed from) the matrix is tested without editing test files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from imagefactory.matrix.loader import Variant
from imagefactory.project import Project

REPO = Path(__file__).resolve().parent.parent
MATRIX = Project.locate(REPO / "variants.yaml").matrix


def names(where: Callable[[Variant], bool] = lambda v: True) -> list[str]:
    """The matrix's variant names (in matrix order) for which `where` holds."""
    return [v.name for v in MATRIX.variants if where(v)]


def ubuntu_rocm(v: Variant) -> bool:
    """The ROCm variants built on AMD's rocm/dev-ubuntu images (the rocm-* families)."""
    return v.family.startswith("rocm-")
