"""Image slicer: cut a grey image into square patches on a regular grid and drop the flat ones.

Flat patches (blank paper, saturated highlights) carry no generator trace, only noise of the capture, so they are
dropped before scoring: a patch whose grey-level standard deviation is below ``flat_std_min`` is not scored. Boxes
keep each patch's absolute position: the fingerprint needs it to find the JPEG 8x8 grid and the heatmap to paint
the patch back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sampan.errors import ConfigError, DataError

__all__ = ["Patches", "SlicerConfig", "cut", "grid_boxes", "slice_chunks", "slice_image", "to_gray"]


@dataclass(frozen=True)
class SlicerConfig:
    """Patch size and stride in pixels, and the grey-level standard deviation below which a patch is flat."""

    size: int = 32
    stride: int = 32
    flat_std_min: float = 2.0

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 8:
            raise ConfigError(f"slicer field 'size' must be an integer >= 8 pixels (got {self.size!r})")
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride < 1:
            raise ConfigError(f"slicer field 'stride' must be an integer >= 1 pixel (got {self.stride!r})")
        value = self.flat_std_min
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise ConfigError(f"slicer field 'flat_std_min' must be a finite number >= 0 (got {self.flat_std_min!r})")


@dataclass(frozen=True)
class Patches:
    """``patches`` (N, size, size) float32 and their ``boxes`` (N, 4) int64 as (y0, x0, y1, x1), y1/x1 exclusive."""

    patches: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def to_gray(image: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an RGB uint8 image (the channel JPEG compresses at full resolution), float32 (H, W).
    A 2-D array is taken as grey already."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        return arr.astype(np.float32)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise DataError(f"image must be (H, W, 3) RGB or (H, W) grey, got shape {arr.shape}")
    rgb = arr[..., :3].astype(np.float32)
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def grid_boxes(height: int, width: int, size: int, stride: int) -> np.ndarray:
    """Every patch position of the grid, row by row; the image must hold at least one patch."""
    if height < size or width < size:
        raise DataError(f"image of {height}x{width} pixels is smaller than one {size}x{size} patch; use a larger "
                        f"image or a smaller slicer size")
    ys = np.arange(0, height - size + 1, stride, dtype=np.int64)
    xs = np.arange(0, width - size + 1, stride, dtype=np.int64)
    y0, x0 = (a.ravel() for a in np.meshgrid(ys, xs, indexing="ij"))
    return np.stack([y0, x0, y0 + size, x0 + size], axis=1)


def cut(plane: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """The (N, size, size) float32 windows of a 2-D ``plane`` at ``boxes`` (one gather, no loop per patch)."""
    if len(boxes) == 0:
        return np.empty((0, size, size), dtype=np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(plane, dtype=np.float32), (size, size))
    return np.ascontiguousarray(windows[boxes[:, 0], boxes[:, 1]])


def slice_chunks(gray: np.ndarray, size: int = 32, stride: int = 32, flat_std_min: float = 2.0,
                 chunk: int = 4096) -> Iterator[Patches]:
    """`slice_image` a chunk of grid positions at a time (memory bounded by ``chunk`` patches, whatever the image's
    size); chunks may be empty when all their patches are flat."""
    config = SlicerConfig(size, stride, flat_std_min)  # validates
    plane = np.asarray(gray, dtype=np.float32)
    if plane.ndim != 2:
        raise DataError(f"slice_image needs a 2-D grey image, got shape {plane.shape} (use to_gray first)")
    boxes = grid_boxes(plane.shape[0], plane.shape[1], config.size, config.stride)
    for start in range(0, len(boxes), max(1, chunk)):
        part = boxes[start:start + max(1, chunk)]
        patches = cut(plane, part, config.size)
        keep = patches.reshape(len(part), -1).std(axis=1) >= config.flat_std_min
        yield Patches(patches=patches[keep], boxes=part[keep])


def slice_image(gray: np.ndarray, size: int = 32, stride: int = 32, flat_std_min: float = 2.0) -> Patches:
    """Cut ``gray`` (H, W) into ``size`` patches every ``stride`` pixels; drop those with std < ``flat_std_min``."""
    parts = list(slice_chunks(gray, size, stride, flat_std_min))
    return Patches(patches=np.concatenate([p.patches for p in parts]), boxes=np.concatenate([p.boxes for p in parts]))
