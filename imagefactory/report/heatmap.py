"""The compatibility matrix as a PNG heatmap (Pillow): one row per conv case, one column per
test result, each cell the colour of its class. Cases run down the page so their names read
horizontally; there are ~50 cases and a handful of variants."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from convcheck.vocabulary import DECLARED, FIXED, KNOWN
from PIL import Image, ImageDraw, ImageFont

from ..safety import escape_control
from .writer import CLASSES, NOT_RUN, Compatibility

if TYPE_CHECKING:
    from PIL.ImageFont import FreeTypeFont
    from PIL.ImageFont import ImageFont as BitmapFont

# Distinct hues for the faults (they point at different fixes), green only for ok.
COLOURS: dict[str, tuple[int, int, int]] = {
    "ok": (46, 125, 50),
    "wrong-result": (245, 124, 0),
    "skipped": (200, 230, 201),
    "hang": (123, 31, 162),
    "gpu-hang": (74, 20, 140),
    "illegal-instruction": (93, 64, 55),
    "gpu-exception": (183, 28, 28),
    "out-of-memory": (0, 131, 143),
    "aperture-violation": (198, 40, 40),
    "memory-fault": (136, 14, 79),
    "no-kernel": (21, 101, 192),
    "invalid-isa": (121, 85, 72),
    "miopen-error": (216, 27, 96),
    "compile-error": (230, 81, 0),
    "crash": (33, 33, 33),
    "error": (117, 117, 117),
    NOT_RUN: (238, 238, 238),
    # Verdicts drawn over the class: a failure the variant declares, a declared one that ran.
    "known": (255, 224, 130),
    "fixed": (0, 150, 136),
}
UNKNOWN = (255, 193, 7)  # a class newer than this code
SHORT = {"wrong-result": "wrong", "aperture-violation": "aperture", "memory-fault": "mem fault",
         "no-kernel": "no kernel", "invalid-isa": "bad ISA", "miopen-error": "MIOpen",
         "illegal-instruction": "bad instr", "gpu-exception": "GPU exc",
         "out-of-memory": "OOM", "gpu-hang": "GPU reset",
         "compile-error": "compile"}

CELL_W, CELL_H, PAD, FONT_SIZE = 132, 20, 10, 12
BACKGROUND, INK, GRID = (255, 255, 255), (20, 20, 20), (255, 255, 255)
# The picture's size is bounded whatever the results hold (issue #25: a 13 MB result asked
# for gigapixels): names are cut to a width, and rows and columns past a count are left out
# and counted in the title; the full text is in COMPATIBILITY.md and the site.
MAX_LABEL_W, MAX_CELL_W, MAX_CASES, MAX_COLUMNS = 360, 220, 300, 40
MAX_WIDTH = 360 + 2 * PAD + MAX_COLUMNS * MAX_CELL_W + PAD
MAX_HEIGHT = 28 + 4 * (FONT_SIZE + 4) + PAD + MAX_CASES * CELL_H + PAD + 20 * (CELL_H + 4) + 2 * PAD

Box = tuple[int, int, int, int]


def colour(status: str) -> tuple[int, int, int]:
    return COLOURS.get(status, UNKNOWN)


def _font(size: int) -> FreeTypeFont | BitmapFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's own font: same on every host
    except (TypeError, OSError):  # Pillow built without FreeType
        return ImageFont.load_default()


def _text_colour(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2]
    return INK if luminance > 150 else (255, 255, 255)


def _label(status: str, seconds: float | None) -> str:
    if status == "ok":
        return "" if seconds is None else (f"{seconds:.2f}s" if seconds < 100 else
                                           f"{seconds:.0f}s")
    if status == NOT_RUN:
        return ""
    return SHORT.get(status, status)


def one_line(text: str, limit: int = 200) -> str:
    """Text from a result file as one printable line of at most `limit` characters (a
    newline cannot be measured or drawn on one line; an ellipsis marks a cut)."""
    # Cut before escaping (an escape is at most 10 characters): the work stays bounded too.
    text = " ".join(escape_control(text[:limit * 2 + 16]).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def render(compat: Compatibility) -> tuple[Image.Image, dict[tuple[int, str], Box]]:
    """The heatmap, and each cell's box by (result row index, case id) for tests to probe."""
    font, bold = _font(FONT_SIZE), _font(FONT_SIZE + 1)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def width(text: str, f: Any = font) -> int:
        return int(probe.textlength(text, font=f))

    def fit(text: str, px: int) -> str:
        text = one_line(text)
        if width(text) <= px:
            return text
        text = text[:px // 4]  # no glyph is narrower than ~4 px: the loop stays short
        while len(text) > 3 and width(text + "...") > px:
            text = text[:-1]
        return text + "..."

    shown_rows = compat.rows[:MAX_COLUMNS]
    shown_cases = compat.cases[:MAX_CASES]
    names = {c: fit(c, MAX_LABEL_W) for c in shown_cases}
    label_w = max([width(c) for c in names.values()] + [60]) + 2 * PAD
    cols = len(shown_rows)
    header_lines = [[fit(t, MAX_CELL_W - 8) for t in
                     (r.label, r.where, f"profile {r.profile}",
                      f"{r.counts.get('ok', 0)}/{len(r.result.conv)} ok")] for r in shown_rows]
    cell_w = max([CELL_W] + [width(t) + 8 for lines in header_lines for t in lines])
    title_h, header_h = 28, 4 * (FONT_SIZE + 4) + PAD
    legend_items = [*CLASSES, KNOWN, FIXED, NOT_RUN]
    legend_cols = max(1, (label_w + cols * cell_w) // 190)
    legend_h = ((len(legend_items) + legend_cols - 1) // legend_cols) * (CELL_H + 4) + PAD
    w = label_w + cols * cell_w + PAD
    h = title_h + header_h + len(shown_cases) * CELL_H + PAD + legend_h + PAD
    img = Image.new("RGB", (w, h), BACKGROUND)
    d = ImageDraw.Draw(img)
    left = [f"{n} {what} not drawn" for n, what in
            ((len(compat.rows) - cols, "results"), (len(compat.cases) - len(shown_cases),
                                                   "cases")) if n > 0]
    d.text((PAD, 6), fit(f"imagefactory compatibility: {len(compat.rows)} result(s) x "
                         f"{len(compat.cases)} conv check cases"
                         + (f" ({', '.join(left)})" if left else ""), w - 2 * PAD),
           fill=INK, font=bold)
    top = title_h + header_h
    for i, lines in enumerate(header_lines):
        x = label_w + i * cell_w + 4
        for j, text in enumerate(lines):
            d.text((x, title_h + j * (FONT_SIZE + 4)), text, fill=INK,
                   font=bold if j == 0 else font)
    boxes: dict[tuple[int, str], Box] = {}
    for r, case in enumerate(shown_cases):
        y = top + r * CELL_H
        d.text((PAD, y + 3), names[case], fill=INK, font=font)
        for i, row in enumerate(shown_rows):
            c = compat.cell(row, case)
            status = c.status if c else NOT_RUN
            key = c.verdict if c is not None and c.verdict in DECLARED else status
            x = label_w + i * cell_w
            box = (x, y, x + cell_w - 2, y + CELL_H - 2)  # a 2 px white grid between cells
            d.rectangle(box, fill=colour(key))
            text = _label(status, c.seconds if c else None)
            if key != status:
                text = f"{key} {text}".strip()
            if text:
                d.text((x + 6, y + 3), text, fill=_text_colour(colour(key)), font=font)
            boxes[(i, case)] = box
    y0 = top + len(shown_cases) * CELL_H + PAD
    for k, name in enumerate(legend_items):
        x = PAD + (k % legend_cols) * 190
        y = y0 + (k // legend_cols) * (CELL_H + 4)
        d.rectangle((x, y, x + 16, y + 16), fill=colour(name), outline=(160, 160, 160))
        d.text((x + 22, y + 2), name, fill=INK, font=font)
    return img.quantize(palette=_palette(), dither=Image.Dither.NONE), boxes


def _palette() -> Image.Image:
    """Each class colour exactly, plus its blends towards white and ink for anti-aliased
    text: a palette PNG is a fifth of the size of an RGB one, and cells keep their colour.
    Pillow maps pixels to palette entries through a cache of 4-level-wide buckets, so a blend
    closer than that to a class colour would steal its pixels: such blends are left out."""
    base = [*COLOURS.values(), UNKNOWN, BACKGROUND, INK, (160, 160, 160)]
    colours = list(dict.fromkeys(base))
    for c in base:
        for target in (BACKGROUND, INK):
            for t in (0.2, 0.4, 0.6, 0.8):
                mixed = tuple(round(a + (b - a) * t) for a, b in zip(c, target, strict=True))
                if all(max(abs(a - b) for a, b in zip(mixed, o, strict=True)) > 8
                       for o in colours):
                    colours.append(mixed)  # type: ignore[arg-type]
    flat = [v for c in colours[:256] for v in c]
    pal = Image.new("P", (1, 1))
    pal.putpalette(flat + [0] * (768 - len(flat)))
    return pal
