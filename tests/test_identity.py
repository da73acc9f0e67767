"""The label schema has one owner: identity.py spells every `io.imagefactory.*` key, the
rest of the package names them through it, and the rendered images carry them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from matrix_params import names

from imagefactory import identity
from imagefactory.render.renderer import Renderer

PACKAGE = Path(identity.__file__).resolve().parent
KEYS = {name: value for name, value in vars(identity).items()
        if name.endswith("_LABEL") and isinstance(value, str)}


def test_every_key_is_under_the_prefix_and_distinct() -> None:
    assert {"VARIANT_LABEL", "FAMILY_LABEL", "HASH_LABEL", "BASE_LABEL", "ARGS_LABEL",
            "TARGET_LABEL", "BUILT_BY_LABEL", "ROLE_LABEL", "RUN_LABEL", "SESSION_LABEL",
            "MIOPEN_CACHE_LABEL"} <= set(KEYS)
    assert all(v.startswith(identity.LABEL_PREFIX) for v in KEYS.values())
    assert len(set(KEYS.values())) == len(KEYS)


def _label_literals(path: Path) -> list[tuple[int, str]]:
    """String constants in `path` that are (or begin with) a label key: a key spelled out.
    Prose that mentions one (help texts, docstrings) does not begin with it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and node.value.startswith(identity.LABEL_PREFIX)]


def test_no_module_but_identity_spells_a_label_key() -> None:
    found = {f"{path.relative_to(PACKAGE)}:{line}: {text!r}"
             for path in PACKAGE.rglob("*.py") if path != Path(identity.__file__).resolve()
             for line, text in _label_literals(path)}
    assert not found, "label keys belong in imagefactory/identity.py"
    assert _label_literals(Path(identity.__file__))  # the scan does see them where they are


@pytest.mark.parametrize("name", names())
def test_rendered_image_carries_the_schema(project, name: str) -> None:
    variant = project.matrix.get(name)
    ctx = Renderer(project).render(variant)
    labels = dict(identity.image_labels(variant, project.matrix, ctx.inputs_hash))
    assert labels[identity.VARIANT_LABEL] == variant.name
    assert labels[identity.FAMILY_LABEL] == variant.family
    assert labels[identity.ROCM_LABEL] == (variant.rocm or "none")
    assert labels[identity.HASH_LABEL] == ctx.inputs_hash
    assert labels["org.opencontainers.image.title"] == identity.local_tag(project.matrix,
                                                                          variant)
    for key, value in labels.items():  # the template writes each
        assert f'    {key}="{value}" \\\n' in ctx.dockerfile, key
