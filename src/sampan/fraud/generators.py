"""Fake documents from generators made on this machine (issue 18): no downloaded weights, NumPy/SciPy only.

Three sources, each standing for a family of real forgery tools:
- "autoencoder": a tile autoencoder (8x8 RGB tiles, 192-128-32-128-192, tanh) TRAINED here with Adam on tiles of real
  renders; its reconstruction of a whole real render is the fake (mask all True). Like a VAE/GAN decoder it
  re-synthesises every pixel and leaves its own texture (lost print grain, 8x8 tile seams).
- "upsampler": the render is down-sampled 2x, then decoded by a tiny UNTRAINED decoder (a random near-bilinear 4x4
  transposed convolution of stride 2 and a random 3x3 convolution): the periodic up-sampling traces of generator
  decoders (Corvi et al. 2023) without any training (mask all True).
- "inpaint": one region of a real render (the photo region or one text field) is replaced by content of another
  render of the same kind, passed through a second autoencoder (4x4 tiles, trained only on photo and text crops),
  colour-matched to the region and blended at its border; mask = that region only.
Every fake's per-channel mean and standard deviation are matched to the real render it came from, so global colour
statistics carry no signal and a detector must use the fingerprints. Trained generators are cached in memory per
(seed, tile): every bank's fakes come from the same generators, as fraudsters share tools.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sampan.fraud.documents import (
    KINDS,
    FraudDataError,
    check_kind,
    check_source,
    photo_box,
    render_document,
    text_boxes,
)

__all__ = ["FAKE_SOURCES", "TileAutoencoder", "train_autoencoder", "autoencoder", "upsample_decode", "make_fake"]

FAKE_SOURCES: tuple[str, ...] = ("autoencoder", "upsampler", "inpaint")

_CACHE: dict[tuple[int, int, str], TileAutoencoder] = {}


@dataclass(frozen=True, eq=False)
class TileAutoencoder:
    """A trained tile autoencoder: weights as plain arrays; `reconstruct` maps a uint8 image to its reconstruction."""

    tile: int
    weights: tuple[np.ndarray, ...]  # w1, b1, w2, b2, w3, b3, w4, b4
    final_loss: float

    def encode_decode(self, x: np.ndarray) -> np.ndarray:
        """Rows of flattened tiles in [-1, 1] through encoder and decoder."""
        w1, b1, w2, b2, w3, b3, w4, b4 = self.weights
        z = np.tanh(x @ w1 + b1) @ w2 + b2
        return np.asarray(np.tanh(z @ w3 + b3) @ w4 + b4)

    def reconstruct(self, image: np.ndarray) -> np.ndarray:
        """The whole image re-synthesised tile by tile (uint8, same shape)."""
        h, w = image.shape[:2]
        tiles, shape = _to_tiles(image, self.tile)
        out = self.encode_decode(tiles)
        return _from_tiles(out, shape, self.tile)[:h, :w]


def _to_tiles(image: np.ndarray, t: int) -> tuple[np.ndarray, tuple[int, int]]:
    h, w = image.shape[:2]
    ph, pw = (-h) % t, (-w) % t
    x = np.pad(image.astype(np.float32) / 127.5 - 1.0, ((0, ph), (0, pw), (0, 0)), mode="reflect")
    hh, ww = x.shape[:2]
    tiles = x.reshape(hh // t, t, ww // t, t, 3).transpose(0, 2, 1, 3, 4).reshape(-1, t * t * 3)
    return tiles, (hh, ww)


def _from_tiles(tiles: np.ndarray, shape: tuple[int, int], t: int) -> np.ndarray:
    hh, ww = shape
    x = tiles.reshape(hh // t, ww // t, t, t, 3).transpose(0, 2, 1, 3, 4).reshape(hh, ww, 3)
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _training_tiles(seed: int, tile: int, regions: str, size: tuple[int, int]) -> np.ndarray:
    """Tiles of 8 real renders (4 of each kind); regions="crops" keeps only photo and text regions."""
    rng = np.random.default_rng([seed, tile, 7])
    rows = []
    for k in range(8):
        kind = KINDS[k % len(KINDS)]
        img = render_document(kind, rng, size)
        if regions == "crops":
            for y0, x0, y1, x1 in [photo_box(kind, size), *text_boxes(kind, size)]:
                rows.append(_to_tiles(img[y0:y1, x0:x1], tile)[0])
        else:
            rows.append(_to_tiles(img, tile)[0])
    return np.concatenate(rows).astype(np.float32)


def train_autoencoder(seed: int = 0, tile: int = 8, steps: int = 400, regions: str = "whole",
                      size: tuple[int, int] = (256, 256)) -> TileAutoencoder:
    """Train a tile autoencoder with Adam (MSE) on tiles of real renders; deterministic for a seed."""
    if regions not in ("whole", "crops"):
        raise FraudDataError(f"autoencoder regions {regions!r} is not 'whole' or 'crops' (field 'regions')")
    data = _training_tiles(seed, tile, regions, size)
    d = data.shape[1]
    hidden, bottleneck = (128, 32) if tile >= 8 else (64, 16)
    rng = np.random.default_rng([seed, tile, 11])
    shapes = [(d, hidden), (hidden,), (hidden, bottleneck), (bottleneck,), (bottleneck, hidden), (hidden,),
              (hidden, d), (d,)]
    params = [rng.normal(0, 1 / np.sqrt(s[0]), s).astype(np.float32) if len(s) == 2 else np.zeros(s, np.float32)
              for s in shapes]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    lr, b1, b2, eps, batch = 3e-3, 0.9, 0.999, 1e-8, 128
    loss = float("nan")
    for step in range(1, steps + 1):
        x = data[rng.integers(0, len(data), batch)]
        w1, c1, w2, c2, w3, c3, w4, c4 = params
        h1 = np.tanh(x @ w1 + c1)
        z = h1 @ w2 + c2
        h2 = np.tanh(z @ w3 + c3)
        y = h2 @ w4 + c4
        err = (y - x) * (2.0 / x.size)
        loss = float(np.mean((y - x) ** 2))
        g_h2 = (err @ w4.T) * (1 - h2**2)
        g_z = g_h2 @ w3.T
        g_h1 = (g_z @ w2.T) * (1 - h1**2)
        grads = [x.T @ g_h1, g_h1.sum(0), h1.T @ g_z, g_z.sum(0), z.T @ g_h2, g_h2.sum(0), h2.T @ err, err.sum(0)]
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            params[i] -= lr * (m[i] / (1 - b1**step)) / (np.sqrt(v[i] / (1 - b2**step)) + eps)
    return TileAutoencoder(tile=tile, weights=tuple(params), final_loss=loss)


def autoencoder(seed: int = 0, tile: int = 8, regions: str = "whole") -> TileAutoencoder:
    """The trained autoencoder for (seed, tile, regions), trained once per process and kept in memory."""
    key = (seed, tile, regions)
    if key not in _CACHE:
        _CACHE[key] = train_autoencoder(seed, tile, regions=regions)
    return _CACHE[key]


def upsample_decode(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """Down-sample 2x, then up-sample through a tiny untrained decoder with random weights fixed by the seed."""
    from scipy.ndimage import correlate

    h, w = image.shape[:2]
    x = image.astype(np.float32)
    x = np.pad(x, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    low = x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2, 3).mean(axis=(1, 3))
    rng = np.random.default_rng([seed, 2023])
    bil = np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25]).astype(np.float32)
    up = np.zeros((low.shape[0] * 2, low.shape[1] * 2, 3), np.float32)
    up[::2, ::2] = low
    eye = np.eye(3, dtype=np.float32)[:, :, None, None]
    spread = (eye * 0.02 + (1 - eye) * 0.004)  # faint cross-channel mixing keeps the colours
    k1 = eye * bil + spread * rng.normal(0, 1, (3, 3, 4, 4)).astype(np.float32)
    hid = np.stack([sum(correlate(up[:, :, i], k1[o, i], mode="reflect") for i in range(3)) for o in range(3)], -1)
    hid = np.where(hid > 0, hid, 0.1 * hid)
    k2 = eye * _delta3() + spread * rng.normal(0, 1, (3, 3, 3, 3)).astype(np.float32)
    out = np.stack([sum(correlate(hid[:, :, i], k2[o, i], mode="reflect") for i in range(3)) for o in range(3)], -1)
    return _match_stats(out[:h, :w], image)


def _delta3() -> np.ndarray:
    k = np.zeros((3, 3), np.float32)
    k[1, 1] = 1.0
    return k


def _match_stats(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """`out` with each channel's mean and standard deviation set to those of `ref` (uint8)."""
    o = out.astype(np.float32)
    r = ref.astype(np.float32)
    mo, so = o.mean(axis=(0, 1)), o.std(axis=(0, 1))
    mr, sr = r.mean(axis=(0, 1)), r.std(axis=(0, 1))
    res = (o - mo) / np.maximum(so, 1e-3) * sr + mr
    return np.clip(np.rint(res), 0, 255).astype(np.uint8)


def _inpaint(real: np.ndarray, rng: np.random.Generator, kind: str, seed: int,
             target: str | None) -> tuple[np.ndarray, np.ndarray]:
    h, w = real.shape[:2]
    boxes = [photo_box(kind, (h, w)), *text_boxes(kind, (h, w))]
    use_photo = rng.random() < 0.5 if target is None else target == "photo"
    text_pick = 1 + int(rng.integers(0, len(boxes) - 1))
    y0, x0, y1, x1 = boxes[0] if use_photo else boxes[text_pick]
    donor = render_document(kind, rng, (h, w))[y0:y1, x0:x1]
    content = _match_stats(autoencoder(seed, 4, "crops").reconstruct(donor), real[y0:y1, x0:x1]).astype(np.float32)
    bh, bw = y1 - y0, x1 - x0
    feather = 3.0
    ry = np.minimum(np.arange(bh) + 1, bh - np.arange(bh)) / feather
    rx = np.minimum(np.arange(bw) + 1, bw - np.arange(bw)) / feather
    alpha = np.clip(np.minimum.outer(ry, rx), 0.0, 1.0)[:, :, None]
    out = real.copy()
    region = real[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(np.rint(alpha * content + (1 - alpha) * region), 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return out, mask


def make_fake(source: str, real_image: np.ndarray, rng: np.random.Generator, kind: str = "id_card",
              generator_seed: int = 0, *, target: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A fake made from a real render by one local generator: (image uint8 (H, W, 3), mask bool (H, W)).

    For "inpaint", `target` picks the region ("photo" or "text"; None = either, drawn from the rng).
    """
    check_source(source)
    check_kind(kind)
    if target not in (None, "photo", "text"):
        raise FraudDataError(f"inpaint target {target!r} is not 'photo', 'text' or None (field 'target')")
    if source not in FAKE_SOURCES:
        raise FraudDataError(f"source {source!r} is not a fake source ({', '.join(FAKE_SOURCES)}) (field 'source')")
    if real_image.ndim != 3 or real_image.shape[2] != 3 or real_image.dtype != np.uint8:
        raise FraudDataError(f"real_image must be uint8 (H, W, 3), got {real_image.dtype} {real_image.shape} "
                             "(field 'real_image')")
    full = np.ones(real_image.shape[:2], bool)
    if source == "autoencoder":
        recon = autoencoder(generator_seed, 8, "whole").reconstruct(real_image)
        return _match_stats(recon, real_image), full
    if source == "upsampler":
        return upsample_decode(real_image, generator_seed), full
    return _inpaint(real_image, rng, kind, generator_seed, target)
