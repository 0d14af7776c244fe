"""Plane homographies (DLT least squares) shared by the channel simulator and the aligner."""

from __future__ import annotations

import numpy as np

__all__ = ["fit_homography", "apply_homography"]


def fit_homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 H with dst ~ H @ src for n >= 4 point pairs (n x 2 arrays), normalised DLT by SVD."""
    src = np.asarray(src, dtype=float)
    dst = np.asarray(dst, dtype=float)

    def _norm(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = p.mean(axis=0)
        s = np.sqrt(2.0) / max(float(np.sqrt(((p - c) ** 2).sum(axis=1)).mean()), 1e-12)
        t = np.array([[s, 0.0, -s * c[0]], [0.0, s, -s * c[1]], [0.0, 0.0, 1.0]])
        return t, (p - c) * s

    ts, ps = _norm(src)
    td, pd = _norm(dst)
    n = len(ps)
    a = np.zeros((2 * n, 9))
    x, y, u, v = ps[:, 0], ps[:, 1], pd[:, 0], pd[:, 1]
    a[0::2, 0:3] = np.stack([-x, -y, -np.ones(n)], axis=1)
    a[0::2, 6:9] = np.stack([u * x, u * y, u], axis=1)
    a[1::2, 3:6] = np.stack([-x, -y, -np.ones(n)], axis=1)
    a[1::2, 6:9] = np.stack([v * x, v * y, v], axis=1)
    h = np.linalg.svd(a)[2][-1].reshape(3, 3)
    h = np.linalg.inv(td) @ h @ ts
    return h / h[2, 2]


def apply_homography(h: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinate arrays (any equal shapes) through H."""
    w = h[2, 0] * x + h[2, 1] * y + h[2, 2]
    return (h[0, 0] * x + h[0, 1] * y + h[0, 2]) / w, (h[1, 0] * x + h[1, 1] * y + h[1, 2]) / w
