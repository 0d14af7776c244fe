"""Fixtures for the console's browser tests: the REAL embedded stack and Debian's Chromium driven by Playwright.

The stack is what `sampan console` starts (`sampan.web.embedded.EmbeddedConsole`): the deploy coordinator over
gRPC with mutual TLS, three party agent processes and the control plane + console over HTTP (uvicorn), all on
127.0.0.1 with free ports, in a temporary folder. Nothing is mocked: an operator's click reaches its own agent,
which signs, reserves budget or refuses.

Chromium is Debian's (`apt-get install chromium`, done by `tools/install_system_deps.sh`, which `make test` runs);
Playwright never downloads a browser here. Without Chromium (or without Playwright) the tests FAIL when `CI` is set
and skip locally with a message naming the install script, so a CI machine can never pass them by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _chromium import chromium_executable

SCREENSHOTS_ENV = "SAMPAN_CONSOLE_SCREENSHOTS"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the module (each person gets a fresh context: own cookies, own session)."""
    executable = chromium_executable()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        playwright.selectors.set_test_id_attribute("data-test")  # the console marks its elements data-test="..."
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def console_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """`sampan console` for real: (EmbeddedConsole, ConsoleStarted) with every agent connected."""
    chromium_executable()  # no stack (a minute of CPU) when the browser is missing anyway
    pytest.importorskip("uvicorn")
    from sampan.web.embedded import EmbeddedConsole

    root = tmp_path_factory.mktemp("browser-console")
    embedded = EmbeddedConsole(root / "folder", port=0, n_smes=3000, budget_epsilon=10.0)
    started = embedded.start()
    try:
        missing = embedded.wait_connected(120)
        assert missing == [], {p: a.out.read_text(errors="replace")[-2000:] for p, a in embedded.agents.items()}
        yield embedded, started
    finally:
        embedded.stop()


@pytest.fixture(scope="module")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where page screenshots go: `$SAMPAN_CONSOLE_SCREENSHOTS` (docs/console when refreshing the docs), else tmp."""
    chosen = os.environ.get(SCREENSHOTS_ENV)
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("console-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
