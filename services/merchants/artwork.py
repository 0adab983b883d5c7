"""The merchant artwork: the social share card (PNG) and the printable checkout sign (PDF).

Pure functions of their inputs: no clock, no network, no database. The only I/O is reading the bundled DejaVu
fonts (assets/fonts/, Bitstream Vera / DejaVu licence), so the same input gives byte-identical output on any
machine with the same Pillow: text uses Pillow's basic layout engine (not libraqm, which may or may not be
installed), the PNG carries no text or time chunks, and the PDF carries no creation/modification dates and no
file ID.

Rendering takes a module lock: the cached FreeType faces are shared, and a face is not safe to use from two
threads at once. Callers in an event loop should run these functions in a worker thread (tens of milliseconds).
"""

from __future__ import annotations

import functools
import io
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import segno
from PIL import Image, ImageDraw, ImageFont

__all__ = ["ShareCardFigures", "clean_text", "dollars", "qr_matrix", "render_qr_sign", "render_share_card"]

FONT_DIR = Path(__file__).resolve().parent / "assets" / "fonts"
_REGULAR = "DejaVuSans.ttf"
_BOLD = "DejaVuSans-Bold.ttf"

ELLIPSIS = "\u2026"

# The share card: the Open Graph / Twitter large-image size.
CARD_SIZE = (1200, 630)
# The sign: US Letter at 300 dpi, 1 bit per pixel (CCITT G4 in the PDF).
SIGN_DPI = 300
SIGN_SIZE = (int(8.5 * SIGN_DPI), 11 * SIGN_DPI)
# QR: error correction M at least (segno raises it when that costs no extra modules), 4-module quiet zone.
QR_ERROR = "m"
QR_QUIET_ZONE = 4

_LOCK = threading.Lock()


@dataclass(frozen=True)
class ShareCardFigures:
    """What the share card shows: the merchant and its redemptions over the last range_days days."""

    merchant_name: str
    range_days: int
    redemption_count: int
    discount_total_cents: int
    unique_drivers: int
    # The page the card's QR code opens (the driver app's checkout page of the store, as on the printed sign);
    # no QR code when empty.
    checkout_url: str = ""

    def __post_init__(self) -> None:
        if self.range_days < 1:
            raise ValueError(f"range_days must be at least 1, got {self.range_days}")
        for name in ("redemption_count", "discount_total_cents", "unique_drivers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")


# ---------------------------------------------------------------------------------------------------------------
# Text helpers


@functools.lru_cache(maxsize=128)
def _font(bold: bool, size: int) -> ImageFont.FreeTypeFont:
    path = FONT_DIR / (_BOLD if bold else _REGULAR)
    return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)


def clean_text(text: str) -> str:
    """One line of printable text: control and format characters dropped, whitespace runs made one space."""
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category.startswith("Z") or char in "\t\n\r\v\f":
            kept.append(" ")
        elif not category.startswith("C"):
            kept.append(char)
    return " ".join("".join(kept).split())


def _width(font: ImageFont.FreeTypeFont, text: str) -> float:
    return font.getlength(text)


def _longest_prefix(font: ImageFont.FreeTypeFont, text: str, width: float, suffix: str = "") -> int:
    """How many leading characters of text (at least one) fit in width with suffix after them."""
    low, high = 1, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if _width(font, text[:middle] + suffix) <= width:
            low = middle
        else:
            high = middle - 1
    return low


def _ellipsize(font: ImageFont.FreeTypeFont, text: str, width: float) -> str:
    text = text.rstrip()
    if _width(font, text + ELLIPSIS) <= width:
        return text + ELLIPSIS
    return text[: _longest_prefix(font, text, width, ELLIPSIS)].rstrip() + ELLIPSIS


def _wrap(font: ImageFont.FreeTypeFont, text: str, width: float) -> list[str]:
    """Greedy word wrap; a word wider than the line is broken between characters."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if _width(font, candidate) <= width:
            current = candidate
        elif _width(font, word) <= width:
            lines.append(current)
            current = word
        else:
            # Too wide even alone: it starts on the current line and runs on, broken where the lines end.
            while len(candidate) > 1 and _width(font, candidate) > width:
                cut = _longest_prefix(font, candidate, width)
                lines.append(candidate[:cut].rstrip())
                candidate = candidate[cut:].lstrip()
            current = candidate
    if current:
        lines.append(current)
    return lines


def _fit(
    text: str, *, bold: bool, sizes: Sequence[int], width: float, max_lines: int
) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The largest size at which text wraps into max_lines lines without breaking a word; at the smallest size,
    whatever does not fit is cut with an ellipsis."""
    for size in sizes[:-1]:
        font = _font(bold, size)
        if all(_width(font, word) <= width for word in text.split(" ")):
            lines = _wrap(font, text, width)
            if len(lines) <= max_lines:
                return font, lines
    font = _font(bold, sizes[-1])
    lines = _wrap(font, text, width)
    if len(lines) > max_lines:
        rest = " ".join(lines[max_lines - 1 :])
        lines = [*lines[: max_lines - 1], _ellipsize(font, rest, width)]
    return font, lines


def _line_height(font: ImageFont.FreeTypeFont) -> int:
    ascent, descent = font.getmetrics()
    return ascent + descent


def _draw_lines(
    draw: ImageDraw.ImageDraw,
    lines: Sequence[str],
    font: ImageFont.FreeTypeFont,
    *,
    x: float,
    y: float,
    fill: str | int,
    align: str = "left",
    spacing: float = 1.0,
) -> float:
    """Draws lines top-down from y (the top of the first line's ascent); returns the y below the last line."""
    step = _line_height(font) * spacing
    for line in lines:
        if align == "center":
            draw.text((x, y), line, font=font, fill=fill, anchor="ma")
        else:
            draw.text((x, y), line, font=font, fill=fill, anchor="la")
        y += step
    return y


def _sizes(largest: int, smallest: int, step: int = 2) -> list[int]:
    return list(range(largest, smallest - 1, -step)) if largest > smallest else [smallest]


def dollars(cents: int) -> str:
    """Cents as dollars with two decimals and thousands separators: 12350 → "$123.50"."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}${whole:,}.{part:02d}"


def _plural(count: int, singular: str, plural: str) -> str:
    return singular if count == 1 else plural


# ---------------------------------------------------------------------------------------------------------------
# Share card

_CARD_BACKGROUND = "#0f1c2e"
_CARD_PANEL = "#16283f"
_CARD_ACCENT = "#34d399"
_CARD_TEXT = "#ffffff"
_CARD_MUTED = "#a7b6c8"
_CARD_MARGIN = 72
# The QR code's box (quiet zone included) between the window label and the figures panel.
_CARD_QR_TOP = 104
_CARD_QR_SIDE = 204


def render_share_card(figures: ShareCardFigures) -> bytes:
    """The 1200 x 630 RGB PNG share card of a merchant's redemptions over the last figures.range_days days."""
    with _LOCK:
        image = _share_card_image(figures)
        out = io.BytesIO()
        image.save(out, format="PNG", compress_level=9)
    return out.getvalue()


def _share_card_image(figures: ShareCardFigures) -> Image.Image:
    width, height = CARD_SIZE
    margin = _CARD_MARGIN
    inner = width - 2 * margin
    image = Image.new("RGB", CARD_SIZE, _CARD_BACKGROUND)
    draw = ImageDraw.Draw(image)

    # Brand row: "Nerava" on the left, the window on the right, an accent bar along the bottom edge.
    draw.rectangle((0, height - 14, width, height), fill=_CARD_ACCENT)
    brand = _font(True, 40)
    draw.text((margin, 56), "Nerava", font=brand, fill=_CARD_ACCENT, anchor="la")
    window = "Last 24 hours" if figures.range_days == 1 else f"Last {figures.range_days:,} days"
    draw.text((width - margin, 64), window, font=_font(False, 28), fill=_CARD_MUTED, anchor="ra")

    # The checkout QR code top right (white, with its quiet zone, so a phone reads it off the dark card), the
    # name beside it.
    if figures.checkout_url:
        qr = _qr_image(
            figures.checkout_url, _CARD_QR_SIDE // (len(qr_matrix(figures.checkout_url)) + 2 * QR_QUIET_ZONE)
        )
        image.paste(qr.convert("RGB"), (width - margin - qr.width, _CARD_QR_TOP))
        inner -= qr.width + 32

    # The merchant's name: up to two lines, shrinking from 64 to 40 px, cut with an ellipsis past that.
    name = clean_text(figures.merchant_name) or "Your neighbourhood merchant"
    font, lines = _fit(name, bold=True, sizes=_sizes(64, 40), width=inner, max_lines=2)
    _draw_lines(draw, lines, font, x=margin, y=132, fill=_CARD_TEXT, spacing=1.05)

    top = 320
    draw.rounded_rectangle((margin, top, width - margin, height - 58), radius=24, fill=_CARD_PANEL)
    if figures.redemption_count == 0:
        _draw_welcome(draw, name, top)
    else:
        _draw_figures(draw, figures, top)
    return image


def _draw_figures(draw: ImageDraw.ImageDraw, figures: ShareCardFigures, top: int) -> None:
    margin = _CARD_MARGIN
    column = (CARD_SIZE[0] - 2 * margin) // 2
    pad = 40
    stats = (
        (
            f"{figures.redemption_count:,}",
            _plural(figures.redemption_count, "Nova redemption", "Nova redemptions"),
            _CARD_TEXT,
        ),
        (dollars(figures.discount_total_cents), "saved by EV drivers", _CARD_ACCENT),
    )
    for index, (value, label, colour) in enumerate(stats):
        x = margin + index * column + pad
        value_font, value_lines = _fit(value, bold=True, sizes=_sizes(96, 32, 4), width=column - 2 * pad, max_lines=1)
        draw.text((x, top + 118), value_lines[0], font=value_font, fill=colour, anchor="ls")
        draw.text((x, top + 146), label, font=_font(False, 30), fill=_CARD_MUTED, anchor="la")
    if figures.unique_drivers > 0:
        drivers = _plural(figures.unique_drivers, "EV driver", "EV drivers")
        line = f"from {figures.unique_drivers:,} {drivers} charging nearby"
        draw.text((margin + pad, top + 200), line, font=_font(False, 26), fill=_CARD_MUTED, anchor="la")
    draw.line((margin + column, top + 36, margin + column, top + 176), fill=_CARD_BACKGROUND, width=3)


def _draw_welcome(draw: ImageDraw.ImageDraw, name: str, top: int) -> None:
    margin = _CARD_MARGIN
    pad = 40
    width = CARD_SIZE[0] - 2 * (margin + pad)
    draw.text(
        (margin + pad, top + 40), "Now welcoming EV drivers", font=_font(True, 56), fill=_CARD_ACCENT, anchor="la"
    )
    line = f"Drivers charging nearby earn Nova with Nerava and spend it at {name}."
    font, lines = _fit(line, bold=False, sizes=_sizes(32, 26), width=width, max_lines=2)
    _draw_lines(draw, lines, font, x=margin + pad, y=top + 130, fill=_CARD_TEXT, spacing=1.2)


# ---------------------------------------------------------------------------------------------------------------
# Checkout sign


def qr_matrix(url: str) -> tuple[tuple[bool, ...], ...]:
    """The QR code the sign prints for url, without its quiet zone: rows of modules, True = dark."""
    code = segno.make_qr(url, error=QR_ERROR)
    return tuple(tuple(bool(module) for module in row) for row in code.matrix_iter(border=0))


def _qr_image(url: str, module_px: int) -> Image.Image:
    matrix = qr_matrix(url)
    size = len(matrix) + 2 * QR_QUIET_ZONE
    small = Image.new("1", (size, size), 1)
    pixels = [0 if dark else 1 for row in matrix for dark in row]
    inner = Image.new("1", (len(matrix), len(matrix)))
    inner.putdata(pixels)
    small.paste(inner, (QR_QUIET_ZONE, QR_QUIET_ZONE))
    return small.resize((size * module_px, size * module_px), Image.Resampling.NEAREST)


def render_qr_sign(merchant_name: str, perk_label: str, checkout_url: str) -> bytes:
    """A one-page US Letter PDF to print and put by the till: the perk and a large QR code of checkout_url.

    ValueError for an empty URL, and segno's DataOverflowError (a ValueError) for one too long for any QR code
    (over about 2,300 bytes)."""
    if not checkout_url:
        raise ValueError("checkout_url must not be empty")
    with _LOCK:
        page = _sign_page(clean_text(merchant_name), clean_text(perk_label), checkout_url)
        out = io.BytesIO()
        page.save(
            out,
            format="PDF",
            resolution=float(SIGN_DPI),
            title="Pay with Nova",
            creator="Nerava",
            producer=None,
            creationDate=None,
            modDate=None,
        )
    return out.getvalue()


def _sign_page(name: str, perk: str, url: str) -> Image.Image:
    """The page at 300 dpi. Drawn in greyscale (anti-aliased text), then thresholded to 1 bit so it stays sharp
    on any printer and compresses to a few tens of kilobytes."""
    width, height = SIGN_SIZE
    margin = SIGN_DPI // 2
    inner = width - 2 * margin
    centre = width // 2
    page = Image.new("L", SIGN_SIZE, 255)
    draw = ImageDraw.Draw(page)

    # Top, downwards: brand, heading, merchant, perk box.
    y: float = margin
    draw.text((centre, y), "Nerava", font=_font(True, 90), fill=0, anchor="ma")
    y += 130
    draw.rectangle((margin, y, width - margin, y + 8), fill=0)
    y += 70
    font, lines = _fit("EV drivers: pay with Nova", bold=True, sizes=_sizes(150, 100, 5), width=inner, max_lines=1)
    y = _draw_lines(draw, lines, font, x=centre, y=y, fill=0, align="center")
    y += 20
    font, lines = _fit(f"at {name or 'this store'}", bold=False, sizes=_sizes(110, 70, 5), width=inner, max_lines=2)
    y = _draw_lines(draw, lines, font, x=centre, y=y, fill=0, align="center")
    if perk:
        y += 50
        font, lines = _fit(perk, bold=True, sizes=_sizes(140, 80, 5), width=inner - 160, max_lines=1)
        box_height = _line_height(font) + 80
        draw.rounded_rectangle((margin, y, width - margin, y + box_height), radius=60, outline=0, width=14)
        _draw_lines(draw, lines, font, x=centre, y=y + 40, fill=0, align="center")
        y += box_height
    y += 60

    # Bottom, upwards: footer and the instruction line.
    footer = _font(False, 42)
    bottom = height - margin
    draw.text(
        (centre, bottom),
        "Nova are the rewards EV drivers earn while they charge with Nerava.",
        font=footer,
        fill=0,
        anchor="md",
    )
    instruction = "Scan with your phone camera at checkout to spend your Nova here."
    font, lines = _fit(instruction, bold=True, sizes=_sizes(70, 50, 4), width=inner, max_lines=2)
    step = _line_height(font)
    instruction_top = bottom - 90 - step * len(lines)
    _draw_lines(draw, lines, font, x=centre, y=instruction_top, fill=0, align="center")

    # The QR code fills what is left between, whole pixels per module, centred.
    modules = len(qr_matrix(url)) + 2 * QR_QUIET_ZONE
    room = min(int(instruction_top - 40 - y), inner)
    module_px = max(room // modules, 1)
    qr = _qr_image(url, module_px)
    qr_top = int(y + (instruction_top - 40 - y - qr.height) / 2)
    page.paste(qr.convert("L"), (centre - qr.width // 2, qr_top))

    return page.point(lambda value: 255 if value >= 128 else 0).convert("1", dither=Image.Dither.NONE)
