"""Sampan as a platform under test: its party kit (the backend itself is `sampan.web.bench_api.SampanBackend`,
which needs the web layer, so it is not importable from here). See `sampan_kit` for what in-process mode means."""

from __future__ import annotations

from sampan.verify.platforms.sampan_kit import SampanKit

__all__ = ["SampanKit"]
