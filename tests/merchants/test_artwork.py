"""The merchant artwork as a client gets it: the share card PNG and the checkout sign PDF, read back from their
bytes (Pillow decodes the PNG; the PDF is parsed with Pillow's PdfParser and its CCITT image decoded through a
TIFF wrapper, so the QR code is checked module by module without a QR decoder). pdftoppm and zbarimg, when
installed, rasterize the PDF and decode the QR code as a phone would."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageOps, PdfParser

from services.merchants.artwork import (
    QR_QUIET_ZONE,
    SIGN_DPI,
    ShareCardFigures,
    dollars,
    qr_matrix,
    render_qr_sign,
    render_share_card,
)
from tests.merchants.helpers import scan_sign

ROOT = Path(__file__).resolve().parents[2]
URL = "https://app.nerava.test/v1/checkout/qr/Zq3xN0c8y7-k1bVw_2mTq9RrLs5Hd4eGf6jPa0uYiXo"
FIGURES = ShareCardFigures(
    merchant_name="Blue Bottle Coffee", range_days=7, redemption_count=42, discount_total_cents=12350, unique_drivers=31
)
CARD_BACKGROUND = (0x0F, 0x1C, 0x2E)
LONG_WORDS = ("Very Long Merchant Name " * 9)[:200]
LONG_RUN = "W" * 200


# ---------------------------------------------------------------------------------------------------------------
# Share card


def _png_chunk_types(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    types = []
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        types.append(data[offset + 4 : offset + 8])
        offset += 12 + length
    return types


def _decode_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    return image


def test_share_card_is_a_1200_by_630_rgb_png_without_metadata() -> None:
    data = render_share_card(FIGURES)

    image = _decode_png(data)
    assert image.size == (1200, 630)
    assert image.mode == "RGB"
    assert len(data) < 300_000
    # Nothing that could vary between renders: no tIME, tEXt, iTXt, pHYs or eXIf chunks.
    assert set(_png_chunk_types(data)) == {b"IHDR", b"IDAT", b"IEND"}


def test_share_card_is_byte_identical_for_the_same_figures() -> None:
    first = render_share_card(FIGURES)
    again = render_share_card(dataclasses.replace(FIGURES))

    assert first == again


@pytest.mark.parametrize("name", ["Blue Bottle Coffee", LONG_WORDS, LONG_RUN])
def test_share_card_qr_code_is_the_checkout_page(name: str) -> None:
    """The card a merchant shares carries the same QR code as the printed sign: the driver app's checkout page,
    white on the dark card with its quiet zone, and the name never runs into it."""
    card = _decode_png(render_share_card(dataclasses.replace(FIGURES, merchant_name=name, checkout_url=URL)))
    matrix = qr_matrix(URL)
    size = len(matrix) + 2 * QR_QUIET_ZONE
    # The top-right corner above the figures panel (the card's 72 px margin, a code of at most 204 px and the
    # 32 px gap before the name): the only white there is the QR code's box.
    strip_left = card.width - 72 - 204 - 16
    strip = card.crop((strip_left, 0, card.width, 320)).convert("RGB")
    white = Image.eval(strip.convert("L"), lambda v: 255 if v == 255 else 0)
    box = white.getbbox()
    assert box is not None
    left, top, right, bottom = box[0] + strip_left, box[1], box[2] + strip_left, box[3]
    assert right - left == bottom - top
    assert (right - left) % size == 0
    module = (right - left) // size
    printed = tuple(
        tuple(
            card.getpixel(
                (left + module * (QR_QUIET_ZONE + x) + module // 2, top + module * (QR_QUIET_ZONE + y) + module // 2)
            )
            == (0, 0, 0)
            for x in range(len(matrix))
        )
        for y in range(len(matrix))
    )
    assert printed == matrix
    # The quiet zone is all white, so no text overlaps the code.
    quiet = card.crop((left, top, right, top + QR_QUIET_ZONE * module)).convert("L")
    assert quiet.getextrema() == (255, 255)


def test_zero_redemptions_render_a_welcome_card() -> None:
    zero = ShareCardFigures("Sunrise Bakery", 7, 0, 0, 0)

    image = _decode_png(render_share_card(zero))

    assert image.size == (1200, 630)
    assert render_share_card(zero) != render_share_card(dataclasses.replace(zero, redemption_count=1))


@pytest.mark.parametrize(
    "name", [LONG_WORDS, LONG_RUN, "Caf\u00e9\tdu\n\x00Nord \u2014 \u00dcml\u00e4ut \u03a9 " * 6, ""]
)
def test_long_or_odd_names_stay_inside_the_card(name: str) -> None:
    figures = dataclasses.replace(FIGURES, merchant_name=name, discount_total_cents=2_147_483_647)

    image = _decode_png(render_share_card(figures))

    assert image.size == (1200, 630)
    # The name block (below the brand row, above the figures panel) leaves the right margin untouched.
    right_margin = image.crop((1200 - 64, 120, 1200, 310))
    colours = right_margin.getcolors()
    assert colours is not None
    assert {colour for _, colour in colours} == {CARD_BACKGROUND}


@pytest.mark.parametrize(
    "change",
    [
        {"merchant_name": "Sunrise Bakery"},
        {"range_days": 30},
        {"redemption_count": 43},
        {"discount_total_cents": 12351},
        {"unique_drivers": 32},
    ],
)
def test_every_figure_shows_on_the_card(change: dict[str, Any]) -> None:
    assert render_share_card(dataclasses.replace(FIGURES, **change)) != render_share_card(FIGURES)


@pytest.mark.parametrize(
    "change",
    [{"range_days": 0}, {"redemption_count": -1}, {"discount_total_cents": -5}, {"unique_drivers": -1}],
)
def test_impossible_figures_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(FIGURES, **change)


def test_dollars() -> None:
    assert dollars(12350) == "$123.50"
    assert dollars(0) == "$0.00"
    assert dollars(5) == "$0.05"
    assert dollars(123_456_789) == "$1,234,567.89"


# ---------------------------------------------------------------------------------------------------------------
# Checkout sign


def _pdf(data: bytes) -> tuple[PdfParser.PdfParser, Any]:
    parser = PdfParser.PdfParser(buf=data)
    assert len(parser.pages) == 1
    return parser, parser.read_indirect(parser.pages[0])


def _page_image(data: bytes) -> Image.Image:
    """The page's image XObject, decoded: its CCITT G4 stream wrapped in a one-strip TIFF for Pillow's libtiff."""
    parser, page = _pdf(data)
    (reference,) = page[b"Resources"][b"XObject"].values()
    stream = parser.read_indirect(reference)
    info = stream.dictionary
    assert info[b"Subtype"] == b"Image"
    assert info[b"Filter"] == [b"CCITTFaxDecode"]
    assert info[b"BitsPerComponent"] == 1
    (params,) = info[b"DecodeParms"]
    assert params[b"K"] < 0  # Group 4
    width, height, body = info[b"Width"], info[b"Height"], bytes(stream.buf)
    # PDF's BlackIs1 + DeviceGray (1 = white) is TIFF's BlackIsZero; the default is the fax WhiteIsZero.
    photometric = 1 if params.get(b"BlackIs1", False) else 0
    tags = [(256, 4, width), (257, 4, height), (258, 3, 1), (259, 3, 4), (262, 3, photometric)]
    tags += [(273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, len(body))]
    body_offset = 8 + 2 + 12 * len(tags) + 4
    tiff = bytearray(b"II*\x00" + struct.pack("<IH", 8, len(tags)))
    for tag, kind, given in tags:
        value = body_offset if tag == 273 else given
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        tiff += struct.pack("<HHI", tag, kind, 1) + packed
    tiff += struct.pack("<I", 0) + body
    image = Image.open(io.BytesIO(bytes(tiff)))
    image.load()
    return image


def _qr_box(page: Image.Image) -> tuple[int, int, int, int]:
    """The QR code's dark modules' bounding box: the tallest band of inked rows (text lines are far shorter)."""
    ink = ImageOps.invert(page.convert("L"))
    rows = ink.getprojection()[1]
    bands = []
    start = None
    for y, inked in enumerate([*rows, 0]):
        if inked and start is None:
            start = y
        elif not inked and start is not None:
            bands.append((start, y))
            start = None
    top, bottom = max(bands, key=lambda band: band[1] - band[0])
    box = ink.crop((0, top, page.width, bottom)).getbbox()
    assert box is not None
    return box[0], top, box[2], bottom


def test_sign_is_one_us_letter_page_holding_one_image() -> None:
    data = render_qr_sign("Blue Bottle Coffee", "$3 off any order", URL)

    assert data.startswith(b"%PDF-")
    assert data.rstrip().endswith(b"%%EOF")
    assert len(data) < 500_000
    parser, page = _pdf(data)
    assert parser.root_ref is not None
    assert parser.read_indirect(parser.root_ref)[b"Type"] == b"Catalog"
    assert [float(side) for side in page[b"MediaBox"]] == [0.0, 0.0, 612.0, 792.0]
    image = _page_image(data)
    assert image.size == (int(8.5 * SIGN_DPI), 11 * SIGN_DPI)
    # Nothing that varies between renders.
    assert b"/ID" not in data
    assert b"CreationDate" not in data
    assert b"ModDate" not in data


def test_sign_is_byte_identical_for_the_same_input() -> None:
    first = render_qr_sign("Blue Bottle Coffee", "$3 off any order", URL)

    assert render_qr_sign("Blue Bottle Coffee", "$3 off any order", URL) == first
    assert render_qr_sign("Sunrise Bakery", "$3 off any order", URL) != first
    assert render_qr_sign("Blue Bottle Coffee", "$2 off any order", URL) != first
    assert render_qr_sign("Blue Bottle Coffee", "$3 off any order", URL + "x") != first


def test_both_are_byte_identical_in_another_process() -> None:
    """No state of this process (hash seed, font cache, clock) leaks into the bytes."""
    script = (
        "import hashlib\n"
        "from services.merchants.artwork import ShareCardFigures, render_qr_sign, render_share_card\n"
        f"card = render_share_card(ShareCardFigures(*{dataclasses.astuple(FIGURES)!r}))\n"
        f"sign = render_qr_sign('Blue Bottle Coffee', '$3 off any order', {URL!r})\n"
        "print(hashlib.sha256(card).hexdigest(), hashlib.sha256(sign).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60
    )

    card = hashlib.sha256(render_share_card(FIGURES)).hexdigest()
    sign = hashlib.sha256(render_qr_sign("Blue Bottle Coffee", "$3 off any order", URL)).hexdigest()
    assert result.stdout.split() == [card, sign]


@pytest.mark.parametrize("url", [URL, "https://app.nerava.test/v1/checkout/qr/" + "a" * 300])
def test_sign_qr_code_is_the_checkout_url_with_a_quiet_zone(url: str) -> None:
    page = _page_image(render_qr_sign("Blue Bottle Coffee", "$3 off any order", url))
    matrix = qr_matrix(url)

    left, top, right, bottom = _qr_box(page)
    size = len(matrix)
    assert right - left == bottom - top
    assert (right - left) % size == 0
    module = (right - left) // size
    printed = tuple(
        tuple(
            page.getpixel((left + module * x + module // 2, top + module * y + module // 2)) == 0 for x in range(size)
        )
        for y in range(size)
    )
    assert printed == matrix
    # At least four white modules all round, and the code at least 3 inches wide.
    quiet = QR_QUIET_ZONE * module
    ink = ImageOps.invert(page.convert("L"))
    around = ink.crop((left - quiet, top - quiet, right + quiet, bottom + quiet))
    assert around.getbbox() == (quiet, quiet, quiet + right - left, quiet + bottom - top)
    assert right - left >= 3 * SIGN_DPI


def test_qr_matrix_is_a_qr_code() -> None:
    matrix = qr_matrix(URL)

    size = len(matrix)
    assert all(len(row) == size for row in matrix)
    assert size >= 21
    assert (size - 21) % 4 == 0
    finder = tuple(
        tuple(x in (0, 6) or y in (0, 6) or (2 <= x <= 4 and 2 <= y <= 4) for x in range(7)) for y in range(7)
    )
    for x0, y0 in ((0, 0), (size - 7, 0), (0, size - 7)):
        assert tuple(row[x0 : x0 + 7] for row in matrix[y0 : y0 + 7]) == finder
    assert len(qr_matrix(URL + "a" * 300)) > size


@pytest.mark.parametrize(
    ("name", "perk"),
    [(LONG_WORDS, "$3 off any order " * 12), (LONG_RUN, "W" * 200), ("", ""), ("Caf\u00e9\x00\n", "\t$1 off\n")],
)
def test_sign_takes_long_or_empty_text(name: str, perk: str) -> None:
    data = render_qr_sign(name, perk, URL)

    assert len(data) < 500_000
    page = _page_image(data)
    # Text never reaches the half-inch side margins.
    margin = SIGN_DPI // 2 - 10
    ink = ImageOps.invert(page.convert("L"))
    assert ink.crop((0, 0, margin, page.height)).getbbox() is None
    assert ink.crop((page.width - margin, 0, page.width, page.height)).getbbox() is None
    left, top, right, bottom = _qr_box(page)
    assert right - left == bottom - top >= 3 * SIGN_DPI


def test_sign_without_a_url_is_refused() -> None:
    with pytest.raises(ValueError):
        render_qr_sign("Blue Bottle Coffee", "$3 off any order", "")


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) is not installed")
def test_sign_rasterizes_with_poppler() -> None:
    data = render_qr_sign("Blue Bottle Coffee", "$3 off any order", URL)

    with tempfile.TemporaryDirectory() as directory:
        pdf = Path(directory, "sign.pdf")
        pdf.write_bytes(data)
        subprocess.run(["pdftoppm", "-r", "50", "-gray", "-png", str(pdf), str(Path(directory, "page"))], check=True)
        (png,) = Path(directory).glob("page*.png")
        with Image.open(png) as raster:
            assert raster.size == (425, 550)
            # Mostly white paper: the page is not rendered inverted.
            mean = raster.convert("L").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
            assert isinstance(mean, int)
            assert mean > 128


def test_sign_qr_code_scans_back_to_the_url() -> None:
    assert scan_sign(render_qr_sign("Blue Bottle Coffee", "$3 off any order", URL)) == URL
