"""The compatibility heatmap as SVG for the site: one row per conv case, one column per
result, each cell its class's colour (heatmap.COLOURS, the PNG's). Its size is bounded
whatever the results hold: names are cut to a number of characters with the whole (itself
capped) in a <title> (a tooltip), and rows and columns past a count are counted, not drawn.
Text is laid out in a monospace font so widths follow from character counts."""

from __future__ import annotations

from dataclasses import dataclass

from convcheck.vocabulary import DECLARED, NOT_RUN

from .heatmap import COLOURS, UNKNOWN, _text_colour, one_line
from .sitemodel import ResultView

MAX_COLUMNS, MAX_CASES = 40, 150
LABEL_CHARS, HEADER_CHARS, CELL_CHARS, TITLE_CHARS = 40, 16, 14, 200
CHAR_W, CELL_H, PAD = 7.3, 18, 8  # 12 px monospace
CELL_W = int(HEADER_CHARS * CHAR_W) + 12
HEADER_H = 3 * 16 + PAD
# The worst case: every cell's title at its cap, each character escaped (&#34; is 5 bytes,
# UTF-8 up to 4), plus the markup; the test checks a hostile input against it.
MAX_BYTES = MAX_COLUMNS * MAX_CASES * (TITLE_CHARS * 5 + CELL_CHARS * 5 + 200) + 100_000


@dataclass(frozen=True)
class Cell:
    x: int
    y: int
    fill: str
    ink: str
    text: str
    title: str


@dataclass(frozen=True)
class Text:
    x: int
    y: int
    text: str
    title: str


@dataclass(frozen=True)
class Heatmap:
    width: int
    height: int
    caption: str
    headers: tuple[tuple[Text, ...], ...]
    labels: tuple[Text, ...]
    cells: tuple[Cell, ...]
    cell_w: int
    cell_h: int


def cut(text: str, chars: int) -> str:
    return one_line(text, chars)


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def layout(results: tuple[ResultView, ...]) -> Heatmap:
    cases: dict[str, None] = {}
    for r in results:
        for case in r.cases:
            cases.setdefault(case.case, None)
    shown = results[:MAX_COLUMNS]
    rows = list(cases)[:MAX_CASES]
    label_w = int(max([len(cut(c, LABEL_CHARS)) for c in rows] + [8]) * CHAR_W) + 2 * PAD
    top = 24 + HEADER_H
    left = [f"{n} {what} not drawn" for n, what in ((len(results) - len(shown), "results"),
                                                    (len(cases) - len(rows), "cases")) if n]
    caption = (f"{len(results)} result(s) x {len(cases)} conv check cases"
               + (f" ({', '.join(left)})" if left else ""))
    headers = []
    for i, r in enumerate(shown):
        x = label_w + i * CELL_W + 4
        headers.append(tuple(Text(x, 24 + 14 + j * 16, cut(t, HEADER_CHARS), cut(t, TITLE_CHARS))
                             for j, t in enumerate((r.label, r.host, r.isa))))
    labels = tuple(Text(PAD, top + k * CELL_H + 13, cut(c, LABEL_CHARS), cut(c, TITLE_CHARS))
                   for k, c in enumerate(rows))
    cells = []
    for i, r in enumerate(shown):
        by_case = {c.case: c for c in r.cases}
        for k, name in enumerate(rows):
            c = by_case.get(name)
            key = NOT_RUN if c is None else (c.verdict if c.verdict in DECLARED
                                             else c.status)
            rgb = COLOURS.get(key, UNKNOWN)
            text = "" if c is None else c.text
            title = (f"{r.label} on {r.host}: {name}: "
                     + ("not run" if c is None else f"{c.text} {c.detail}".strip()))
            cells.append(Cell(label_w + i * CELL_W, top + k * CELL_H, _hex(rgb),
                              _hex(_text_colour(rgb)), cut(text, CELL_CHARS),
                              cut(title, TITLE_CHARS)))
    width = label_w + len(shown) * CELL_W + PAD
    height = top + len(rows) * CELL_H + PAD
    return Heatmap(width, height, caption, tuple(headers), labels, tuple(cells), CELL_W - 2,
                   CELL_H - 2)
