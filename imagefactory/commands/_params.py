"""Click parameter types for values click's own types let through."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # generic in click's stubs from 8.2; a plain class before
    _Base = click.ParamType[float]
else:
    _Base = click.ParamType


class Seconds(_Base):
    """A finite number of seconds in [low, high]: click.FloatRange accepts nan (every
    comparison with it is false) and inf, which would become `--timeout inf` downstream."""

    name = "seconds"

    def __init__(self, low: float = 1.0, high: float = 7 * 24 * 3600.0) -> None:
        self.low = low
        self.high = high

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, float) and math.isfinite(value) and self.low <= value <= self.high:
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(number) or not self.low <= number <= self.high:
            self.fail(f"{value!r} is not between {self.low:g} and {self.high:g} seconds",
                      param, ctx)
        return number
