"""Fixtures for the portal's browser tests: the REAL `sampan portal --local-platforms` stack and Debian's Chromium.

The stack is what the command starts (`sampan.web.portal.embedded.EmbeddedPortal`): the store in a temporary
folder, the portal over HTTP on 127.0.0.1 (a free port), the evaluation runner (each evaluation a bounded worker
subprocess) and the weak and Sampan platforms' Benchmark APIs on loopback. Nothing is mocked: a click on "Start
the evaluation" runs the catalogue's quick profile against the platform. Chromium and Playwright come as in
tests/browser (fail under CI when missing, skip locally, naming tools/install_system_deps.sh).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "browser"))

from _chromium import chromium_executable  # noqa: E402

SCREENSHOTS_ENV = "SAMPAN_PORTAL_SCREENSHOTS"
FAST_ARGON2 = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}  # argon2id still; cheap for tests


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the module (each person gets a fresh context: own cookies, own session)."""
    executable = chromium_executable()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        playwright.selectors.set_test_id_attribute("data-test")
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def portal_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """`sampan portal --local-platforms` for real: (EmbeddedPortal, PortalStarted)."""
    chromium_executable()
    pytest.importorskip("uvicorn")
    from sampan.web.portal.embedded import EmbeddedPortal

    root = tmp_path_factory.mktemp("browser-portal")
    embedded = EmbeddedPortal(root / "folder", port=0, local_platforms=True, argon2_params=FAST_ARGON2,
                              time_limit_s=600)
    started = embedded.start()
    try:
        yield embedded, started
    finally:
        embedded.stop()


@pytest.fixture(scope="module")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`$SAMPAN_PORTAL_SCREENSHOTS` (docs/verification/screenshots when refreshing the docs), else tmp."""
    chosen = os.environ.get(SCREENSHOTS_ENV)
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("portal-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
