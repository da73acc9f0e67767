"""Picking the variant for the card: a family name resolves per ISA, and a variant built for
another RDNA1 ISA says so (no Docker, no GPU: the ISA list is what sysfs would report)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagefactory.errors import ImagefactoryError, UsageError
from imagefactory.host.pick import isa_mismatch, resolve
from imagefactory.project import Project

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def matrix():
    return Project.locate(REPO / "variants.yaml").matrix


@pytest.mark.parametrize("isas, expected", [(["gfx1010"], "therock10-gfx1010"),
                                            (["gfx1012"], "therock10-gfx1012"),
                                            (["gfx1012", "gfx1010"], "therock10-gfx1012")])
def test_family_name_picks_the_variant_for_the_card(matrix, isas, expected) -> None:
    pick = resolve(matrix, "therock", isas)
    assert pick.variant.name == expected
    assert pick.note == f"therock on this {isas[0]} card: {expected}"


def test_a_variant_name_is_taken_as_is(matrix) -> None:
    pick = resolve(matrix, "therock-gfx1010", ["gfx1012"])
    assert pick.variant.name == "therock-gfx1010" and pick.note is None


@pytest.mark.parametrize("name, isas, message", [
    ("therock", [], "'therock' is a family (therock-gfx1010, therock-gfx1012, "
                    "therock10-gfx1010, therock10-gfx1012); no AMD GPU found to pick by: "
                    "name the variant"),
    ("therock", ["gfx1030"], "no therock variant carries gfx1030 code (choose from "
                             "therock-gfx1010, therock-gfx1012, therock10-gfx1010, "
                             "therock10-gfx1012)"),
    ("therok", ["gfx1010"], "unknown variant 'therok' (did you mean 'therock'?)"),
])
def test_unpickable_is_a_usage_error(matrix, name, isas, message) -> None:
    with pytest.raises(UsageError) as info:
        resolve(matrix, name, isas)
    assert str(info.value) == message and info.value.exit_code == 2


def test_gfx1010_only_variant_says_so_on_a_gfx1012_card(matrix) -> None:
    note = isa_mismatch(matrix, matrix.get("therock-gfx1010"), ["gfx1012"])
    assert note == ("therock-gfx1010 carries gfx1010 code only and this card is gfx1012; "
                    "expect 'no-kernel' failures: use therock-gfx1012")
    note = isa_mismatch(matrix, matrix.get("rocm62-native"), ["gfx1012"])
    assert note is not None and note.endswith("use therock-gfx1012")


def test_no_note_when_the_code_fits_or_the_override_is_on(matrix) -> None:
    assert isa_mismatch(matrix, matrix.get("therock-gfx1010"), ["gfx1010"]) is None
    assert isa_mismatch(matrix, matrix.get("therock-gfx1012"), ["gfx1012"]) is None
    assert isa_mismatch(matrix, matrix.get("therock-gfx1010"), []) is None
    # The override runs the card as gfx1030: the wheel's gfx1030 code serves both ISAs.
    patched = matrix.get("rocm62-patched")
    assert patched.uses_override()
    assert isa_mismatch(matrix, patched, ["gfx1012"]) is None
    assert isa_mismatch(matrix, matrix.get("cpu"), ["gfx1012"]) is None


MATRIX = Project.locate(REPO / "variants.yaml").matrix


@settings(deadline=None)
@given(st.lists(st.from_regex(r"gfx[0-9a-f]{3,4}", fullmatch=True), max_size=3),
       st.sampled_from(["therock", "therock-gfx1010", "cpu", "rocm62-native", "x"]))
def test_resolve_picks_or_raises_a_usage_error(isas, name) -> None:
    matrix = MATRIX
    try:
        pick = resolve(matrix, name, isas)
    except ImagefactoryError as exc:  # usage or config error: one line, exit 2
        assert "\n" not in str(exc) and exc.exit_code == 2
        return
    assert pick.variant.name == name or (name == "therock" and isas[0] in
                                         pick.variant.gfx_targets)


def test_unknown_name_keeps_the_matrix_error(matrix) -> None:
    with pytest.raises(ImagefactoryError) as info:
        resolve(matrix, "rocm62-pached", ["gfx1010"])
    assert "unknown variant 'rocm62-pached' (did you mean 'rocm62-patched'?)" in str(info.value)


# -- `imagefactory run --print` on the sysfs fixtures (stand-in device nodes) --------------

SYSFS = REPO / "tests" / "fixtures" / "sysfs"


def _run_print(capsys, tmp_path: Path, *args: str) -> tuple[list[str], str]:
    import os
    import shlex
    import stat

    from imagefactory.cli import main

    dev = tmp_path / "dev"
    (dev / "dri").mkdir(parents=True)
    for node in (dev / "kfd", dev / "dri" / "renderD128"):
        os.mknod(node, stat.S_IFCHR | 0o660, os.makedev(1, 3))
    with pytest.raises(SystemExit) as info:
        main(["--config", str(REPO / "variants.yaml"), "run", "--print", "--no-workdir",
              f"--dev-root={dev}", *args])
    out, err = capsys.readouterr()
    assert info.value.code in (0, None), err
    return shlex.split(out), err


@pytest.mark.root  # mknod of the stand-in device nodes
@pytest.mark.parametrize("fixture, isa", [("rx5500xt", "gfx1012"), ("rx5600xt", "gfx1010")])
def test_run_family_picks_the_image_for_the_card(capsys, tmp_path: Path, fixture: str,
                                                 isa: str) -> None:
    argv, err = _run_print(capsys, tmp_path, "therock", f"--sysfs-root={SYSFS / fixture}",
                           "--", "python3")
    assert f"imagefactory:therock10-{isa}" in argv
    assert err == f"imagefactory: therock on this {isa} card: therock10-{isa}\n"


@pytest.mark.root  # mknod of the stand-in device nodes
def test_run_gfx1010_variant_on_the_5500xt_says_so(capsys, tmp_path: Path) -> None:
    argv, err = _run_print(capsys, tmp_path, "therock-gfx1010",
                           f"--sysfs-root={SYSFS / 'rx5500xt'}")
    assert "imagefactory:therock-gfx1010" in argv
    assert err == ("imagefactory: therock-gfx1010 carries gfx1010 code only and this card is "
                   "gfx1012; expect 'no-kernel' failures: use therock-gfx1012\n")
