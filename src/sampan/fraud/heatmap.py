"""Per-pixel fake probability from patch scores, and its PNG overlay for the detection report.

Each pixel gets the mean fake probability of the patches covering it (overlapping patches average). Pixels no
scored patch covers (flat regions whose patches were dropped, and the right/bottom margin the grid does not
reach) get 0: no evidence of forgery there. The sums use a 2-D difference array, one scatter for all patches.
"""

from __future__ import annotations

import io

import numpy as np

from sampan.errors import DataError

__all__ = ["heatmap_png", "patch_heatmap"]


def patch_heatmap(shape: tuple[int, int], boxes: np.ndarray, fake_probabilities: np.ndarray) -> np.ndarray:
    """(H, W) float64 map in [0, 1]: the mean fake probability of the patches over each pixel, 0 where none."""
    height, width = int(shape[0]), int(shape[1])
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    values = np.asarray(fake_probabilities, dtype=np.float64).ravel()
    if values.shape[0] != boxes.shape[0]:
        raise DataError(f"{boxes.shape[0]} boxes but {values.shape[0]} patch probabilities")
    if not np.isfinite(values).all():
        raise DataError("patch fake probabilities must be finite")
    y0, x0 = np.clip(boxes[:, 0], 0, height), np.clip(boxes[:, 1], 0, width)
    y1, x1 = np.clip(boxes[:, 2], 0, height), np.clip(boxes[:, 3], 0, width)
    total = np.zeros((height + 1, width + 1))
    count = np.zeros((height + 1, width + 1))
    for grid, weight in ((total, values), (count, np.ones_like(values))):
        np.add.at(grid, (y0, x0), weight)
        np.add.at(grid, (y0, x1), -weight)
        np.add.at(grid, (y1, x0), -weight)
        np.add.at(grid, (y1, x1), weight)
    sums = total.cumsum(axis=0).cumsum(axis=1)[:height, :width]
    counts = np.rint(count.cumsum(axis=0).cumsum(axis=1)[:height, :width])
    heat = np.where(counts > 0, sums / np.maximum(counts, 1.0), 0.0)
    return np.clip(heat, 0.0, 1.0)


def heatmap_png(image_rgb: np.ndarray, heatmap: np.ndarray, alpha: float = 0.6) -> bytes:
    """PNG bytes of the image (greyed) with the fake probability painted red over it (opacity alpha * p)."""
    from PIL import Image  # only the report needs Pillow

    rgb = np.asarray(image_rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float64)), 0.0, 1.0)
    if rgb.shape[:2] != heat.shape:
        raise DataError(f"heatmap shape {heat.shape} does not match the image's {rgb.shape[:2]}")
    gray = rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    base = np.repeat(gray[..., None], 3, axis=2)
    weight = (alpha * heat)[..., None]
    red = np.array([255.0, 0.0, 0.0])
    out = np.clip(base * (1.0 - weight) + red * weight, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(out, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()
