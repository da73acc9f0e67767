"""The crash report of an unexpected error (log.write_crash_report, issue #25): mode 0600
whatever the umask, option names without their values, the traceback redacted, and a
non-UTF-8 argument (argv is bytes on POSIX) written escaped instead of crashing the handler."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from imagefactory import log


def _crash(argv: list[str]) -> Path:
    try:
        raise RuntimeError("engine tcp://bob:hunter22@10.0.0.1:2376 said no")
    except RuntimeError as exc:
        path = log.write_crash_report(exc, argv, ["build", "test", "push"])
    assert path is not None
    return path


def test_mode_0600_no_values_and_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    old = os.umask(0)
    try:
        path = _crash(["build", "--build-arg", "HF_TOKEN=hf_sekrit", "--engine=ssh://u:pw1@h",
                       "cpu", "-j", "3"])
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    text = path.read_text()
    first = text.splitlines()[0]
    assert first == "imagefactory build --build-arg ... --engine=... ... -j ..."
    for secret in ("hf_sekrit", "pw1", "hunter22", "HF_TOKEN"):
        assert secret not in text
    assert "RuntimeError" in text


def test_non_utf8_argument_is_escaped_not_a_crash(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    bad = os.fsdecode(b"--\xff\xfe=x")  # what Python makes of such a byte in argv
    path = _crash(["build", bad, os.fsdecode(b"caf\xe9")])
    assert path.read_text(encoding="utf-8").startswith("imagefactory build --?=... ...\n")
