"""EngineError carries what went wrong as fields; callers read those, not the message."""

from __future__ import annotations

import pytest

from imagefactory.engine.base import EngineError, EngineUnreachable
from imagefactory.engine.docker_engine import open_engine


def test_fields_and_one_line() -> None:
    exc = EngineError("pull a:b", "manifest unknown: x", address="unix:///s", status=404)
    assert (exc.operation, exc.reason, exc.address, exc.status) == (
        "pull a:b", "manifest unknown: x", "unix:///s", 404)
    assert str(exc) == "engine unix:///s: pull a:b: manifest unknown: x"


def test_unreachable_engine_names_the_address(tmp_path) -> None:
    address = f"unix://{tmp_path}/none.sock"
    with pytest.raises(EngineUnreachable) as info:
        open_engine(address, timeout=5)
    exc = info.value
    assert exc.operation == "connect" and exc.address == address and exc.reason
    assert str(exc).startswith(f"cannot reach the Docker engine at {address}: ")
    assert "\n" not in str(exc)

