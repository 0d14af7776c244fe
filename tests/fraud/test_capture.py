"""The phone-capture chain: image and mask change together, JPEG quality stays in range, profiles are checked."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import sampan.fraud.capture as capture_mod
from sampan.fraud.capture import DEVICES, CaptureProfile, capture
from sampan.fraud.documents import DocImage, FraudDataError, render_document


def _doc(size: tuple[int, int] = (96, 96)) -> DocImage:
    img = render_document("id_card", np.random.default_rng(4), size)
    mask = np.zeros(size, bool)
    mask[20:60, 10:40] = True
    return DocImage(img, 1, "inpaint", "id_card", mask, "none", "d-1")


@pytest.mark.parametrize("device", sorted(DEVICES))
def test_capture_keeps_shape_dtype_and_labels(device: str) -> None:
    doc = _doc()
    out = capture(doc, DEVICES[device], np.random.default_rng(0))
    assert out.image.shape == doc.image.shape and out.image.dtype == np.uint8
    assert out.mask.shape == doc.mask.shape and out.mask.dtype == bool
    assert (out.label, out.source, out.kind, out.doc_id) == (doc.label, doc.source, doc.kind, doc.doc_id)
    assert out.device == device
    assert not np.array_equal(out.image, doc.image)


def test_three_to_five_devices() -> None:
    assert 3 <= len(DEVICES) <= 5
    assert all(30 <= p.jpeg_quality[0] <= p.jpeg_quality[1] <= 100 for p in DEVICES.values())


def test_capture_is_deterministic_by_seed() -> None:
    doc = _doc()
    a = capture(doc, DEVICES["budget_phone"], np.random.default_rng(11))
    b = capture(doc, DEVICES["budget_phone"], np.random.default_rng(11))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)


def test_mask_is_warped_exactly_like_the_image() -> None:
    """Paint the masked region white on black: after a strong warp the white pixels are the warped mask."""
    size = (96, 96)
    base = _doc(size)
    img = np.zeros((*size, 3), np.uint8)
    img[base.mask] = 255
    doc = dataclasses.replace(base, image=img)
    profile = CaptureProfile("warp_only", jpeg_quality=(100, 100), perspective=0.15)
    for seed in range(5):
        out = capture(doc, profile, np.random.default_rng(seed))
        white = out.image.mean(axis=2) > 127
        assert not np.array_equal(out.mask, base.mask)  # it moved
        iou = (white & out.mask).sum() / (white | out.mask).sum()
        assert iou > 0.9


def test_flat_profile_keeps_the_mask() -> None:
    doc = _doc()
    out = capture(doc, CaptureProfile("flat", jpeg_quality=(95, 95)), np.random.default_rng(0))
    assert np.array_equal(out.mask, doc.mask)


def test_resize_without_going_back_resizes_the_mask_too() -> None:
    doc = _doc((128, 128))
    out = capture(doc, CaptureProfile("small", resize=(0.5, 0.5), resize_back=False), np.random.default_rng(0))
    assert out.image.shape == (64, 64, 3) and out.mask.shape == (64, 64)
    assert abs(out.mask.mean() - doc.mask.mean()) < 0.02


def test_jpeg_quality_range_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real_jpeg = capture_mod._jpeg

    def recording(image: np.ndarray, quality: int) -> np.ndarray:
        seen.append(quality)
        return real_jpeg(image, quality)

    monkeypatch.setattr(capture_mod, "_jpeg", recording)
    doc = _doc((64, 64))
    rng = np.random.default_rng(0)
    for lo, hi in [(30, 35), (95, 100), (60, 60)]:
        seen.clear()
        for _ in range(12):
            capture(doc, CaptureProfile("q", jpeg_quality=(lo, hi)), rng)
        assert seen and all(lo <= q <= hi for q in seen)
    assert len(set(seen)) == 1


def test_low_quality_jpeg_loses_more_than_high_quality() -> None:
    doc = _doc()
    low = capture(doc, CaptureProfile("low", jpeg_quality=(30, 30)), np.random.default_rng(0))
    high = capture(doc, CaptureProfile("high", jpeg_quality=(100, 100)), np.random.default_rng(0))
    err = [np.abs(x.image.astype(float) - doc.image).mean() for x in (low, high)]
    assert err[0] > err[1]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"jpeg_quality": (20, 90)}, "jpeg_quality"), ({"jpeg_quality": (90, 101)}, "jpeg_quality"),
     ({"jpeg_quality": (90, 80)}, "jpeg_quality"), ({"resize": (0.0, 1.0)}, "resize"),
     ({"perspective": 0.5}, "perspective"), ({"blur_sigma": (2.0, 1.0)}, "blur_sigma")],
)
def test_bad_profile_is_refused_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(FraudDataError, match=f"'{field}'"):
        CaptureProfile("bad", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("device", ["webcam", "budget_phone"])
def test_inpaint_mask_follows_the_full_device_chain(device: str) -> None:
    """An inpainted region's mask after capture is where the same capture puts that region's pixels."""
    from sampan.fraud.generators import make_fake

    size = (96, 96)
    real = render_document("id_card", np.random.default_rng(2), size)
    fake, mask = make_fake("inpaint", real, np.random.default_rng(3), "id_card")
    doc = DocImage(fake, 1, "inpaint", "id_card", mask, "none", "d-2")
    painted = dataclasses.replace(doc, image=np.repeat(mask[:, :, None], 3, axis=2).astype(np.uint8) * 255)
    out = capture(doc, DEVICES[device], np.random.default_rng(21))
    ref = capture(painted, DEVICES[device], np.random.default_rng(21))  # same draws, same transforms
    white = ref.image.mean(axis=2) > 127
    assert np.array_equal(out.mask, ref.mask)
    assert (white & out.mask).sum() / (white | out.mask).sum() > 0.8
