"""The watermark package's errors: a bad input names the field (image, bits, key file), never a traceback."""

from __future__ import annotations

from sampan.errors import ConfigError, DataError

__all__ = ["WatermarkError", "WatermarkKeyError"]


class WatermarkError(DataError):
    """An image, payload or option that embed/detect cannot use; the message names the field at fault."""


class WatermarkKeyError(ConfigError):
    """A watermark key file that is missing, malformed or readable by other local users."""
