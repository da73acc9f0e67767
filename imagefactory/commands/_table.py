"""Plain, aligned text tables (no colour, so they paste into issues and CI logs)."""

from __future__ import annotations

import click


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
             for row in [headers, *rows]]
    return "\n".join(lines)


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    click.echo(format_table(headers, rows))
