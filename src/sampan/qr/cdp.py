"""The keyed copy-detection pattern (CDP) and where it sits in the QR code.

A CDP (Picard 2004) is a random binary pattern printed at the printer's own resolution: printing it loses
some of its detail, and a copy (capture -> estimate -> reprint) loses more, which the verifier measures
against the template. The template is derived from the issuer's secret key and the item's serial with
HMAC-SHA256 in counter mode, so only a party holding the key (the issuer and the verification sites, never
the scanning device) can rebuild it, and each serial has its own pattern.

The pattern replaces a square of modules in the centre of the symbol; the QR's error correction (level H
by default) absorbs the modules it overwrites, and `layout_for` refuses a square larger than
`MAX_CDP_FRACTION` of the symbol side. The digital image is in printer dots: one QR module is
`dots_per_module` dots and one CDP cell is `cell_dots` dots.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import numpy as np

from sampan.errors import ConfigError, DataError

__all__ = [
    "CdpError", "CdpConfigError", "CdpLayout", "layout_for", "cdp_pattern", "qr_modules", "render_digital",
    "render_original", "MAX_CDP_FRACTION",
]

MAX_CDP_FRACTION = 0.3  # CDP side / symbol side: 9% of the modules at most, inside level H's 30% budget
_DOMAIN = b"sampan-qr-cdp-v1"


class CdpError(DataError):
    """A capture, pattern or serial the copy-detection code cannot use; the message names the field."""


class CdpConfigError(ConfigError):
    """A CDP layout or key that cannot be used (size, resolution, key length)."""


@dataclass(frozen=True)
class CdpLayout:
    """Geometry of one code: the QR symbol (version, error level) and the CDP square in its centre.

    `modules` is the symbol side in modules, `cdp_modules` the side of the CDP square (odd, so it is
    centred), `border` the quiet zone in modules, `dots_per_module` and `cell_dots` the print resolution.
    """

    version: int
    error: str
    modules: int
    cdp_modules: int
    border: int = 2
    dots_per_module: int = 6
    cell_dots: int = 1

    @property
    def size(self) -> int:
        """CDP cells per side."""
        return self.cdp_modules * self.dots_per_module // self.cell_dots

    @property
    def side_dots(self) -> int:
        """Side of the whole printed code, quiet zone included, in printer dots."""
        return (self.modules + 2 * self.border) * self.dots_per_module

    @property
    def cdp_origin_dots(self) -> int:
        """Top-left corner of the CDP square, in printer dots from the image's corner (same on both axes)."""
        return (self.border + (self.modules - self.cdp_modules) // 2) * self.dots_per_module

    @property
    def cdp_dots(self) -> int:
        """Side of the CDP square in printer dots."""
        return self.cdp_modules * self.dots_per_module


def qr_modules(text: str, *, error: str = "h", version: int | None = None) -> np.ndarray:
    """The QR symbol of `text` as a bool module matrix (True = dark), no quiet zone.

    segno's defaults (error level boosted when the version allows it) as in `sampan.qr.codec.render_qr`, so
    a code drawn there with `scale=dots_per_module` and the pattern as light=True pixels is the same image.
    """
    import segno

    try:
        code = segno.make(text, error=error, version=version, micro=False)
    except (ValueError, segno.DataOverflowError) as exc:
        raise CdpError(f"field 'text' cannot be encoded as a QR code (error={error!r}, version={version}): {exc}") \
            from exc
    return np.array(code.matrix, dtype=bool)


def layout_for(text: str, *, error: str = "h", fraction: float = 0.25, border: int = 2,
               dots_per_module: int = 6, cell_dots: int = 1) -> CdpLayout:
    """The layout of `text`'s code with a centred CDP square of about `fraction` of the symbol side."""
    if error not in ("q", "h"):
        raise CdpConfigError(f"field 'error' must be 'q' or 'h' (the CDP spends error-correction budget), "
                             f"got {error!r}")
    if not 0.0 < fraction <= MAX_CDP_FRACTION:
        raise CdpConfigError(f"field 'fraction' must be in (0, {MAX_CDP_FRACTION}], got {fraction}")
    if dots_per_module < 2 or cell_dots < 1 or dots_per_module % cell_dots:
        raise CdpConfigError(f"fields 'dots_per_module'={dots_per_module} and 'cell_dots'={cell_dots}: need "
                             "dots_per_module >= 2 and a multiple of cell_dots")
    import segno

    modules = qr_modules(text, error=error)
    version = int(segno.make(text, error=error, micro=False).version)
    side = modules.shape[0]
    cdp = max(3, int(round(side * fraction)))
    cdp -= 1 - cdp % 2  # odd, so the square is centred on the middle module
    return CdpLayout(version=version, error=error, modules=side, cdp_modules=cdp, border=border,
                     dots_per_module=dots_per_module, cell_dots=cell_dots)


def cdp_pattern(key: bytes, serial: str, size: int) -> np.ndarray:
    """The `size` x `size` bool template (True = ink) of `serial` under the issuer's `key`.

    HMAC-SHA256(key, domain | serial | counter) blocks, unpacked to bits: a PRF, so the pattern of one serial
    says nothing about another's and nothing about the key.
    """
    if not isinstance(key, bytes) or len(key) < 16:
        raise CdpConfigError("field 'key' must be at least 16 bytes (the issuer's secret CDP key)")
    if not isinstance(serial, str) or not serial:
        raise CdpError("field 'serial' must be a non-empty string")
    if not isinstance(size, int) or not 4 <= size <= 1024:
        raise CdpConfigError(f"field 'size' must be an int in [4, 1024], got {size!r}")
    nbytes = (size * size + 7) // 8
    prefix = _DOMAIN + b"|" + serial.encode("utf-8") + b"|"
    blocks = [hmac.new(key, prefix + i.to_bytes(4, "big"), hashlib.sha256).digest()
              for i in range((nbytes + 31) // 32)]
    bits = np.unpackbits(np.frombuffer(b"".join(blocks)[:nbytes], dtype=np.uint8))[: size * size]
    return bits.reshape(size, size).astype(bool)


def render_digital(text: str, layout: CdpLayout, pattern: np.ndarray | None) -> np.ndarray:
    """The bool ink image (True = ink) in printer dots: the QR with `pattern` over its centre square.

    With `pattern=None` the centre keeps the QR's own modules (the reference the aligner compares with).
    """
    modules = qr_modules(text, error=layout.error, version=layout.version)
    if modules.shape[0] != layout.modules:
        raise CdpError(f"field 'text' gives a {modules.shape[0]}-module symbol, the layout expects {layout.modules}")
    padded = np.pad(modules, layout.border, constant_values=False)
    dpm = layout.dots_per_module
    ink = np.kron(padded, np.ones((dpm, dpm), dtype=bool))
    if pattern is not None:
        if pattern.shape != (layout.size, layout.size):
            raise CdpError(f"field 'pattern' must be {layout.size}x{layout.size}, got {pattern.shape}")
        cells = np.kron(pattern.astype(bool), np.ones((layout.cell_dots, layout.cell_dots), dtype=bool))
        o, n = layout.cdp_origin_dots, layout.cdp_dots
        ink[o:o + n, o:o + n] = cells
    return ink


def render_original(text: str, key: bytes, serial: str, layout: CdpLayout) -> np.ndarray:
    """The issuer's digital original: `text`'s QR with the keyed pattern of `serial` in its centre."""
    return render_digital(text, layout, cdp_pattern(key, serial, layout.size))
