"""The document detector: slicer + fingerprint + patch model + aggregation + threshold, saved as one JSON file.

`Detector.scan(image)` returns a `Verdict`: the image score (real probability), the decision (fake when the
score is below the threshold fixed on real validation images at ``fpr``), every patch's score and box, the
per-pixel heatmap of fake probability and the most suspicious patches. `save` writes JSON atomically (numbers as
lists, never pickle) with a format name and version; `load` refuses a bad file naming the file and the field.

A detector file is input from elsewhere (a bank receives it), so the settings that drive the cost of a scan are
bounded on load: patch size >= 16, stride >= size / 4, ``top_k`` <= 50 (the report draws one crop per top patch)
and at most `MAX_PATCHES_PER_IMAGE` patches per image (refused before fingerprinting). `read_json_file` is the one
reader for detector files and verdict records (size cap, UTF-8, nesting depth -> a ConfigError naming the file).
`Detector.model_sha256` is the model's identity (SHA-256 of the canonical JSON of everything but the operating
point), written into detector files and verdict records so a verdict names the model that judged it.
"""

from __future__ import annotations

import hashlib
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

__all__ = ["DETECTOR_FORMAT", "DETECTOR_VERSION", "MAX_DETECTOR_BYTES", "MAX_PATCHES_PER_IMAGE", "MAX_TOP_K",
           "MIN_PATCH_SIZE", "Detector", "TopPatch", "Verdict", "load_image", "read_json_file"]

DETECTOR_FORMAT = "sampan.fraud.detector"
DETECTOR_VERSION = 1
MAX_IMAGE_PIXELS = 50_000_000  # a decompression bomb is refused before it is decoded
MAX_DETECTOR_BYTES = 16 << 20  # a detector is a few hundred KB; a larger file is not read into memory whole
MIN_PATCH_SIZE = 16            # a smaller patch has too few pixels for the fingerprint, and multiplies the patch count
MAX_TOP_K = 50                 # suspicious patches listed (one zoomed crop each in the report)
MAX_AGGREGATE_K = 50
MAX_PATCHES_PER_IMAGE = 100_000  # default 32/32 slicer on the 50 Mpx image cap: ~49k patches


def read_json_file(path: str | os.PathLike[str], what: str, max_bytes: int | None = None) -> Any:
    """The JSON value of a file from elsewhere: at most ``max_bytes`` read (default `MAX_DETECTOR_BYTES`), UTF-8,
    bounded nesting; every failure is a ConfigError naming ``what`` (e.g. "detector file 'x.json'")."""
    max_bytes = MAX_DETECTOR_BYTES if max_bytes is None else max_bytes
    try:
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise ConfigError(f"{what} is larger than {max_bytes} bytes: refused")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} is not UTF-8 text (expected JSON)") from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ConfigError(f"{what} is not valid JSON: {reason}") from None


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
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or not 0 <= self.top_k <= MAX_TOP_K:
            raise ConfigError(f"detector field 'top_k' must be an integer in [0, {MAX_TOP_K}] (got {self.top_k!r})")
        if isinstance(self.aggregate_k, bool) or not isinstance(self.aggregate_k, int) \
                or not 1 <= self.aggregate_k <= MAX_AGGREGATE_K:
            raise ConfigError(f"detector field 'aggregate_k' must be an integer in [1, {MAX_AGGREGATE_K}] "
                              f"(got {self.aggregate_k!r})")
        if self.slicer.size < MIN_PATCH_SIZE:
            raise ConfigError(f"detector field 'slicer.size' must be >= {MIN_PATCH_SIZE} (got {self.slicer.size})")
        if 4 * self.slicer.stride < self.slicer.size:
            raise ConfigError(f"detector field 'slicer.stride' must be >= slicer.size / 4 = {self.slicer.size / 4:g} "
                              f"(got {self.slicer.stride}): a smaller stride multiplies the patches of every scan")
        if self.model.n_features != len(FEATURE_NAMES):
            raise ConfigError(f"patch model takes {self.model.n_features} features, the fingerprint gives "
                              f"{len(FEATURE_NAMES)}")

    def patch_scores(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(real probability per non-flat patch, boxes); an image that would give more than `MAX_PATCHES_PER_IMAGE`
        patches with this slicer is refused before any is cut."""
        height, width = np.asarray(image).shape[:2]
        size, stride = self.slicer.size, self.slicer.stride
        n = (max(height - size, -stride) // stride + 1) * (max(width - size, -stride) // stride + 1)
        if n > MAX_PATCHES_PER_IMAGE:
            raise DataError(f"a {width}x{height} image gives {n} patches with detector field 'slicer' (size {size}, "
                            f"stride {stride}), over the {MAX_PATCHES_PER_IMAGE} limit")
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

    def model_sha256(self) -> str:
        """The model's identity: SHA-256 of the canonical JSON (sorted keys, no spaces) of the file's fields without
        the operating point (threshold, fpr), so every bank's copy of one training has the same identity."""
        fields = {k: v for k, v in self.to_dict().items() if k not in ("threshold", "fpr")}
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

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
        if "threshold" not in data and data.get("threshold_scope") == "bank" and "thresholds" not in data:
            raise ConfigError(f"{source} is the shared model of a per-bank training: it carries no bank's threshold. "
                              "Scan with your bank's own copy (WORK_DIR/<bank>/detector.json), or fix your own "
                              "threshold on your own real validation images")
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
            detector = cls(model=model, slicer=SlicerConfig(**slicer), aggregation=data["aggregation"],
                           threshold=float(data["threshold"]), fpr=float(data["fpr"]), top_k=data.get("top_k", 5),
                           aggregate_k=data.get("aggregate_k", 3))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        stated = data.get("model_sha256")
        if stated is not None and stated != detector.model_sha256():
            raise bad("model_sha256", "does not match the model in the file (the model or its settings were changed "
                                      "after the file was written)")
        return detector

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Detector:
        """Read a detector file written by `save`."""
        source = f"detector file {str(path)!r}"
        return cls.from_dict(read_json_file(path, source), source)
