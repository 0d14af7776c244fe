"""QR rendering and reading with well-kept libraries: segno encodes, zxing-cpp decodes.

`render_qr` draws a code as a uint8 gray image (0 = dark module, 255 = light) and can place a copy-detection
pattern (`sampan.qr.cdp`) in the symbol's centre. The pattern overwrites modules, so it spends part of the
error-correction budget: render_qr refuses a pattern wider than `MAX_CDP_FRACTION` of the symbol and, unless
told not to, reads the result back with zxing-cpp and refuses an image that no longer decodes to the text.
`decode_qr` returns the texts of every QR code zxing-cpp finds (rotated, scaled, blurred or JPEG-compressed
captures included; see tests/qr/test_codec.py for what is checked).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sampan.errors import DataError

__all__ = ["QrCodecError", "render_qr", "decode_qr", "symbol_size", "MAX_CDP_FRACTION"]

# A centred square of side f * symbol covers about f^2 of the data modules; 0.3 -> ~9%, well inside level Q's
# 25% (the finder, timing and format patterns lie outside the centre and stay intact).
MAX_CDP_FRACTION = 0.3


class QrCodecError(DataError):
    """Text that cannot be encoded, an image that cannot be read, or a pattern that does not fit the code."""


def _make(text: str, error: str) -> Any:
    import segno

    if not isinstance(text, str) or not text:
        raise QrCodecError("QR text must be a non-empty string")
    if error.lower() not in ("l", "m", "q", "h"):
        raise QrCodecError(f"QR error level must be one of L, M, Q, H (got {error!r})")
    try:
        return segno.make(text, error=error, micro=False)
    except segno.DataOverflowError as exc:
        raise QrCodecError(f"text of {len(text)} characters does not fit a QR code at level {error.upper()}: "
                           f"{exc}") from None


def symbol_size(text: str, *, error: str = "q") -> tuple[int, int]:
    """(version, modules per side) of the symbol segno makes for `text`."""
    qr = _make(text, error)
    return int(qr.version), int(qr.symbol_size(scale=1, border=0)[0])


def render_qr(text: str, *, scale: int = 8, border: int = 4, error: str = "q", cdp: np.ndarray | None = None,
              check: bool = True) -> np.ndarray:
    """`text` as a QR code: a uint8 gray image, `scale` pixels a module, `border` light modules around it.

    `cdp` (optional): a 2-D pattern in image pixels placed at the symbol's centre: uint8 gray as is, or
    bool / numbers in [0, 1] with 0 (False) dark and 1 (True) light; with `check` the image must still decode
    to `text`.
    """
    if int(scale) < 1 or int(border) < 0:
        raise QrCodecError(f"scale must be >= 1 and border >= 0 (got scale={scale}, border={border})")
    qr = _make(text, error)
    dark = np.array(list(qr.matrix_iter(scale=int(scale), border=int(border))), dtype=bool)
    image = np.where(dark, 0, 255).astype(np.uint8)
    if cdp is None:
        return image
    pattern = _as_gray(cdp, "cdp")
    side = (image.shape[0] - 2 * int(border) * int(scale))
    if max(pattern.shape) > MAX_CDP_FRACTION * side:
        raise QrCodecError(f"copy-detection pattern of {pattern.shape[0]}x{pattern.shape[1]} pixels is wider than "
                           f"{MAX_CDP_FRACTION:.0%} of the {side}-pixel symbol; it would spend too much of the "
                           f"error-correction budget (use a larger scale or a smaller pattern)")
    top = (image.shape[0] - pattern.shape[0]) // 2
    left = (image.shape[1] - pattern.shape[1]) // 2
    image[top:top + pattern.shape[0], left:left + pattern.shape[1]] = pattern
    if check and text not in decode_qr(image):
        raise QrCodecError("the QR code no longer decodes with this copy-detection pattern in its centre; use a "
                           "smaller pattern or a higher error level")
    return image


def _as_gray(array: Any, what: str) -> np.ndarray:
    """A 2-D uint8 array from bool / 0-1 / float [0, 1] / uint8 input; anything else is refused by name."""
    value = np.asarray(array)
    if value.ndim != 2 or min(value.shape) < 1:
        raise QrCodecError(f"{what} must be a non-empty 2-D array (got shape {value.shape})")
    if value.dtype == np.uint8:
        return value
    if value.dtype == bool:
        return np.where(value, 255, 0).astype(np.uint8)
    if np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating):
        if not np.all(np.isfinite(value)) or value.min() < 0 or value.max() > 1:
            raise QrCodecError(f"{what}: a non-uint8 array must hold values in [0, 1] (0 dark, 1 light); pass "
                               f"uint8 for 0..255")
        return np.round(value * 255).astype(np.uint8)
    raise QrCodecError(f"{what}: unsupported dtype {value.dtype}")


def decode_qr(image: Any) -> list[str]:
    """The texts of all QR codes found in `image` (uint8 gray or RGB array, float array in [0, 1], or a PIL
    image); an empty list when none is readable."""
    import zxingcpp

    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[2] in (3, 4):
            if image.dtype != np.uint8:
                raise QrCodecError("a colour image must be uint8")
            source: Any = np.ascontiguousarray(image[:, :, :3])
        else:
            source = np.ascontiguousarray(_as_gray(image, "image"))
    elif hasattr(image, "mode") and hasattr(image, "size"):  # a PIL image
        source = image.convert("L")
    else:
        raise QrCodecError(f"cannot read a QR code from a {type(image).__name__}; pass an array or a PIL image")
    found = zxingcpp.read_barcodes(source, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode))
    return [barcode.text for barcode in found if barcode.valid]
