"""Without Debian's Chromium the browser tests fail under CI and skip locally, naming the install script."""

from __future__ import annotations

import shutil

import pytest
from _chromium import chromium_executable


def test_missing_chromium_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="tools/install_system_deps.sh"):
        chromium_executable()


def test_missing_chromium_skips_locally_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="tools/install_system_deps.sh"):
        chromium_executable()


def test_chromium_found_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/chromium" if name == "chromium" else None)
    assert chromium_executable() == "/usr/bin/chromium"
