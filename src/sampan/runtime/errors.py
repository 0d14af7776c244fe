"""Errors of the run store, shared by the store and its audit chain."""

from __future__ import annotations


class StoreError(RuntimeError):
    """A store that cannot be opened, a run or model that is not there, an unusable audit key."""
