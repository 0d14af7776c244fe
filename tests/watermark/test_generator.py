"""The generator reproduction (sampan.watermark.generator, SMALL-SCALE): the watermark loss's gradient is the
true one, a tiny generator trained with it emits the key's bits on held-out inputs, and the lam = 0 control
does not (tiny sizes: a few seconds each)."""

from __future__ import annotations

import numpy as np
import pytest

from sampan.watermark import WatermarkKey
from sampan.watermark.errors import WatermarkError
from sampan.watermark.gen_images import add_noise, procedural_gray
from sampan.watermark.generator import TileGenerator, linear_readout, mark_target, train_generator, watermark_loss

KEY = WatermarkKey(bytes(range(32)), "test-generator")
BITS = np.array([1, 0, 1, 1, 0, 0, 1, 0] * 4)


def _finite_difference(f, x: np.ndarray, index: tuple[int, ...], h: float = 1e-3) -> float:
    up, down = x.copy(), x.copy()
    up[index] += h
    down[index] -= h
    return (f(up) - f(down)) / (2 * h)


def test_watermark_loss_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(3)
    mark = mark_target(KEY, BITS)
    images = rng.normal(0.0, 2.0, (2, 128, 256))  # small amplitudes: most hinges are active
    loss, grad = watermark_loss(images, mark, margin=0.5)
    assert loss > 0
    for _ in range(12):
        index = tuple(int(rng.integers(0, s)) for s in images.shape)
        numeric = _finite_difference(lambda x: watermark_loss(x, mark, 0.5)[0], images, index)
        assert grad[index] == pytest.approx(numeric, rel=1e-4, abs=1e-12)


def test_generator_backward_matches_finite_differences() -> None:
    rng = np.random.default_rng(4)
    model = TileGenerator(6, rng, positional=True, dtype=np.float64)
    for p in model.params.values():
        p += rng.normal(0.0, 0.05, p.shape)  # away from the zero init, so every path carries gradient
    images = rng.uniform(0, 255, (1, 128, 128))
    weights = rng.normal(size=images.shape)

    def objective() -> float:
        out, _ = model.forward(images)
        return float((out * weights).sum())

    out, cache = model.forward(images)
    grads = model.backward(cache, weights)
    for name, param in model.params.items():
        for _ in range(3):
            index = tuple(int(rng.integers(0, s)) for s in param.shape)
            old = param[index]
            param[index] = old + 1e-5
            up = objective()
            param[index] = old - 1e-5
            down = objective()
            param[index] = old
            assert grads[name][index] == pytest.approx((up - down) / 2e-5, rel=1e-4, abs=1e-6), name


def _train_and_read(lam: float) -> np.ndarray:
    rng = np.random.default_rng(5)
    clean = procedural_gray(12, 128, rng)
    mark = mark_target(KEY, BITS)
    model, _ = train_generator(add_noise(clean, 12.0, rng), clean, rng, hidden=16, mark=mark if lam else None,
                               lam=lam, margin=2.0, steps=120, batch=2, lr=1e-2)
    held_out = procedural_gray(4, 128, rng)
    outputs = model(np.rint(add_noise(held_out, 12.0, rng)).astype(np.uint8)).astype(float)
    return linear_readout(outputs, mark)


@pytest.mark.slow
def test_tiny_generator_learns_to_carry_the_bits_on_held_out_inputs() -> None:
    readout = _train_and_read(lam=20.0)
    assert (readout[:, 1:] > 0).mean() >= 0.9  # 4 images x 32 bits; chance is 0.5
    assert (readout[:, 0] > 0.25).all()  # the pilot (detect's statistic) is there on every image
    assert readout[:, 0].mean() > 0.8


@pytest.mark.slow
def test_lambda_zero_control_carries_no_mark() -> None:
    readout = _train_and_read(lam=0.0)
    assert 0.25 <= (readout[:, 1:] > 0).mean() <= 0.75
    assert abs(float(readout[:, 0].mean())) < 0.25


def test_bad_inputs_are_named() -> None:
    mark = mark_target(KEY, BITS)
    with pytest.raises(WatermarkError, match="images"):
        watermark_loss(np.zeros((1, 100, 128)), mark, 1.0)
    with pytest.raises(WatermarkError, match="lam"):
        train_generator(np.zeros((2, 128, 128)), np.zeros((2, 128, 128)), np.random.default_rng(0), lam=1.0)
    with pytest.raises(WatermarkError, match="bits"):
        mark_target(KEY, [0, 1, 2])
