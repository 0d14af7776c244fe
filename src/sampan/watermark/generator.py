"""A SMALL-SCALE REPRODUCTION of a generator that learns to emit the watermark itself (issue 19, item 3).

The generator is a tile-wise MLP with hand-written gradients (NumPy, no torch): each 8x8 block of the output
(aligned with the mark's 8x8 DCT block grid) is the input block plus an MLP of the 16x16 patch around it.
With `positional=True` the hidden layer also gets a learned bias per block position inside the TILE x TILE
mark tile (256 positions): a fixed, key-dependent spatial pattern cannot come out of a translation-
equivariant net otherwise (real generators get position from padding, attention or coordinates).

Training loss = reconstruction (MSE to the target) + lam * watermark loss. The watermark loss runs the
output through detect's frozen LINEAR decoder (carriers.decoder_templates: fold the image onto the tile,
correlate with the pilot's and each bit's spatial template) and asks each correlation, read as a mean
amplitude per chip in grey levels (a_j = s_j <fold(Y), T_j> / |T_j|^2, s_j = +1 for the pilot, 2 bit - 1 for
a payload bit), to reach `margin`: loss = mean_j max(0, margin - a_j)^2. `embed` is never called: the mark in
the output is whatever the generator's weights learned to add. Differences from detect: the loss reads the
raw output (detect high-passes it first, which keeps ~70% of the mid band) at the known geometry and offset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sampan.watermark.carriers import BLOCK, TILE, decoder_templates
from sampan.watermark.embed import check_bits
from sampan.watermark.errors import WatermarkError
from sampan.watermark.keys import WatermarkKey

__all__ = ["MarkTarget", "mark_target", "watermark_loss", "linear_readout", "TileGenerator", "train_generator",
           "TrainLog", "CONTEXT"]

CONTEXT = 4  # pixels of context on each side of an 8x8 block: the MLP sees a 16x16 patch
OUT_SCALE = 16.0  # grey levels per unit of the MLP's output (so Adam's steps reach a denoiser's range quickly)
_PATCH = BLOCK + 2 * CONTEXT
_POSITIONS = (TILE // BLOCK) ** 2


@dataclass(frozen=True)
class MarkTarget:
    """The frozen decoder and what it should read: templates (J, TILE*TILE), signs (J,), chip counts (J,).
    Row 0 is the pilot (sign +1: detect's test statistic), rows 1.. the payload bits."""

    templates: np.ndarray
    signs: np.ndarray
    counts: np.ndarray


def mark_target(key: WatermarkKey, bits: object, n_bits: int = 32) -> MarkTarget:
    """The decoder templates of `key` and the signs that encode `bits` (plus the pilot)."""
    payload = check_bits(bits, n_bits)
    pilot, bit_templates = decoder_templates(key, n_bits)
    templates = np.concatenate([pilot[None], bit_templates]).reshape(n_bits + 1, TILE * TILE)
    signs = np.concatenate([[1.0], 2.0 * payload - 1.0])
    counts = (templates * templates).sum(axis=1)  # orthonormal block DCT: one unit of energy per chip
    return MarkTarget(templates, signs, counts)


def _check_tiled(images: np.ndarray) -> tuple[int, int, int]:
    if images.ndim != 3 or images.shape[1] % TILE or images.shape[2] % TILE:
        raise WatermarkError(f"field 'images' must be (n, h, w) with h and w multiples of {TILE}, "
                             f"got shape {images.shape}")
    n, h, w = images.shape
    return n, h, w


def linear_readout(images: np.ndarray, target: MarkTarget) -> np.ndarray:
    """Signed amplitudes a (n, J): the frozen decoder's correlations per chip, times the wanted sign
    (a > 0: the pilot is present / the bit reads right)."""
    n, h, w = _check_tiled(images)
    folded = images.reshape(n, h // TILE, TILE, w // TILE, TILE).sum(axis=(1, 3)).reshape(n, TILE * TILE)
    # templates @ folded.T, not folded @ templates.T: the same product, but BLAS is far slower on the latter
    return (target.templates @ folded.T).T * target.signs / target.counts


def watermark_loss(images: np.ndarray, target: MarkTarget, margin: float) -> tuple[float, np.ndarray]:
    """mean_j max(0, margin - a_j)^2 over images and decoder rows, and its gradient with respect to `images`."""
    n, h, w = _check_tiled(images)
    shortfall = np.maximum(margin - linear_readout(images, target), 0.0)
    loss = float(np.mean(shortfall * shortfall))
    d_amp = -2.0 * shortfall / shortfall.size
    d_fold = (d_amp * target.signs / target.counts) @ target.templates  # (n, TILE*TILE)
    grad = np.tile(d_fold.reshape(n, 1, TILE, 1, TILE), (1, h // TILE, 1, w // TILE, 1)).reshape(n, h, w)
    return loss, grad


@dataclass
class _Cache:
    patches: np.ndarray
    pos: np.ndarray
    pre: np.ndarray
    hidden: np.ndarray
    shape: tuple[int, int, int]


class TileGenerator:
    """out block = in block + W2 relu(W1 patch + b1 [+ P[position]]) + b2, on the 8x8 grid (see module note)."""

    def __init__(self, hidden: int, rng: np.random.Generator, *, positional: bool,
                 dtype: type[np.floating] = np.float32) -> None:
        if hidden < 1:
            raise WatermarkError(f"field 'hidden' must be >= 1, got {hidden}")
        self.positional = positional
        self.dtype = dtype
        params: dict[str, np.ndarray] = {
            "W1": rng.normal(0.0, np.sqrt(2.0 / _PATCH ** 2), (_PATCH ** 2, hidden)),
            "b1": np.zeros(hidden),
            "W2": rng.normal(0.0, 0.01, (hidden, BLOCK * BLOCK)),
            "b2": np.zeros(BLOCK * BLOCK),
        }
        if positional:
            params["P"] = np.zeros((_POSITIONS, hidden))
        self.params = {name: value.astype(dtype) for name, value in params.items()}

    def forward(self, images: np.ndarray) -> tuple[np.ndarray, _Cache]:
        """Outputs (float grey levels, not clipped) for float images (n, h, w), h and w multiples of 8."""
        if images.ndim != 3 or images.shape[1] % BLOCK or images.shape[2] % BLOCK:
            raise WatermarkError(f"field 'images' must be (n, h, w) with h and w multiples of {BLOCK}, "
                                 f"got shape {images.shape}")
        n, h, w = images.shape
        bh, bw = h // BLOCK, w // BLOCK
        padded = np.pad(images.astype(self.dtype), ((0, 0), (CONTEXT, CONTEXT), (CONTEXT, CONTEXT)), mode="reflect")
        windows = np.lib.stride_tricks.sliding_window_view(padded, (_PATCH, _PATCH), axis=(1, 2))
        patches = (windows[:, ::BLOCK, ::BLOCK].reshape(n * bh * bw, _PATCH ** 2) - 128.0) / 64.0
        per = TILE // BLOCK
        grid = (np.arange(bh)[:, None] % per) * per + np.arange(bw)[None, :] % per
        pos = np.broadcast_to(grid, (n, bh, bw)).reshape(-1)
        p = self.params
        pre = patches @ p["W1"] + p["b1"]
        if self.positional:
            pre += p["P"][pos]
        hidden = np.maximum(pre, 0.0)
        delta = OUT_SCALE * (hidden @ p["W2"] + p["b2"])
        blocks = images.reshape(n, bh, BLOCK, bw, BLOCK).transpose(0, 1, 3, 2, 4).reshape(-1, BLOCK * BLOCK)
        out = (blocks + delta).reshape(n, bh, bw, BLOCK, BLOCK).transpose(0, 1, 3, 2, 4).reshape(n, h, w)
        return out, _Cache(patches, pos, pre, hidden, (n, h, w))

    def backward(self, cache: _Cache, d_out: np.ndarray) -> dict[str, np.ndarray]:
        """Gradients of the loss with respect to every parameter, given d loss / d output."""
        n, h, w = cache.shape
        d_delta = d_out.reshape(n, h // BLOCK, BLOCK, w // BLOCK, BLOCK).transpose(0, 1, 3, 2, 4)
        d_delta = np.ascontiguousarray(d_delta.reshape(-1, BLOCK * BLOCK), dtype=self.dtype) * OUT_SCALE
        p = self.params
        grads = {"W2": cache.hidden.T @ d_delta, "b2": d_delta.sum(axis=0)}
        d_pre = (d_delta @ p["W2"].T) * (cache.pre > 0)
        grads["W1"] = cache.patches.T @ d_pre
        grads["b1"] = d_pre.sum(axis=0)
        if self.positional:
            grads["P"] = np.zeros_like(p["P"])
            np.add.at(grads["P"], cache.pos, d_pre)  # (fast enough: one row per block)
        return grads

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Apply to uint8 grey images (n, h, w) or one (h, w); returns uint8 (rounded, clipped)."""
        arr = np.asarray(images)
        single = arr.ndim == 2
        batch = arr[None] if single else arr
        out = np.empty(batch.shape, dtype=np.uint8)
        for i in range(len(batch)):  # one image at a time keeps the patch matrix small
            y, _ = self.forward(batch[i:i + 1].astype(float))
            out[i] = np.clip(np.rint(y[0]), 0, 255).astype(np.uint8)
        return out[0] if single else out


@dataclass
class TrainLog:
    """Per-logged-step reconstruction MSE (grey levels^2) and watermark loss."""

    step: list[int] = field(default_factory=list)
    mse: list[float] = field(default_factory=list)
    wm: list[float] = field(default_factory=list)


def train_generator(inputs: np.ndarray, targets: np.ndarray, rng: np.random.Generator, *, hidden: int = 64,
                    positional: bool = True, mark: MarkTarget | None = None, lam: float = 0.0,
                    margin: float = 1.5, steps: int = 600, batch: int = 8, lr: float = 2e-3,
                    log_every: int = 50, dtype: type[np.floating] = np.float32) -> tuple[TileGenerator, TrainLog]:
    """Adam on MSE(G(inputs), targets) + lam * watermark_loss(G(inputs)); lam = 0 (or mark None) is the
    control without a mark. The learning rate drops tenfold for the last quarter of the steps."""
    if inputs.shape != targets.shape or inputs.ndim != 3:
        raise WatermarkError(f"fields 'inputs' and 'targets' must be equal (n, h, w) arrays, got "
                             f"{inputs.shape} and {targets.shape}")
    if lam < 0 or (lam > 0 and mark is None):
        raise WatermarkError("field 'lam' must be >= 0, and a positive lam needs field 'mark'")
    model = TileGenerator(hidden, rng, positional=positional, dtype=dtype)
    moments = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in model.params.items()}
    log = TrainLog()
    b1, b2, eps = 0.9, 0.999, 1e-8
    for step in range(1, steps + 1):
        idx = rng.choice(len(inputs), size=min(batch, len(inputs)), replace=False)
        out, cache = model.forward(inputs[idx])
        err = out - targets[idx]
        mse = float(np.mean(err * err))
        d_out = 2.0 * err / err.size
        wm = 0.0
        if lam > 0 and mark is not None:
            wm, d_wm = watermark_loss(out, mark, margin)
            d_out = d_out + lam * d_wm
        grads = model.backward(cache, d_out)
        rate = lr if step <= 0.75 * steps else lr / 10
        for name, g in grads.items():
            m, v = moments[name]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            m_hat, v_hat = m / (1 - b1 ** step), v / (1 - b2 ** step)
            model.params[name] -= (rate * m_hat / (np.sqrt(v_hat) + eps)).astype(model.dtype)
        if step % log_every == 0 or step == steps:
            log.step.append(step)
            log.mse.append(mse)
            log.wm.append(wm)
    return model, log
