"""The shared input reader and message cleaning (imagefactory/safety.py)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from imagefactory.errors import ConfigError, JobError
from imagefactory.safety import clean, json_dumps, json_loads, read_text, redact


@pytest.mark.parametrize(("text", "secret"), [
    ("push to https://bob:hunter22@ghcr.io/x failed", "hunter22"),
    ("engine tcp://bob:hunter22@10.0.0.1:2376 refused", "hunter22"),
    ("path https:/bob:hunter22@h/x", "hunter22"),
    ("token https://ghp_abcdefgh12345@github.com", "ghp_abcdefgh12345"),
    ("Authorization: Basic " + base64.b64encode(b"bob:hunter22").decode(), "Ym9i"),
    ('{"auths": {"h": {"auth": "Ym9iOmh1bnRlcjIy"}}}', "Ym9iOmh1bnRlcjIy"),
    ("Bearer eyJhbGciOiJIUzI1NiJ9.x.y", "eyJhbGciOiJIUzI1NiJ9"),
])
def test_credentials_are_redacted(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert secret not in clean(text)


def test_given_secrets_are_redacted() -> None:
    assert redact("login as bob with hunter22", ["hunter22"]) == "login as bob with ***"


def test_control_characters_are_escaped_to_one_line() -> None:
    out = clean("a\nb\x1b[31mc\u2028d\x85e\u202ef\tg")
    assert out == "a\\x0ab\\x1b[31mc\\u2028d\\x85e\\u202ef\tg"


def test_json_is_strict_both_ways() -> None:
    for text in ("NaN", "[Infinity]", '{"a": -Infinity}'):
        with pytest.raises(ValueError):
            json_loads(text)
    with pytest.raises(ValueError):
        json_dumps({"a": float("nan")})


def test_read_text_refuses_what_is_not_a_small_regular_utf8_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "big").write_bytes(b"x" * 2000)
    (tmp_path / "latin1").write_bytes(b"a: \xe9\n")
    cases = {"fifo": "not a regular file (a FIFO)", "big": "too large (2000 bytes",
             "latin1": "latin1:1: not UTF-8 text (byte 0xe9 at offset 3)",
             "nope": "no such file"}
    for name, expected in cases.items():
        with pytest.raises(ConfigError, match=r".*") as info:
            read_text(tmp_path / name, 1000)
        assert expected in str(info.value)
    with pytest.raises(JobError, match="a character device"):
        read_text(Path("/dev/zero"), 1000, error=JobError)
    with pytest.raises(ConfigError, match="a directory"):
        read_text(tmp_path, 1000)


@pytest.mark.parametrize("engine", ["tcp://bob:pa/ss@127.0.0.1:1", "tcp://bob:p@ss@127.0.0.1:1",
                                    "ssh://bob:pa ss@127.0.0.1", "bob:pa/ss@127.0.0.1:1"])
def test_engine_password_is_never_shown_nor_a_crash(engine: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from imagefactory.cli import main

    root = Path(__file__).parent.parent
    with pytest.raises(SystemExit) as info:
        main(["--config", str(root / "variants.yaml"), "build", "--engine", engine, "cpu"])
    err = capsys.readouterr().err
    assert info.value.code == 1 and "internal error" not in err, err
    assert "pa/ss" not in err and "p@ss" not in err and "pa ss" not in err, err
