"""The methods the watermark benchmark compares (issue 19), behind one interface.

`Method.embed(image_rgb, payload, key) -> marked_rgb` and `Method.decode(image_rgb, key) -> Decoded(bits, p_value)`.
- "sampan": sampan.watermark (keyed; its detector returns a p-value under H0 "not marked with this key", so the
  decision at FPR f is p <= f as the detector documents).
- "dwtDct", "dwtDctSvd", "rivaGan": the invisible-watermark package (optional; the benchmark venv). They take no key
  and give no p-value: the decision at FPR f is "at least k of the 32 decoded bits match the known payload" with
  k the smallest count such that P(Binomial(32, 1/2) >= k) <= f (k = 26 at 1e-3, k = 30 at 1e-6), i.e. the
  binomial tail an unmarked image would have if its decoded bits were fair coin flips (the benchmark also measures
  their empirical FPR on unmarked images against random payloads). Images go to them as OpenCV BGR arrays; an image
  under their 256 x 256-pixel minimum (after a crop) is zero-padded at the bottom/right to 256 so they decode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

N_BITS = 32
BASELINES: tuple[str, ...] = ("dwtDct", "dwtDctSvd", "rivaGan")


@dataclass(frozen=True)
class Decoded:
    bits: np.ndarray  # 0/1, length 32
    p_value: float | None  # None: no p-value (baselines), the binomial-tail rule applies
    info: dict[str, Any]


class Method(Protocol):
    name: str

    def embed(self, image: np.ndarray, payload: np.ndarray, key: Any) -> np.ndarray: ...

    def decode(self, image: np.ndarray, key: Any) -> Decoded: ...


def binomial_tail(k: int, n: int = N_BITS) -> float:
    """P(Binomial(n, 1/2) >= k): the chance of k or more matches between fair coin flips and a payload."""
    return sum(math.comb(n, j) for j in range(k, n + 1)) / 2.0**n


def matches_needed(fpr: float, n: int = N_BITS) -> int:
    """The smallest k with P(Binomial(n, 1/2) >= k) <= fpr (n + 1 if even all n matching is too likely)."""
    for k in range(n + 1):
        if binomial_tail(k, n) <= fpr:
            return k
    return n + 1


def detected(decoded: Decoded, payload: np.ndarray, fpr: float) -> bool:
    """The decision at FPR `fpr`: the p-value where the method has one, else the binomial-tail match count."""
    if decoded.p_value is not None:
        return decoded.p_value <= fpr
    return int((decoded.bits == payload).sum()) >= matches_needed(fpr, len(payload))


class SampanMethod:
    """sampan.watermark's embed/detect with a per-image key (payload: 32 bits)."""

    name = "sampan"

    def __init__(self, **embed_options: Any) -> None:
        self.embed_options = embed_options

    @staticmethod
    def new_key() -> Any:
        from sampan.watermark.keys import generate_key

        return generate_key()

    def embed(self, image: np.ndarray, payload: np.ndarray, key: Any) -> np.ndarray:
        from sampan.watermark.embed import embed

        return np.asarray(embed(image, key, [int(b) for b in payload], **self.embed_options))

    def decode(self, image: np.ndarray, key: Any) -> Decoded:
        from sampan.watermark.detect import detect

        det = detect(image, key, n_bits=N_BITS)
        info = {"rotation_deg": getattr(det, "rotation_deg", None), "scale": getattr(det, "scale", None)}
        return Decoded(np.asarray(det.bits, dtype=np.int64), float(det.p_value), info)


def _load_rivagan_single_threaded() -> None:
    """rivaGan's ONNX models (shipped in the package) in one-thread sessions: the package's own loadModel() uses
    onnxruntime's default thread pool, whose spinning threads waste CPU on a shared machine. Same models, same
    outputs; loadModel() then sees both sessions set and keeps them."""
    import os

    import imwatermark.rivaGan as riva_module  # type: ignore[import-not-found]
    import onnxruntime  # type: ignore[import-untyped]
    from imwatermark import WatermarkDecoder, WatermarkEncoder
    from imwatermark.rivaGan import RivaWatermark

    if RivaWatermark.encoder is None or RivaWatermark.decoder is None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        model_dir = os.path.dirname(os.path.abspath(riva_module.__file__))
        RivaWatermark.encoder = onnxruntime.InferenceSession(os.path.join(model_dir, "rivagan_encoder.onnx"),
                                                             options, providers=["CPUExecutionProvider"])
        RivaWatermark.decoder = onnxruntime.InferenceSession(os.path.join(model_dir, "rivagan_decoder.onnx"),
                                                             options, providers=["CPUExecutionProvider"])
    WatermarkEncoder.loadModel()
    WatermarkDecoder.loadModel()


class InvisibleWatermarkMethod:
    """One of invisible-watermark's methods (no key: `key` is ignored)."""

    def __init__(self, name: str) -> None:
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
        self.name = name
        if name == "rivaGan":
            _load_rivagan_single_threaded()

    @staticmethod
    def _bgr(image: np.ndarray) -> np.ndarray:
        img = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
        h, w = img.shape[:2]
        if h < 256 or w < 256:
            pad = np.zeros((max(h, 256), max(w, 256), 3), np.uint8)
            pad[:h, :w] = img
            img = pad
        return np.ascontiguousarray(img[:, :, ::-1])

    def embed(self, image: np.ndarray, payload: np.ndarray, key: Any) -> np.ndarray:
        from imwatermark import WatermarkEncoder

        enc = WatermarkEncoder()
        enc.set_watermark("bits", [int(b) for b in payload])
        out = enc.encode(self._bgr(image), self.name)
        return np.ascontiguousarray(np.asarray(out, dtype=np.uint8)[:, :, ::-1])

    def decode(self, image: np.ndarray, key: Any) -> Decoded:
        from imwatermark import WatermarkDecoder

        dec = WatermarkDecoder("bits", N_BITS)
        bits = np.asarray(dec.decode(self._bgr(image), self.name), dtype=np.int64).reshape(-1)
        return Decoded(bits, None, {})


def make_methods(names: list[str], **sampan_options: Any) -> list[Method]:
    """The methods by name ("sampan" and/or the baselines), in the order given."""
    out: list[Method] = []
    for n in names:
        out.append(SampanMethod(**sampan_options) if n == "sampan" else InvisibleWatermarkMethod(n))
    return out
