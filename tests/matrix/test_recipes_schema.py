"""Typed recipes (matrix/recipes.py): a dataclass per family, validated at load, so `list`
refuses exactly what `render` would."""

from __future__ import annotations

import textwrap

import pytest

from imagefactory.errors import ConfigError
from imagefactory.matrix import recipes
from imagefactory.matrix.loader import parse_matrix

BASE = """\
repository: x
variants:
  v:
    family: {family}
    description: d
    base: debian:bookworm-slim
    torch: {{version: "1", source: debian}}
    recipe:
{recipe}
    expect: {{}}
    rocm: "6.2.4"
"""


def load(family: str, recipe: str):
    text = BASE.format(family=family, recipe=textwrap.indent(textwrap.dedent(recipe), "      "))
    return parse_matrix(text, "m.yaml")


def error(family: str, recipe: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(family, recipe)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_every_template_family_has_a_recipe_schema(project) -> None:
    assert set(project.families) <= set(recipes.FAMILIES)
    for v in project.matrix.variants:
        assert isinstance(v.recipe, recipes.FAMILIES[v.family]), v.name


def test_values_are_typed() -> None:
    (v,) = load("rocm-wheel", "wheel_tag: rocm6.2\n").variants
    assert isinstance(v.recipe, recipes.RocmWheelRecipe) and v.recipe.wheel_tag == "rocm6.2"
    (v,) = load("cpu", "apt_packages: [python3=3.11.2-1+b1]\n").variants
    assert v.recipe.apt_packages == ("python3=3.11.2-1+b1",)
    assert v.recipe["apt_packages"] == v.recipe.apt_packages and "apt_packages" in v.recipe


@pytest.mark.parametrize(("family", "recipe", "expected"), [
    ("cpu", "apt_packages: [python3]\napt_pakages: [x]\n",
     "m.yaml:10: variants.v.recipe.apt_pakages: unknown key 'apt_pakages' for family 'cpu' "
     "(did you mean 'apt_packages'?)"),
    ("cpu", "{}\n", "variants.v.recipe: missing required key 'apt_packages'"),
    ("cpu", "apt_packages: python3\n", "variants.v.recipe.apt_packages: expected a list"),
    ("cpu", "apt_packages: ['python3 curl']\n", "'python3 curl' is not a valid Debian package"),
    ("cpu", "apt_packages: ['python3;id']\n", "'python3;id' is not a valid Debian package"),
    ("rocm-wheel", "wheel_tag: \"rocm6.2'\"\n", "is not a valid wheel local version tag"),
    ("rocm-miopen-patched", """\
     codename: jammy
     ubuntu: "22.04"
     max_jobs: 8
     runtime_packages: [rocblas]
     wheel_tag: rocm6.2
     miopen_version: 3.2.0
     miopen_tag: rocm-6.2.2
     miopen_commit: d62f77307968e63a9c0b5c1688a2927a1410510c
     miopen_prefix: /opt/../etc
     miopen_cmake: [-DX=1]
     """, "miopen_prefix: '/opt/../etc' is not a valid absolute path"),
    ("rocm-miopen-patched", """\
     codename: jammy
     ubuntu: "22.04"
     max_jobs: 8
     runtime_packages: [rocblas]
     wheel_tag: rocm6.2
     miopen_version: 3.2.0
     miopen_tag: rocm-6.2.2
     miopen_commit: d62f77307968e63a9c0b5c1688a2927a1410510c
     miopen_prefix: /opt/m
     miopen_cmake: ["-DX=1 -DY=2"]
     """, "miopen_cmake[0]: '-DX=1 -DY=2' is not a valid cmake flag"),
    ("rocm-miopen-patched", "codename: jammy\n", "missing required key 'ubuntu'"),
    ("tiny", "command: echo (id) | sh\n", "is not a valid shell command"),
    ("nope", "a: b\n", "family 'nope' has no recipe schema"),
])
def test_bad_recipes_are_one_line_with_the_line(family: str, recipe: str,
                                                expected: str) -> None:
    assert expected in error(family, recipe)


def test_numbers_accept_yaml_numbers_and_digit_strings() -> None:
    base = """\
     codename: jammy
     ubuntu: "22.04"
     max_jobs: {}
     runtime_packages: [rocblas]
     wheel_tag: rocm6.2
     miopen_version: 3.2.0
     miopen_tag: rocm-6.2.2
     miopen_commit: d62f77307968e63a9c0b5c1688a2927a1410510c
     miopen_prefix: /opt/m
     miopen_cmake: [-DX=1]
     """
    for jobs in ("8", '"8"'):
        (v,) = load("rocm-miopen-patched", base.format(jobs)).variants
        assert v.recipe.max_jobs == 8
    for bad in ("0", "true", "-1", "8.5", '"8 9"'):
        assert "max_jobs" in error("rocm-miopen-patched", base.format(bad))


LIBS = """\
codename: focal
ubuntu: "20.04"
max_jobs: 8
runtime_packages: [rocblas]
torch_arch: gfx1010
torch_commit: e9ebda29d87ce0916ab08c06ab26fd3766a870e5
torchvision_sha256: 1efcb80e0a6e42c54f07ee16167839b4d302aeeecc12839cc47c74b06a2c20d4
build_pip: [cmake==3.26.4]
xuhuisheng_commit: 59b87dc62972c1ad32a8862e9ea6b5921c1f33a0
tensile_patch_sha256: 000b8e8b45f5bbe9af70928ec59a257323a3d9cd8795d32d78eefd0e006fc123
tensile_commit: 5aec08937473b27865fa969bb38a83bcf9463c2b
libs:
{libs}
"""
LIB = ("  - {{name: {name}, repo: rocBLAS, commit: 24f38911c1e6a341a254868acb2f2cac71628936, "
       "cmake: [-DX=1]}}")


def test_library_chain_is_typed_entries_with_their_stages() -> None:
    libs = "\n".join(LIB.format(name=n) for n in ("rocblas", "rocfft"))
    (v,) = load("rocm-libs-source", LIBS.format(libs=libs)).variants
    r = v.recipe
    assert isinstance(r, recipes.RocmLibsSourceRecipe)
    assert [(s.base, s.lib.name) for s in r.stages] == [("rocm-base", "rocblas"),
                                                        ("rocblas", "rocfft")]
    assert r.last_stage == "rocfft" and r.lib("rocblas").cmake == ("-DX=1",)


@pytest.mark.parametrize(("libs", "expected"), [
    ('  - "rocblas:rocBLAS"', "recipe.libs[0]: expected a mapping"),
    (LIB.format(name="rocblas").replace("cmake:", "cmak:"),
     "recipe.libs[0].cmak: unknown key 'cmak' for RocmLib (did you mean 'cmake'?)"),
    (LIB.format(name="rocblas") + "\n" + LIB.format(name="rocblas"),
     "recipe.libs[1].name: stage name 'rocblas' is already taken"),
    (LIB.format(name="runtime"), "stage name 'runtime' is already taken"),
    (LIB.format(name="Roc_BLAS"), "'Roc_BLAS' is not a valid build stage name"),
])
def test_bad_library_entries(libs: str, expected: str) -> None:
    assert expected in error("rocm-libs-source", LIBS.format(libs=libs))
