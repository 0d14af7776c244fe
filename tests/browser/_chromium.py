"""Finding Debian's Chromium for the browser tests, and what to do without it: FAIL when `CI` is set (a CI run
must never pass by skipping them), skip locally; either way the message names `tools/install_system_deps.sh`."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

INSTALL_HINT = "run tools/install_system_deps.sh (make test runs it) to install Debian's chromium"


def _missing(what: str) -> None:
    message = f"{what}: {INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and the browser tests cannot run: {message}", pytrace=False)
    pytest.skip(message)


def chromium_executable() -> str:
    """Debian's Chromium on PATH, with Playwright importable; else fail (CI) or skip (locally)."""
    if importlib.util.find_spec("playwright") is None:
        _missing("Playwright is not installed (it is in requirements/lock-test.txt: make .venv/.test)")
    path = shutil.which("chromium")
    if path is None:
        _missing("Chromium is not on PATH")
    assert path is not None
    return path
