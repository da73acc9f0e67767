"""Hostile command lines and config files against the CLI (issue 12): exit 0, 1 or 2, an
error is one line (click's usage errors: its usage lines plus one error line), never a
traceback, never a terminal control character or a credential echoed back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fuzzing import NASTY, examples
from hypothesis import given
from hypothesis import strategies as st

from imagefactory.cli import main

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cr3tpw"
VARIANTS = {"cpu", "rocm52-torch113", "rocm52-torch20", "rocm54-source", "rocm62-patched",
            "rocm62-native"}

word = st.lists(st.one_of(st.sampled_from([*NASTY, "-", "--", "-x", "=", ":", "@", "%s",
                                            f"https://u:{SECRET}@h/x",
                                            f"tcp://u:{SECRET}@127.0.0.1:1"]),
                          st.text(max_size=5)), min_size=1, max_size=4).map("".join) \
    .filter(lambda w: w not in VARIANTS and "\x00" not in w)
number = st.sampled_from(["nan", "inf", "-inf", "1e999", "-1", "0", "0x10", "1_0", "", " 5"])


@st.composite
def command_line(draw: st.DrawFn, tmp: Path) -> list[str]:
    # Commands whose refusal or quick run does not start builds or containers: variant
    # names are never real ones, engines never reachable.
    choice = draw(st.sampled_from(["list", "render", "matrix", "report", "doctor", "build",
                                   "test", "push", "run"]))
    args = [choice]
    if choice == "list":
        args += draw(st.sampled_from([[], ["--json"]]))
    elif choice == "render":
        args += ["--check", *draw(st.lists(word, max_size=2))]
    elif choice == "matrix":
        args += draw(st.sampled_from([["--format", "github"], ["--format"], ["--timeout"]]))
        args.append(draw(word | number))
    elif choice == "report":
        args += ["--results", draw(word | st.just(str(tmp))), "--out", str(tmp / "out"),
                 "--no-png"]
    elif choice == "doctor":
        args += ["--no-docker", "--sysfs-root", str(tmp / draw(word).replace("/", "_")),
                 "--dev-root", str(tmp), "--results", str(tmp)]
    elif choice == "build":
        args += [draw(word), "--engine", f"tcp://u:{SECRET}@127.0.0.1:9"]
    elif choice == "test":
        args += [draw(word), "--timeout", draw(number | word), "--engine",
                 f"tcp://u:{SECRET}@127.0.0.1:9", "--results", str(tmp)]
        args += draw(st.sampled_from([[], ["--suite-args", draw(word)]]))
    elif choice == "push":
        args += [draw(word), "--registry", draw(word), "--results", str(tmp)]
    elif choice == "run":
        args += [draw(word), "--print"]
    return args


def _config(tmp: Path, body: bytes) -> Path:
    path = tmp / "fuzz.yaml"
    path.write_bytes(body)
    return path


config_body = st.one_of(
    st.just((REPO / "variants.yaml").read_bytes()),
    st.binary(max_size=64),
    st.lists(st.sampled_from([b"repository: x\n", b"variants:\n", b"  a: &a [*a]\n",
                              b"  cpu: {family: cpu}\n", b"\xff\xfe", b"\x1b[2J", b"[" * 50,
                              b"!!python/object:os.system x\n", b"  - *x\n", b"\t", b": :"]),
             max_size=6).map(b"".join),
)


@examples(15)
@given(data=st.data(), body=config_body, use_config=st.booleans())
def test_fuzz_cli_contract(tmp_path_factory: pytest.TempPathFactory,
                           capsys: pytest.CaptureFixture[str], data: st.DataObject,
                           body: bytes, use_config: bool) -> None:
    tmp = tmp_path_factory.mktemp("cli")
    argv = data.draw(command_line(tmp))
    config = _config(tmp, body) if use_config else REPO / "variants.yaml"
    try:
        main(["--config", str(config), *argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert code in (0, 1, 2), (argv, code, err)
    both = out + err
    assert "Traceback" not in both, both
    assert SECRET not in both, both
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]", both), repr(both)
    errors = [line for line in err.splitlines() if line.startswith("imagefactory: error")]
    if code and not err.startswith("Usage:"):
        # one error line, the last (commands may list what they found before it)
        assert len(errors) == 1 and err.splitlines()[-1] == errors[0], err
    if use_config and errors and "variants.yaml:" in errors[0]:
        # an error about the config names the file given with --config, not variants.yaml
        raise AssertionError(errors[0])
