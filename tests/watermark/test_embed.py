"""Embedding: bits round-trip, PSNR at the default strength on several image kinds, shape/dtype kept,
bad inputs refused with the field named."""

from __future__ import annotations

import numpy as np
import pytest
from _wm_test_images import KINDS, make_image

from sampan.errors import SampanError
from sampan.watermark import WatermarkError, detect, embed, generate_key
from sampan.watermark.embed import psnr_uint8


def _bits(seed: int, n: int = 32) -> list[int]:
    return [int(b) for b in np.random.default_rng(seed).integers(0, 2, n)]


@pytest.mark.parametrize("kind", KINDS)
def test_default_strength_keeps_psnr_and_bits_round_trip(kind: str) -> None:
    image = make_image(kind, seed=3)
    key, bits = generate_key(), _bits(1)
    marked = embed(image, key, bits)
    assert marked.shape == image.shape and marked.dtype == np.uint8
    assert psnr_uint8(image, marked) >= 38.0
    found = detect(marked, key)
    assert found.bits == bits
    assert found.marked_at(1e-6)


def test_grey_image_round_trip() -> None:
    image = make_image("natural", seed=4)[:, :, 1]
    key, bits = generate_key(), _bits(2)
    marked = embed(image, key, bits)
    assert marked.shape == image.shape
    found = detect(marked, key)
    assert found.bits == bits and found.marked_at(1e-6)


def test_target_psnr_is_reached() -> None:
    image = make_image("natural", seed=5)
    marked = embed(image, generate_key(), _bits(3), target_psnr=42.0)
    assert abs(psnr_uint8(image, marked) - 42.0) < 0.2


def test_other_payload_lengths() -> None:
    image = make_image("texture", seed=6)
    key = generate_key()
    for n in (1, 8, 64):
        bits = _bits(n, n)
        found = detect(embed(image, key, bits, n_bits=n), key, n_bits=n)
        assert found.bits == bits


def test_different_keys_give_different_carriers() -> None:
    image = make_image("smooth", seed=7)
    bits = _bits(4)
    a = embed(image, generate_key(), bits).astype(float) - image
    b = embed(image, generate_key(), bits).astype(float) - image
    assert abs(np.corrcoef(a[..., 0].ravel(), b[..., 0].ravel())[0, 1]) < 0.1


@pytest.mark.parametrize(("image", "field"), [
    (np.zeros((64, 64, 3), np.uint8), "image"),  # smaller than one tile
    (np.zeros((512, 512, 3), np.float32), "dtype"),
    (np.zeros((512, 512, 4), np.uint8), "shape"),
    ("not an image", "image"),
    ([[1, 2], [3, 4]], "image"),
])
def test_bad_images_are_refused(image: object, field: str) -> None:
    with pytest.raises(WatermarkError, match=field) as info:
        embed(image, generate_key(), _bits(0))  # type: ignore[arg-type]
    assert isinstance(info.value, SampanError) and "image" in str(info.value)
    with pytest.raises(WatermarkError, match="image"):
        detect(image, generate_key())  # type: ignore[arg-type]


@pytest.mark.parametrize("bits", [[0, 1] * 15, [0, 1, 2] + [0] * 29, "0101", [0.5] * 32, [[0, 1]] * 16])
def test_bad_bits_are_refused(bits: object) -> None:
    with pytest.raises(WatermarkError, match="bits"):
        embed(np.zeros((256, 256, 3), np.uint8), generate_key(), bits)  # type: ignore[arg-type]


def test_bad_options_are_refused() -> None:
    image, key = np.zeros((256, 256), np.uint8), generate_key()
    with pytest.raises(WatermarkError, match="n_bits"):
        embed(image, key, [0] * 65, n_bits=65)
    with pytest.raises(WatermarkError, match="n_bits"):
        detect(image, key, n_bits=0)
    with pytest.raises(WatermarkError, match="strength"):
        embed(image, key, _bits(0), strength=-1.0)
    with pytest.raises(WatermarkError, match="target_psnr"):
        embed(image, key, _bits(0), target_psnr=100.0)
    with pytest.raises(WatermarkError, match="key"):
        embed(image, b"x" * 32, _bits(0))  # type: ignore[arg-type]


def test_decoder_templates_are_the_linear_decoder() -> None:
    from sampan.watermark.carriers import decoder_templates, tile_to_chips

    key, bits = generate_key(), _bits(5)
    pilot, templates = decoder_templates(key)
    assert pilot.shape == (128, 128) and templates.shape == (32, 128, 128)
    folded = np.random.default_rng(0).normal(size=(128, 128))
    from sampan.watermark.carriers import carriers_for

    carriers = carriers_for(key, 32)
    chips = tile_to_chips(folded)
    by_chips = (chips[carriers.bit_index] * carriers.bit_sign).sum(axis=1)
    assert np.allclose(by_chips, np.tensordot(templates, folded, axes=([1, 2], [0, 1])))
    # a marked tile decodes to its bits through the templates
    tile = np.zeros((128, 128))
    tile += pilot + sum((2 * b - 1) * t for b, t in zip(bits, templates, strict=True))
    assert [int(v > 0) for v in np.tensordot(templates, tile, axes=([1, 2], [0, 1]))] == bits
