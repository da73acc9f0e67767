"""Recipe families from installed distributions (matrix/plugins.py, #26): the entry-point
group `imagefactory.families`. The test suite's own families (tiny, mounts) come from the
fixture distribution tests/fixtures/familyplugin, which scripts/setup-test-env.sh installs;
broken plugins are throwaway dist-info folders on sys.path (PYTHONPATH for the CLI)."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagefactory.errors import EXIT_USAGE, ConfigError
from imagefactory.matrix import plugins, recipes
from imagefactory.matrix.schema import schema_document
from imagefactory.project import Project
from imagefactory.render.renderer import Renderer

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "buildmatrix"
SCHEMA_FILE = REPO / "schemas" / "variants.schema.json"
TEST_FAMILIES = {"tiny", "mounts"}
INSTALLED = "'test-families = imagefactory_testfamilies'"
SETUP_HINT = ("the test families' plugin is not installed: bash scripts/setup-test-env.sh "
              "(or pip install --no-build-isolation --no-deps -e tests/fixtures/familyplugin)")


def make_plugin(root: Path, module: str, source: str, entry: str = "zz-plugin") -> str:
    """A distribution `<module>` (dashes for underscores) 0.1 on `root`, whose entry point
    `entry` is the module `module` holding `source`. Returns the message prefix naming it."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    dist = module.replace("_", "-")
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{plugins.GROUP}]\n{entry} = {module}\n")
    importlib.invalidate_caches()
    return (f"family plugin '{entry} = {module}' ({plugins.GROUP} entry point of {dist} 0.1): ")


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A registry and plugin state of their own (the installed plugins already in it, as a
    process that has loaded them), and `tmp_path` on sys.path for throwaway plugins."""
    plugins.families()  # the installed plugins register into the real registry first
    monkeypatch.setattr(recipes, "FAMILIES", dict(recipes.FAMILIES))
    monkeypatch.setattr(plugins, "_STATE", plugins._State())
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("ifplug_")]:
        del sys.modules[name]


def cli(*args: str, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The `imagefactory` CLI in a process of its own (what the build tests run)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, "-m", "imagefactory", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


# -- the installed fixture plugin ---------------------------------------------------------

def test_the_test_families_come_from_the_fixture_distribution() -> None:
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group=plugins.GROUP)}
    assert "test-families" in eps, SETUP_HINT
    ep = eps["test-families"]
    assert ep.value == "imagefactory_testfamilies"
    assert ep.dist is not None and ep.dist.name == "imagefactory-testfamilies"
    known = plugins.families()
    for name in TEST_FAMILIES:
        assert known[name].__module__ == "imagefactory_testfamilies"
        assert known[name].family == name
    # not part of the package: neither built in nor defined in its modules
    assert not TEST_FAMILIES & set(recipes.BUILTIN_FAMILIES)
    assert not hasattr(recipes, "TinyRecipe") and not hasattr(recipes, "SHELL_COMMAND")
    assert set(recipes.BUILTIN_FAMILIES) <= set(known)


def test_a_plugin_family_loads_and_renders_in_process() -> None:
    project = Project.locate(FIXTURE / "variants.yaml")
    (solo,) = project.variants(["solo"])
    assert type(solo.recipe).__module__ == "imagefactory_testfamilies"
    assert solo.recipe.command == "echo building solo"
    ctx = Renderer(project).render(solo)
    assert "RUN echo building solo\n" in ctx.dockerfile


def test_a_plugin_family_reaches_the_cli_subprocess(tmp_path: Path) -> None:
    root = tmp_path / "matrix"
    shutil.copytree(FIXTURE, root)
    out = cli("render", "solo", cwd=root)
    assert out.returncode == 0, out.stderr
    dockerfile = (root / "dockerfiles" / "solo" / "Dockerfile").read_text()
    assert "RUN echo building solo\n" in dockerfile
    # and its values are checked by the plugin's kinds, as a built-in family's are
    text = (root / "variants.yaml").read_text().replace("echo building solo", "echo (id) | sh")
    (root / "variants.yaml").write_text(text)
    bad = cli("list", cwd=root)
    assert bad.returncode == EXIT_USAGE
    assert "is not a valid shell command" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_the_schema_lists_the_built_in_families_only(fresh: Path) -> None:
    before = json.dumps(schema_document())
    make_plugin(fresh, "ifplug_extra", """\
        from dataclasses import dataclass
        from imagefactory.matrix.recipes import WORD, Recipe, family, required

        @family("ifplug-extra")
        @dataclass(frozen=True, kw_only=True)
        class Extra(Recipe):
            word: str = required(WORD)
        """)
    assert "ifplug-extra" in plugins.families() and "tiny" in plugins.families()
    # the same document whatever is installed or loaded
    assert json.dumps(schema_document()) == before
    shipped = json.loads(SCHEMA_FILE.read_text())
    families = _family_enum(shipped)
    assert families == sorted(recipes.BUILTIN_FAMILIES)
    assert not {"tiny", "mounts", "ifplug-extra"} & set(families)


def _family_enum(node: object) -> list[str]:
    """The enum of the first `family` property found in the schema document."""
    if isinstance(node, dict):
        fam = node.get("properties", {}).get("family") if isinstance(
            node.get("properties"), dict) else None
        if isinstance(fam, dict) and "enum" in fam:
            return list(fam["enum"])
        for v in node.values():
            found = _family_enum(v)
            if found:
                return found
    if isinstance(node, list):
        for v in node:
            found = _family_enum(v)
            if found:
                return found
    return []


def test_a_good_plugin_loads_once_in_name_order(fresh: Path) -> None:
    make_plugin(fresh, "ifplug_one", """\
        from dataclasses import dataclass
        from imagefactory.matrix.recipes import WORD, Recipe, family, optional

        LOADS = []
        LOADS.append(1)

        @family("ifplug-one")
        @dataclass(frozen=True, kw_only=True)
        class One(Recipe):
            word: str = optional(WORD, "x")
        """, entry="a-one")
    first = plugins.families()
    assert first["ifplug-one"].__module__ == "ifplug_one"
    assert plugins.families() == first and sys.modules["ifplug_one"].LOADS == [1]
    assert plugins._STATE.origins["ifplug-one"] == "'a-one = ifplug_one'"


# -- broken plugins: one line, the entry point named, exit 2 ----------------------------

BROKEN = {
    "raises": ("raise RuntimeError('boom')\n", "failed to load: RuntimeError: boom"),
    "imports what is missing": ("import ifplug_nowhere\n",
                                "failed to load: ModuleNotFoundError: No module named "
                                "'ifplug_nowhere'"),
    "registers one family, then raises": ("""\
        from dataclasses import dataclass
        from imagefactory.matrix.recipes import Recipe, family

        @family("ifplug-half")
        @dataclass(frozen=True, kw_only=True)
        class Half(Recipe):
            pass

        raise ValueError("half way")
        """, "failed to load: ValueError: half way"),
    "syntax error": ("def (\n", "failed to load: SyntaxError: "),
    "exits": ("import sys\nsys.exit(3)\n", "failed to load: SystemExit: 3"),
    "replaces a built-in": ("""\
        from dataclasses import dataclass
        from imagefactory.matrix.recipes import Recipe, family

        @family("cpu")
        @dataclass(frozen=True, kw_only=True)
        class Cpu(Recipe):
            pass
        """, "registers family 'cpu', which is built in (a plugin cannot replace a built-in "
             "family)"),
    "takes another plugin's name": ("""\
        from dataclasses import dataclass
        from imagefactory.matrix.recipes import Recipe, family

        @family("tiny")
        @dataclass(frozen=True, kw_only=True)
        class Tiny(Recipe):
            pass
        """, "registers family 'tiny', which "),
    "not a recipe": ("""\
        from imagefactory.matrix.recipes import family

        @family("plain")
        class Plain:
            pass
        """, "family 'plain': not a frozen dataclass deriving from "
             "imagefactory.matrix.recipes.Recipe"),
    "a field without a recipe type": ("""\
        from dataclasses import dataclass
        from imagefactory.matrix.recipes import WORD, Recipe, family, optional

        @family("floaty")
        @dataclass(frozen=True, kw_only=True)
        class Floaty(Recipe):
            ratio: float = optional(WORD, None)
        """, "family 'floaty': every field needs a recipe type"),
    "a name no template can have": ("""\
        from dataclasses import dataclass
        from imagefactory.matrix.recipes import Recipe, family

        @family("Bad_Name")
        @dataclass(frozen=True, kw_only=True)
        class Bad(Recipe):
            pass
        """, "family 'Bad_Name': the name is not lowercase letters, digits and -"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_plugin_is_one_line_naming_its_entry_point(fresh: Path, case: str) -> None:
    source, why = BROKEN[case]
    where = make_plugin(fresh, "ifplug_broken", source)
    registry = dict(recipes.FAMILIES)
    with pytest.raises(plugins.PluginError) as info:
        plugins.families()
    message = str(info.value)
    assert message.startswith(where + why), message
    assert "\n" not in message and info.value.exit_code == EXIT_USAGE
    # the registry is as it was before that plugin: nothing replaced, nothing half-added
    assert registry == recipes.FAMILIES
    assert recipes.FAMILIES["cpu"] is recipes.CpuRecipe
    # loaded once: the same failure stands, the module is not imported again
    with pytest.raises(plugins.PluginError) as again:
        plugins.families()
    assert again.value is info.value


def test_a_clash_between_plugins_names_the_first(fresh: Path) -> None:
    source = """\
        from dataclasses import dataclass
        from imagefactory.matrix.recipes import Recipe, family

        @family("ifplug-same")
        @dataclass(frozen=True, kw_only=True)
        class Same(Recipe):
            pass
        """
    make_plugin(fresh, "ifplug_first", source, entry="a-first")
    where = make_plugin(fresh, "ifplug_second", source, entry="b-second")
    with pytest.raises(plugins.PluginError) as info:
        plugins.families()
    assert str(info.value) == (where + "registers family 'ifplug-same', which "
                               "'a-first = ifplug_first' registered already")
    assert recipes.FAMILIES["ifplug-same"].__module__ == "ifplug_first"


@pytest.mark.parametrize(("case", "why"), [
    ("raises", "failed to load: RuntimeError: boom"),
    ("replaces a built-in", BROKEN["replaces a built-in"][1]),
    # the installed plugin loads first (entry points in name order) and is named
    ("takes another plugin's name", f"registers family 'tiny', which {INSTALLED} registered "
                                    "already"),
])
def test_the_cli_prints_one_line_and_exits_2(tmp_path: Path, case: str, why: str) -> None:
    where = make_plugin(tmp_path, "ifplug_broken", BROKEN[case][0])
    out = cli("--config", str(FIXTURE / "variants.yaml"), "list", cwd=tmp_path,
              pythonpath=tmp_path)
    assert out.returncode == EXIT_USAGE, out.stdout + out.stderr
    assert out.stderr == f"imagefactory: error: {where}{why}\n"
    assert out.stdout == ""


def test_no_plugin_is_loaded_for_help(tmp_path: Path) -> None:
    """--help and --version read no matrix, so a broken plugin does not stand in their way."""
    make_plugin(tmp_path, "ifplug_broken", BROKEN["raises"][0])
    out = cli("--help", cwd=tmp_path, pythonpath=tmp_path)
    assert out.returncode == 0, out.stderr


# -- a family is one unit: its template, stages, rocm rule and checks live on its class --


def _own_stages(variant: object) -> set[str]:
    """Stages a recipe adds to its family's template (rocm-libs-source: one a library)."""
    recipe = getattr(variant, "recipe", None)
    return {lib.name for lib in getattr(recipe, "libs", ())}


@pytest.mark.parametrize("config", [REPO / "variants.yaml", FIXTURE / "variants.yaml"],
                         ids=["shipped", "fixture"])
def test_each_family_declares_the_stages_its_template_renders(config: Path) -> None:
    from imagefactory.render.dockerfile import stage_names

    project = Project.locate(config)
    renderer = Renderer(project)
    seen = set()
    for variant in project.matrix.variants:
        cls = type(variant.recipe)
        rendered = stage_names(renderer.render(variant).dockerfile)
        assert set(rendered) - _own_stages(variant) == set(cls.template_stages), variant.name
        assert rendered[-1] == cls.template_stages[-1]  # the image is the last stage
        seen.add(cls.family)
    if config == REPO / "variants.yaml":
        assert seen == set(recipes.BUILTIN_FAMILIES)  # every built-in family is shipped


def test_a_plugin_family_brings_its_template_rocm_rule_and_checks(fresh: Path) -> None:
    make_plugin(fresh, "ifplug_unit", """\
        from dataclasses import dataclass
        from typing import ClassVar
        from imagefactory.matrix.recipes import WORD, Recipe, family, required

        @family("ifplug-unit")
        @dataclass(frozen=True, kw_only=True)
        class Unit(Recipe):
            template: ClassVar[str] = "shared-unit.Dockerfile.j2"
            template_stages: ClassVar[tuple[str, ...]] = ("unit",)
            rocm_prerelease: ClassVar[bool] = True
            flavour: str = required(WORD)

            def problems(self, variant):
                if self.flavour not in variant.name:
                    yield ("recipe", "flavour"), "must be part of the variant's name"
        """)
    root = fresh / "project"
    templates = root / "dockerfiles" / "templates"
    templates.mkdir(parents=True)
    (templates / "shared-unit.Dockerfile.j2").write_text(
        "FROM {{ from_ref }} AS unit\nRUN echo {{ v.recipe.flavour }} {{ v.rocm }}\n")
    (root / "dockerfiles" / "files").mkdir()
    entry = ("  {name}:\n    family: ifplug-unit\n    description: d\n"
             "    base: debian:bookworm-slim\n    rocm: 7.15.0a20260712\n"
             "    torch: {{version: '0', source: debian}}\n"
             "    recipe: {{flavour: {flavour}}}\n    expect: {{}}\n")
    config = root / "variants.yaml"
    config.write_text("repository: unit\nvariants:\n" + entry.format(name="mint-one",
                                                                     flavour="mint"))
    project = Project.locate(config)
    (variant,) = project.matrix.variants
    assert variant.rocm == "7.15.0a20260712"  # a pre-release, as the family allows
    assert "RUN echo mint 7.15.0a20260712\n" in Renderer(project).render(variant).dockerfile
    config.write_text("repository: unit\nvariants:\n" + entry.format(name="lime-one",
                                                                     flavour="mint"))
    with pytest.raises(ConfigError) as info:
        _ = Project.locate(config).matrix
    assert str(info.value).startswith(f"{config}:")  # file:line
    assert "variants.lime-one.recipe.flavour" in str(info.value)
    assert "must be part of the variant's name" in str(info.value)
