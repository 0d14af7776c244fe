"""Regeneration attack: re-synthesise an image through a local tile autoencoder (issue 19's attack suite).

Why: regeneration (encode an image into a generator's latent space and decode it again) removes pixel-level
watermarks while keeping the picture, so the suite needs one. No downloaded weights: the autoencoder here is the
linear tile autoencoder 8 x 8 RGB tiles (192 values) -> 32 latents -> 192, which for the mean-squared reconstruction
loss has a closed-form optimum (the top-32 principal subspace of the tiles; Baldi & Hornik 1989): it is FITTED on the
attacked image's own tiles, i.e. the best 32-latent linear re-synthesis of that very image, a strong attacker.
The tile grid's offset is drawn from the attack's rng, so the mark's 8 x 8 block grid is not the autoencoder's.
NumPy only; sampan.fraud's trained tile autoencoder sits above the runtime layer, which this layer may not import.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LATENTS", "TILE", "regenerate"]

TILE = 8
LATENTS = 32


def regenerate(image: np.ndarray, rng: np.random.Generator, *, latents: int = LATENTS) -> np.ndarray:
    """The image passed through a tile autoencoder fitted to it (uint8, same shape); `latents` is for RGB tiles."""
    img = np.asarray(image)
    gray = img.ndim == 2
    x = img[:, :, None].astype(np.float64) if gray else img.astype(np.float64)
    h, w, c = x.shape
    oy, ox = (int(v) for v in rng.integers(0, TILE, size=2))
    ph = (-(h + oy)) % TILE
    pw = (-(w + ox)) % TILE
    padded = np.pad(x, ((oy, ph), (ox, pw), (0, 0)), mode="reflect")
    hh, ww = padded.shape[:2]
    tiles = (padded.reshape(hh // TILE, TILE, ww // TILE, TILE, c).transpose(0, 2, 1, 3, 4)
             .reshape(-1, TILE * TILE * c))
    mean = tiles.mean(axis=0)
    centred = tiles - mean
    k = max(1, round(latents * c / 3))  # the same 6:1 bottleneck for a gray image (64 -> 11)
    # The encoder/decoder weights: the top-k eigenvectors of the tiles' covariance (the MSE-optimal linear
    # autoencoder; eigh of the 192 x 192 matrix, cheaper than an SVD of the tiles themselves).
    _, vecs = np.linalg.eigh(centred.T @ centred)
    enc = vecs[:, ::-1][:, :k]
    recon = (centred @ enc) @ enc.T + mean
    out = (recon.reshape(hh // TILE, ww // TILE, TILE, TILE, c).transpose(0, 2, 1, 3, 4)
           .reshape(hh, ww, c)[oy:oy + h, ox:ox + w])
    out8 = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out8[:, :, 0] if gray else out8
