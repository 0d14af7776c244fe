"""QR encode (segno) and decode (zxing-cpp) of signed item codes, clean and through everyday distortions."""

from __future__ import annotations

import datetime as dt
import io
import secrets

import numpy as np
import pytest
from PIL import Image, ImageFilter

from sampan.qr.codec import MAX_CDP_FRACTION, QrCodecError, decode_qr, render_qr, symbol_size
from sampan.qr.keys import generate_issuer_key, public_key_hex
from sampan.qr.payload import ItemCode, sign, verify

KEY = generate_issuer_key("acme-hk")
CODE = ItemCode("SN-000123456", "acme-hk", dt.date(2027, 6, 30))
TEXT = sign(CODE, KEY)
NOW = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return render_qr(TEXT, scale=6, border=4)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("L")


def test_symbol_is_small() -> None:
    version, modules = symbol_size(TEXT)
    assert version <= 8 and modules == 17 + 4 * version  # 140 alphanumeric characters at level Q: version 8


def test_clean_render_decodes_and_verifies(clean: np.ndarray) -> None:
    version, modules = symbol_size(TEXT)
    assert clean.dtype == np.uint8 and clean.shape == ((modules + 8) * 6,) * 2
    assert set(np.unique(clean)) == {0, 255}
    assert decode_qr(clean) == [TEXT]
    assert verify(decode_qr(clean)[0], {"acme-hk": public_key_hex(KEY)}, now=NOW) == CODE


DISTORTIONS = {
    "half scale": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.BILINEAR),
    "upscaled 1.7x": lambda im: im.resize((int(im.width * 1.7),) * 2, Image.Resampling.BICUBIC),
    "rotated 90": lambda im: im.rotate(90, expand=True),
    "rotated 23": lambda im: im.rotate(23, expand=True, fillcolor=255, resample=Image.Resampling.BILINEAR),
    "jpeg q20": lambda im: _jpeg(im, 20),
    "blurred r1.5": lambda im: im.filter(ImageFilter.GaussianBlur(1.5)),
    "rotated+blurred+jpeg": lambda im: _jpeg(im.rotate(-37, expand=True, fillcolor=255, resample=Image.Resampling
                                                       .BILINEAR).filter(ImageFilter.GaussianBlur(1.0)), 35),
}


@pytest.mark.parametrize("name", sorted(DISTORTIONS))
def test_distorted_captures_decode(clean: np.ndarray, name: str) -> None:
    image = DISTORTIONS[name](Image.fromarray(clean))
    assert decode_qr(np.asarray(image)) == [TEXT]
    assert decode_qr(image) == [TEXT]  # a PIL image directly


def test_colour_and_float_inputs(clean: np.ndarray) -> None:
    rgb = np.repeat(clean[:, :, None], 3, axis=2)
    assert decode_qr(rgb) == [TEXT]
    assert decode_qr(clean.astype(np.float64) / 255.0) == [TEXT]
    with pytest.raises(QrCodecError, match=r"\[0, 1\]"):
        decode_qr(clean.astype(np.float64))
    with pytest.raises(QrCodecError, match="cannot read"):
        decode_qr("not an image")


def test_blank_and_noise_decode_to_nothing() -> None:
    assert decode_qr(np.full((200, 200), 255, np.uint8)) == []
    noise = np.random.default_rng(secrets.randbits(128)).integers(0, 256, (200, 200), dtype=np.uint8)
    assert decode_qr(noise) == []


def test_centre_pattern_keeps_the_code_readable() -> None:
    rng = np.random.default_rng(secrets.randbits(128))
    scale, border = 6, 4
    side = symbol_size(TEXT)[1] * scale
    pattern = rng.random((int(side * 0.25), int(side * 0.25))) > 0.5
    image = render_qr(TEXT, scale=scale, border=border, cdp=pattern)
    top = (image.shape[0] - pattern.shape[0]) // 2
    placed = image[top:top + pattern.shape[0], top:top + pattern.shape[1]]
    assert np.array_equal(placed, np.where(pattern, 255, 0))
    assert decode_qr(image) == [TEXT]
    assert decode_qr(Image.fromarray(image).filter(ImageFilter.GaussianBlur(1.0))) == [TEXT]


def test_oversized_pattern_is_refused() -> None:
    side = symbol_size(TEXT)[1] * 6
    with pytest.raises(QrCodecError, match="error-correction budget"):
        render_qr(TEXT, scale=6, cdp=np.zeros((int(side * MAX_CDP_FRACTION) + 1,) * 2, bool))
    with pytest.raises(QrCodecError, match=r"\[0, 1\]"):
        render_qr(TEXT, scale=6, cdp=np.full((10, 10), 3.0))


def test_bad_render_options_are_refused() -> None:
    with pytest.raises(QrCodecError, match="error level"):
        render_qr(TEXT, error="x")
    with pytest.raises(QrCodecError, match="does not fit"):
        render_qr("A" * 5000)
    with pytest.raises(QrCodecError, match="scale"):
        render_qr(TEXT, scale=0)
