"""The people of the portal's browser tests: each one a Chromium context of its own (own cookies, own session),
using the real forms; every CSP violation, script error and 5xx they meet is collected in `problems`.
Screenshots and the accessible-name check are the console tests' (tests/browser/_people.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from _people import HEIGHT, WIDTH, Screenshots, unnamed_controls
from playwright.sync_api import Page, expect

__all__ = ["PortalPerson", "PortalPeople", "Screenshots", "unnamed_controls", "verification_link", "PORTAL"]

PORTAL = "/portal"


def verification_link(log_file: Path, email: str) -> str:
    """The verification link the embedded portal logged for ``email`` (its newest), as a portal path."""
    found = re.findall(rf"verification link for {re.escape(email.lower())}: (/portal/verify\?token=\S+)",
                       log_file.read_text(encoding="utf-8"))
    assert found, f"no verification link for {email} in {log_file}"
    return str(found[-1])


class PortalPerson:
    """One person in their own browser context."""

    def __init__(self, browser: Any, base_url: str, email: str, problems: list[str]) -> None:
        self.email = email
        self.context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, base_url=base_url.rstrip("/"),
                                           accept_downloads=True, reduced_motion="reduce")
        self.context.set_default_timeout(60_000)
        self.page: Page = self.context.new_page()
        self.problems = problems
        self.page.on("console", self._console)
        self.page.on("response", self._response)
        self.page.on("pageerror", lambda error: self.problems.append(f"{email}: script error at {self.page.url}: "
                                                                       f"{error}"))

    def _console(self, message: Any) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.problems.append(f"{self.email} at {self.page.url}: {message.text[:200]}")

    def _response(self, response: Any) -> None:
        if response.status >= 500:
            self.problems.append(f"{self.email}: HTTP {response.status} from {response.url}")

    def open(self, path: str) -> Page:
        self.page.goto(PORTAL + path)
        return self.page

    def sign_in(self, password: str) -> None:
        page = self.open("/sign-in")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.get_by_label("Email").fill(self.email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_test_id("account-link")).to_have_text(self.email.lower())

    def close(self) -> None:
        self.context.close()


class PortalPeople:
    """Makes `PortalPerson`s on one browser and stack; collects every page problem; closes them all."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.browser, self.base_url = browser, base_url
        self.problems: list[str] = []
        self.made: list[PortalPerson] = []

    def __call__(self, email: str) -> PortalPerson:
        self.made.append(PortalPerson(self.browser, self.base_url, email, self.problems))
        return self.made[-1]

    def close(self) -> None:
        for person in self.made:
            person.close()
