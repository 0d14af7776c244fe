"""The local fake generators: shapes, masks, determinism, a really trained autoencoder, clear errors (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest

from sampan.errors import ConfigError
from sampan.fraud.documents import FraudDataError, photo_box, render_document, text_boxes
from sampan.fraud.generators import FAKE_SOURCES, make_fake, train_autoencoder, upsample_decode

SIZE = (128, 128)


def _real(kind: str = "id_card", seed: int = 1) -> np.ndarray:
    return render_document(kind, np.random.default_rng(seed), SIZE)


@pytest.mark.parametrize("source", FAKE_SOURCES)
@pytest.mark.parametrize("kind", ["id_card", "business"])
def test_fake_shape_dtype_and_mask(source: str, kind: str) -> None:
    real = _real(kind)
    fake, mask = make_fake(source, real, np.random.default_rng(2), kind)
    assert fake.shape == real.shape and fake.dtype == np.uint8
    assert mask.shape == SIZE and mask.dtype == bool
    assert not np.array_equal(fake, real)
    if source == "inpaint":
        boxes = [photo_box(kind, SIZE), *text_boxes(kind, SIZE)]
        expected = []
        for y0, x0, y1, x1 in boxes:
            m = np.zeros(SIZE, bool)
            m[y0:y1, x0:x1] = True
            expected.append(m)
        assert any(np.array_equal(mask, m) for m in expected)  # exactly one layout region
        assert np.array_equal(fake[~mask], real[~mask])  # nothing outside the region changed
    else:
        assert mask.all()


@pytest.mark.parametrize("source", FAKE_SOURCES)
def test_fakes_are_deterministic_by_seed(source: str) -> None:
    real = _real()
    a = make_fake(source, real, np.random.default_rng(5))
    b = make_fake(source, real, np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("source", ["autoencoder", "upsampler"])
def test_whole_image_fakes_keep_layout_and_colour(source: str) -> None:
    """Plausible: the same document (high correlation), the same per-channel mean and std."""
    real = _real()
    fake, _ = make_fake(source, real, np.random.default_rng(0))
    r, f = real.astype(float), fake.astype(float)
    assert np.corrcoef(r.ravel(), f.ravel())[0, 1] > 0.85
    assert np.allclose(r.mean(axis=(0, 1)), f.mean(axis=(0, 1)), atol=2.0)
    assert np.allclose(r.std(axis=(0, 1)), f.std(axis=(0, 1)), atol=3.0)


def test_autoencoder_is_really_trained() -> None:
    short = train_autoencoder(seed=3, tile=4, steps=5, regions="crops")
    trained = train_autoencoder(seed=3, tile=4, steps=300, regions="crops")
    assert trained.final_loss < 0.5 * short.final_loss
    real = _real("business", 9)
    err_short = np.abs(short.reconstruct(real).astype(float) - real).mean()
    err_trained = np.abs(trained.reconstruct(real).astype(float) - real).mean()
    assert err_trained < err_short


def test_upsampler_leaves_a_period_two_trace() -> None:
    """The untrained decoder's stride-2 kernel leaves energy at the Nyquist frequency of the residual."""
    real = _real()
    fake = upsample_decode(real, seed=0)

    def nyquist_share(img: np.ndarray) -> float:
        g = img.astype(float).mean(axis=2)
        res = g - (np.roll(g, 1, 0) + np.roll(g, -1, 0) + np.roll(g, 1, 1) + np.roll(g, -1, 1)) / 4
        spec = np.abs(np.fft.fft2(res)) ** 2
        h, w = spec.shape
        return float((spec[h // 2, :].sum() + spec[:, w // 2].sum()) / spec.sum())

    assert nyquist_share(fake) > 1.5 * nyquist_share(real)


def test_unknown_or_real_source_is_refused_naming_the_field() -> None:
    real = _real()
    with pytest.raises(FraudDataError, match="'source'") as err:
        make_fake("diffusion", real, np.random.default_rng(0))
    assert isinstance(err.value, ConfigError)
    with pytest.raises(FraudDataError, match="'source'"):
        make_fake("real", real, np.random.default_rng(0))
    with pytest.raises(FraudDataError, match="'kind'"):
        make_fake("inpaint", real, np.random.default_rng(0), kind="passport")
    with pytest.raises(FraudDataError, match="'real_image'"):
        make_fake("autoencoder", real.astype(np.float32), np.random.default_rng(0))


def test_generator_seed_changes_the_generator_not_the_document() -> None:
    real = _real()
    a, _ = make_fake("upsampler", real, np.random.default_rng(0), generator_seed=0)
    b, _ = make_fake("upsampler", real, np.random.default_rng(0), generator_seed=1)
    assert not np.array_equal(a, b)
    assert np.corrcoef(a.astype(float).ravel(), b.astype(float).ravel())[0, 1] > 0.9


@pytest.mark.parametrize("kind", ["id_card", "business"])
def test_inpaint_target_picks_the_region(kind: str) -> None:
    real = _real(kind)
    y0, x0, y1, x1 = photo_box(kind, SIZE)
    _, photo = make_fake("inpaint", real, np.random.default_rng(0), kind, target="photo")
    assert photo[y0:y1, x0:x1].all() and photo.sum() == (y1 - y0) * (x1 - x0)
    for seed in range(4):
        _, text = make_fake("inpaint", real, np.random.default_rng(seed), kind, target="text")
        assert not text[y0:y1, x0:x1].any() and text.any()
    with pytest.raises(FraudDataError, match="'target'"):
        make_fake("inpaint", real, np.random.default_rng(0), kind, target="logo")


def test_importing_the_data_modules_stays_light() -> None:
    """Pillow and SciPy load only when an image is made (`import sampan.fraud` must stay cheap)."""
    import subprocess
    import sys

    code = ("import sys, sampan.fraud.corpus, sampan.fraud.capture, sampan.fraud.generators; "
            "print(sorted(m for m in ('PIL', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
