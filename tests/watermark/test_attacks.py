"""The issue-19 attack suite (sampan.watermark.attacks): every attack is a pure function of (image, rng) with the
documented size behaviour, the geometric ones do what their names say, and bad input is one clear error."""

from __future__ import annotations

import numpy as np
import pytest

from sampan.watermark.attacks import ATTACKS, GEOMETRIC_ATTACKS, AttackError, run_attack
from sampan.watermark.quality import psnr

SIZE_CHANGES = {"resize0.5", "resize0.75", "resize1.25", "resize1.5", "crop90", "crop75", "crop50", "crop25",
                "crop10", "translate_crop", "screenshot"}


def _image(shape: tuple[int, ...] = (96, 128, 3), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    base = 128 + 60 * np.sin(xx / 7.0) * np.cos(yy / 11.0)
    if len(shape) == 3:
        base = np.stack([base, base[::-1], 255 - base], axis=2)
    return np.clip(base + rng.normal(0, 8, size=shape), 0, 255).astype(np.uint8)


def test_the_suite_names_the_issue_attacks() -> None:
    for name in ("jpeg90", "jpeg70", "jpeg50", "jpeg30", "resize0.5", "resize1.5", "rotate1", "rotate30",
                 "rotate15_rescale", "crop10", "crop90", "translate_fill", "translate_crop", "noise", "blur",
                 "brightness_contrast", "screenshot", "regenerate"):
        assert name in ATTACKS
    assert "rotate15_rescale" in GEOMETRIC_ATTACKS and "jpeg50" not in GEOMETRIC_ATTACKS


@pytest.mark.parametrize("shape", [(96, 128, 3), (96, 128)])
def test_every_attack_is_pure_uint8_and_sized_as_documented(shape: tuple[int, ...]) -> None:
    img = _image(shape)
    before = img.copy()
    for name, attack in ATTACKS.items():
        out = attack(img, np.random.default_rng(7))
        again = attack(img, np.random.default_rng(7))
        assert np.array_equal(img, before), name  # input untouched
        assert out.dtype == np.uint8 and out.ndim == img.ndim, name
        assert np.array_equal(out, again), name  # a function of (image, rng) only
        if name in SIZE_CHANGES:
            assert out.shape[:2] != img.shape[:2], name
        else:
            assert out.shape == img.shape, name


def test_size_changes_follow_the_factor_and_area() -> None:
    img = _image((100, 100, 3))
    rng = np.random.default_rng(1)
    assert run_attack("resize0.5", img, rng).shape == (50, 50, 3)
    assert run_attack("resize1.5", img, rng).shape == (150, 150, 3)
    assert run_attack("crop25", img, rng).shape == (50, 50, 3)
    side = run_attack("screenshot", img, rng).shape[0]
    assert 75 <= side <= 130


def test_jpeg_degrades_with_quality_and_crop_keeps_pixels() -> None:
    img = _image()
    rng = np.random.default_rng(0)
    quality = [psnr(img, run_attack(f"jpeg{q}", img, rng)) for q in (90, 70, 50, 30)]
    assert quality == sorted(quality, reverse=True)
    crop = run_attack("crop50", img, np.random.default_rng(5))
    h, w = crop.shape[:2]
    hits = [(y, x) for y in range(img.shape[0] - h + 1) for x in range(img.shape[1] - w + 1)
            if np.array_equal(img[y:y + h, x:x + w], crop)]
    assert len(hits) == 1


def test_rotation_by_one_degree_matches_rotating_back() -> None:
    img = _image((128, 128, 3))
    from PIL import Image

    out = run_attack("rotate1", img, np.random.default_rng(0))
    # Undo with both signs: one of them brings the centre back close to the original.
    centre = slice(32, 96)
    errs = []
    for sign in (1, -1):
        back = np.asarray(Image.fromarray(out).rotate(sign * 1.0, resample=Image.Resampling.BICUBIC))
        errs.append(np.abs(back[centre, centre].astype(float) - img[centre, centre]).mean())
    assert min(errs) < 0.5 * max(errs)


def test_rescaled_rotation_has_no_black_corners() -> None:
    img = np.full((128, 128, 3), 200, np.uint8)
    for a in (1, 5, 15, 30):
        plain = run_attack(f"rotate{a}", img, np.random.default_rng(0))
        filled = run_attack(f"rotate{a}_rescale", img, np.random.default_rng(0))
        assert plain[0, 0].max() == 0  # a corner left the frame
        assert filled[1:-1, 1:-1].min() > 150, a


def test_translate_fill_shifts_content() -> None:
    img = _image((128, 128))
    out = run_attack("translate_fill", img, np.random.default_rng(3))
    found = False
    for dy in range(-64, 65):
        for dx in range(-64, 65):
            if abs(dy) < 16 or abs(dx) < 16:
                continue
            ys, yd = (slice(0, 128 - dy), slice(dy, 128)) if dy >= 0 else (slice(-dy, 128), slice(0, 128 + dy))
            xs, xd = (slice(0, 128 - dx), slice(dx, 128)) if dx >= 0 else (slice(-dx, 128), slice(0, 128 + dx))
            if np.array_equal(out[yd, xd], img[ys, xs]):
                found = True
    assert found


def test_regeneration_keeps_the_picture_but_not_the_fine_detail() -> None:
    img = _image((128, 128, 3))
    out = run_attack("regenerate", img, np.random.default_rng(0))
    assert 20.0 < psnr(img, out) < 60.0


def test_bad_input_is_one_clear_error() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(AttackError, match="uint8"):
        run_attack("jpeg50", np.zeros((64, 64), np.float32), rng)
    with pytest.raises(AttackError, match="shape"):
        run_attack("jpeg50", np.zeros((64, 64, 4), np.uint8), rng)
    with pytest.raises(AttackError, match="unknown attack 'jpeg5'"):
        run_attack("jpeg5", np.zeros((64, 64), np.uint8), rng)
