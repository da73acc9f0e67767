"""variants.yaml validation: every bad input is one line naming file, line, field and problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from imagefactory.cli import main
from imagefactory.errors import ConfigError
from imagefactory.matrix.loader import parse_matrix

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
repository: imagefactory
profiles:
  override:
    env: {HSA_OVERRIDE_GFX_VERSION: "10.3.0"}
variants:
  common:
    abstract: true
    family: cpu
    profiles: [override]
    env: {A: "1"}
    recipe: {apt_packages: [python3]}
    expect: {python: "3.11"}
  one:
    extends: common
    description: first
    base: debian:bookworm-slim
    torch: {version: "1.13.1", source: debian}
    env: {B: "2"}
  two:
    extends: one
    description: second
    base_variant: one
    torch: {version: "2.0.1", source: source, ref: v2.0.1}
    default_profile: override
"""


def parse(text: str):
    return parse_matrix(textwrap.dedent(text), "variants.yaml", families={"cpu"})


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_good_matrix_resolves_extends_and_profiles() -> None:
    m = parse(GOOD)
    assert m.names == ("one", "two")  # the abstract entry is not a variant
    one, two = m.variants
    assert dict(one.env) == {"A": "1", "B": "2"}  # mappings merge down the chain
    assert one.base is not None and one.base.ref == "debian:bookworm-slim"
    assert two.base is None and two.base_variant == "one"
    assert two.runtime_env() == {"A": "1", "B": "2", "HSA_OVERRIDE_GFX_VERSION": "10.3.0"}
    assert two.expect.python == "3.11"


def test_variant_is_immutable() -> None:
    v = parse(GOOD).variants[0]
    with pytest.raises(AttributeError):
        v.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        v.env["A"] = "2"  # type: ignore[index]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("repository: x\nvariants: [a\n", "variants.yaml:2: YAML syntax error",
                     id="yaml-syntax"),
        pytest.param(GOOD.replace("    description: first", "    descripton: first"),
                     "variants.yaml:15: variants.one.descripton: unknown key 'descripton' "
                     "(did you mean 'description'?)", id="unknown-key"),
        pytest.param(GOOD.replace("    description: first\n", ""),
                     "variants.yaml:13: variants.one: missing required field 'description'",
                     id="missing-field"),
        pytest.param(GOOD.replace('torch: {version: "1.13.1"', "torch: {version: 1.13"),
                     "variants.yaml:17: variants.one.torch.version: expected a string, "
                     "got a number", id="wrong-type"),
        pytest.param(GOOD.replace("  two:", "  one:"),
                     "variants.yaml:19: variants.one: duplicate key 'one' (first defined on "
                     "line 13)", id="duplicate-variant"),
        pytest.param(GOOD.replace("extends: common", "extends: comon"),
                     "variants.yaml:14: variants.one.extends: extends unknown variant 'comon' "
                     "(did you mean 'common'?)", id="extends-unknown"),
        pytest.param(GOOD.replace("    abstract: true", "    abstract: true\n    extends: two"),
                     "variants.yaml:", id="extends-cycle"),
        pytest.param(GOOD.replace("profiles: [override]", "profiles: [overide]"),
                     "variants.yaml:9: variants.common.profiles[0] (inherited by one): unknown "
                     "env profile 'overide' (did you mean 'override'?)", id="unknown-profile"),
        pytest.param(GOOD.replace("default_profile: override", "default_profile: im2col"),
                     "variants.two.default_profile: 'im2col' is not one of this variant's "
                     "profiles (override)", id="default-profile-not-offered"),
        pytest.param(GOOD.replace('env: {B: "2"}', 'env: {B: "2\\nRUN rm -rf /"}'),
                     "variants.one.env.B: a newline is not allowed", id="newline"),
        pytest.param(GOOD.replace('env: {B: "2"}', "env: {B: '$HOME'}"),
                     "variants.one.env.B: '$' is not allowed", id="variable-expansion"),
        pytest.param(GOOD.replace('env: {B: "2"}', """env: {B: '2" RUN x'}"""),
                     "variants.one.env.B: a double quote is not allowed", id="quote"),
        pytest.param(GOOD.replace('env: {B: "2"}', r"env: {B: '2 \\'}"),
                     "variants.one.env.B: a backslash is not allowed", id="continuation"),
        pytest.param(GOOD.replace("description: first", 'description: "a\\rb"'),
                     "variants.one.description: a carriage return is not allowed", id="cr"),
        pytest.param(GOOD.replace("base: debian:bookworm-slim", "base: 'debian bookworm'"),
                     "variants.one.base: 'debian bookworm' is not a pinned image reference",
                     id="bad-image"),
        pytest.param(GOOD.replace("base: debian:bookworm-slim", "base: debian"),
                     "variants.one.base: 'debian' is not a pinned image reference",
                     id="unpinned-image"),
        pytest.param(GOOD.replace('env: {B: "2"}', 'env: {"B X": "2"}'),
                     "variants.one.env.B X: 'B X' is not a valid environment variable name",
                     id="env-name"),
        pytest.param(GOOD.replace("family: cpu", "family: gpu"),
                     "variants.common.family (inherited by one): unknown family 'gpu' "
                     "(did you mean 'cpu'?)",
                     id="unknown-family"),
        pytest.param(GOOD.replace("source: debian", "source: pip"),
                     "variants.one.torch.source: 'pip' is not one of wheel, source, debian",
                     id="torch-source"),
        pytest.param(GOOD.replace(", ref: v2.0.1", ""),
                     "variants.two.torch: missing required field 'ref'", id="source-needs-ref"),
        pytest.param(GOOD.replace("base_variant: one", "base_variant: onee"),
                     "variants.two.base_variant: unknown variant 'onee' (did you mean 'one'?)",
                     id="base-variant-unknown"),
        pytest.param(GOOD.replace("    base: debian:bookworm-slim\n", ""),
                     "variants.yaml:13: variants.one: exactly one of 'base'", id="no-base"),
        pytest.param(GOOD.replace("    base_variant: one\n",
                                  "    base_variant: one\n    base: debian:bookworm-slim\n"),
                     "variants.yaml:19: variants.two: exactly one of 'base'", id="both-bases"),
        pytest.param(GOOD.replace("repository: imagefactory", "repositry: imagefactory"),
                     "variants.yaml:1: repositry: unknown key 'repositry' "
                     "(did you mean 'repository'?)", id="top-level-key"),
        pytest.param(GOOD.replace("one:\n    extends", "One:\n    extends"),
                     "variants.One: 'One' is not a valid variant name", id="variant-name"),
        pytest.param(GOOD + "    gfx_targets: [gfx10x0]\n",
                     "variants.two.gfx_targets[0]: 'gfx10x0' is not a valid GPU target",
                     id="gfx-target"),
    ],
)
def test_bad_input_is_one_clear_line(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_extends_cycle_names_the_cycle() -> None:
    text = GOOD.replace("    abstract: true", "    abstract: true\n    extends: two")
    message = error_of(text)
    assert "extends cycle: " in message
    assert "common -> two -> one -> common" in message


def test_base_variant_cycle() -> None:
    text = GOOD.replace("    base: debian:bookworm-slim\n", "    base_variant: two\n")
    assert "base_variant cycle: one -> two -> one" in error_of(text)


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_cli_exits_2_with_one_line_naming_file_and_field(tmp_path: Path, capsys) -> None:
    config = tmp_path / "variants.yaml"
    config.write_text(GOOD.replace("profiles: [override]", "profiles: [overide]"))
    code, out, err = run_cli(["--config", str(config), "list"], capsys)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert f"{config}:9: variants.common.profiles[0] (inherited by one): unknown env " \
           "profile 'overide'" in lines[0]


def test_cli_missing_config_file(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["--config", str(tmp_path / "nope.yaml"), "list"], capsys)
    assert code == 2
    assert "nope.yaml: no such file" in err


def test_unknown_variant_suggests_closest(capsys) -> None:
    code, _, err = run_cli(["--config", str(REPO / "variants.yaml"), "render", "--check",
                            "rocm62-pached"], capsys)
    assert code == 2
    assert "unknown variant 'rocm62-pached' (did you mean 'rocm62-patched'?)" in err


def test_shipped_matrix_declares_the_variants(project) -> None:
    assert set(project.matrix.names) == {
        "therock10-gfx1010", "therock10-gfx1012", "therock-gfx1010", "therock-gfx1012",
        "rocm52-torch113", "rocm52-torch20", "rocm54-source", "rocm62-patched", "rocm62-native",
        "debian-rocm64", "cpu",
    }
    for v in project.matrix.variants:
        assert v.base is not None or v.base_variant is not None
        assert v.description
        if v.rocm:
            assert v.gfx_targets, v.name
