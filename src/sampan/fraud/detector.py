"""The document detector: slicer + fingerprint + patch model + aggregation + threshold, saved as one JSON file.

`Detector.scan(image)` returns a `Verdict`: the image score (real probability), the decision (fake when the
score is below the threshold fixed on real validation images at ``fpr``), every patch's score and box, the
per-pixel heatmap of fake probability and the most suspicious patches. `save` writes JSON atomically (numbers as
lists, never pickle) with a format name and version; `load` refuses a bad file naming the file and the field.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sampan.errors import ConfigError, DataError
from sampan.files import atomic_write_json
from sampan.fraud.aggregate import AGGREGATIONS, image_score
from sampan.fraud.fingerprint import FEATURE_NAMES, image_features
from sampan.fraud.heatmap import patch_heatmap
from sampan.fraud.scorer import PatchModel, patch_model_from_dict
from sampan.fraud.slicer import SlicerConfig

__all__ = ["DETECTOR_FORMAT", "DETECTOR_VERSION", "Detector", "TopPatch", "Verdict", "load_image"]

DETECTOR_FORMAT = "sampan.fraud.detector"
DETECTOR_VERSION = 1
MAX_IMAGE_PIXELS = 50_000_000  # a decompression bomb is refused before it is decoded
MAX_DETECTOR_BYTES = 16 << 20  # a detector is a few hundred KB; a larger file is not read into memory whole


@dataclass(frozen=True)
class TopPatch:
    """One suspicious patch: its (y0, x0, y1, x1) box and its fake probability."""

    box: tuple[int, int, int, int]
    fake_probability: float


@dataclass(frozen=True)
class Verdict:
    """A scan's result. ``score`` is the image's real probability; ``is_fake`` = score < threshold."""

    score: float
    is_fake: bool
    threshold: float
    patch_scores: np.ndarray
    boxes: np.ndarray
    heatmap: np.ndarray
    top_patches: tuple[TopPatch, ...]
    fpr: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON verdict (without the heatmap, which the report draws as an image)."""
        return {"score": self.score, "is_fake": self.is_fake, "threshold": self.threshold, "fpr": self.fpr,
                "n_patches": int(len(self.patch_scores)),
                "top_patches": [{"box": list(p.box), "fake_probability": p.fake_probability}
                                for p in self.top_patches]}


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3); an unreadable file is a DataError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise DataError(f"image {str(path)!r} has {img.width}x{img.height} pixels, over the "
                                f"{MAX_IMAGE_PIXELS} limit")
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {str(path)!r}: {exc}") from None


@dataclass
class Detector:
    """A trained patch model with its slicer settings, aggregation and a threshold fixed at ``fpr``."""

    model: PatchModel
    slicer: SlicerConfig = field(default_factory=SlicerConfig)
    aggregation: str = "mean_logit"
    threshold: float = 0.5
    fpr: float = 0.1
    top_k: int = 5
    aggregate_k: int = 3  # patches averaged by the "top_logit" aggregation

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(f"detector field 'aggregation' must be one of {', '.join(AGGREGATIONS)} "
                              f"(got {self.aggregation!r})")
        if not (isinstance(self.threshold, (int, float)) and 0.0 <= self.threshold <= 1.0):
            raise ConfigError(f"detector field 'threshold' must be a number in [0, 1] (got {self.threshold!r})")
        if not (isinstance(self.fpr, (int, float)) and 0.0 < self.fpr < 1.0):
            raise ConfigError(f"detector field 'fpr' must be a number strictly between 0 and 1 (got {self.fpr!r})")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ConfigError(f"detector field 'top_k' must be an integer >= 0 (got {self.top_k!r})")
        if isinstance(self.aggregate_k, bool) or not isinstance(self.aggregate_k, int) or self.aggregate_k < 1:
            raise ConfigError(f"detector field 'aggregate_k' must be an integer >= 1 (got {self.aggregate_k!r})")
        if self.model.n_features != len(FEATURE_NAMES):
            raise ConfigError(f"patch model takes {self.model.n_features} features, the fingerprint gives "
                              f"{len(FEATURE_NAMES)}")

    def patch_scores(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(real probability per non-flat patch, boxes)."""
        features, boxes = image_features(image, self.slicer)
        if len(boxes) == 0:
            return np.empty(0), boxes
        return 1.0 - self.model.fake_probability(features), boxes

    def aggregate(self, patch_scores: np.ndarray) -> float:
        """The image score from its patch scores with this detector's aggregation (and its k)."""
        return image_score(patch_scores, self.aggregation, self.aggregate_k)

    def scan(self, image: np.ndarray | str | os.PathLike[str]) -> Verdict:
        """Score one image (an RGB array or an image file)."""
        pixels = load_image(image) if isinstance(image, (str, os.PathLike)) else np.asarray(image)
        scores, boxes = self.patch_scores(pixels)
        score = self.aggregate(scores)
        fake = 1.0 - scores
        heat = patch_heatmap(pixels.shape[:2], boxes, fake)
        order = np.argsort(-fake, kind="stable")[: self.top_k]
        top = tuple(TopPatch(tuple(int(v) for v in boxes[i]), float(fake[i])) for i in order)  # type: ignore[arg-type]
        return Verdict(score=score, is_fake=bool(score < self.threshold), threshold=float(self.threshold),
                       patch_scores=scores, boxes=boxes, heatmap=heat, top_patches=top, fpr=float(self.fpr))

    def to_dict(self) -> dict[str, Any]:
        return {"format": DETECTOR_FORMAT, "version": DETECTOR_VERSION, "feature_names": list(FEATURE_NAMES),
                "slicer": {"size": self.slicer.size, "stride": self.slicer.stride,
                           "flat_std_min": self.slicer.flat_std_min},
                "aggregation": self.aggregation, "threshold": float(self.threshold), "fpr": float(self.fpr),
                "top_k": self.top_k, "aggregate_k": self.aggregate_k, "model": self.model.to_dict()}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the detector as JSON, atomically (a reader sees the old file or the new one)."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, source: str = "detector") -> Detector:
        """Rebuild from `to_dict`'s output; errors name ``source`` and the field."""

        def bad(field_name: str, why: str) -> ConfigError:
            return ConfigError(f"{source}: field {field_name!r} {why}")

        if not isinstance(data, dict):
            raise ConfigError(f"{source}: a detector file must hold a JSON object")
        if data.get("format") != DETECTOR_FORMAT:
            raise bad("format", f"must be {DETECTOR_FORMAT!r} (got {data.get('format')!r})")
        if data.get("version") != DETECTOR_VERSION:
            raise bad("version", f"must be {DETECTOR_VERSION} (got {data.get('version')!r}); this Sampan reads "
                                 f"detector files of version {DETECTOR_VERSION} only")
        if data.get("feature_names") != list(FEATURE_NAMES):
            raise bad("feature_names", "does not match this Sampan's fingerprint features (the detector was trained "
                                       "on other features: retrain it)")
        for key in ("slicer", "aggregation", "threshold", "fpr", "model"):
            if key not in data:
                raise bad(key, "is missing")
        slicer = data["slicer"]
        if not isinstance(slicer, dict) or set(slicer) != {"size", "stride", "flat_std_min"}:
            raise bad("slicer", "must be an object with size, stride and flat_std_min")
        for key in ("threshold", "fpr"):
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise bad(key, f"must be a finite number (got {value!r})")
        try:
            model = patch_model_from_dict(data["model"])
        except ConfigError as exc:
            raise bad("model", f"is invalid: {exc}") from None
        try:
            return cls(model=model, slicer=SlicerConfig(**slicer), aggregation=data["aggregation"],
                       threshold=float(data["threshold"]), fpr=float(data["fpr"]), top_k=data.get("top_k", 5),
                       aggregate_k=data.get("aggregate_k", 3))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Detector:
        """Read a detector file written by `save`."""
        source = f"detector file {str(path)!r}"
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_DETECTOR_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read {source}: {exc.strerror or exc}") from None
        if len(raw) > MAX_DETECTOR_BYTES:
            raise ConfigError(f"{source} is larger than {MAX_DETECTOR_BYTES} bytes: not a detector file")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{source} is not UTF-8 text (a detector file is JSON)") from None
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ConfigError(f"{source} is not valid JSON: {exc}") from None
        return cls.from_dict(data, source)
