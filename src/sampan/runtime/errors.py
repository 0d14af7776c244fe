"""Errors of the run store, shared by the store and its audit chain."""

from __future__ import annotations

from sampan.errors import StoreError  # a store that cannot be opened, a run/model not there, an unusable key

__all__ = ["StoreError"]
