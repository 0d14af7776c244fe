"""The people of the browser tests: each one a Chromium context of its own (own cookies, own session), signing in
through the real sign-in form, plus page screenshots (1280 px wide, palette PNG) and keyboard-only helpers.

Every page a person opens is watched: a Content-Security-Policy violation reported by Chromium (an inline style or
script the console's CSP blocks, so the page looks or works differently from its template), an uncaught script
error (console.js) and any 5xx response are collected in `problems`, and the tests assert there are none.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

WIDTH, HEIGHT = 1280, 800
MAX_HEIGHT = 1000
CONSOLE = "/console"


UNNAMED_CONTROLS_JS = """() => {
  const named = (el) => (el.labels && el.labels.length) || el.getAttribute('aria-label')
    || el.getAttribute('aria-labelledby') || (el.tagName === 'BUTTON' && el.textContent.trim())
    || (el.tagName === 'A' && el.textContent.trim());
  return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea, button, a[href]'))
    .filter((el) => !named(el)).map((el) => el.outerHTML.slice(0, 120));
}"""


def unnamed_controls(page: Page) -> list[str]:
    """Form controls, buttons and links on the page with no accessible name (no label, no text, no aria-label)."""
    found: list[str] = page.evaluate(UNNAMED_CONTROLS_JS)
    return found


class Screenshots:
    """Full-page PNGs by page name (at most MAX_HEIGHT tall), quantised to a 32-colour palette: text pages stay
    sharp at a fraction of the size, so docs/console stays small."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.taken: dict[str, Path] = {}

    def take(self, page: Page, name: str) -> Path:
        from PIL import Image

        assert re.fullmatch(r"[a-z0-9-]+", name), name
        page.wait_for_load_state("load")
        assert unnamed_controls(page) == [], f"{name}: controls without an accessible name"
        raw = page.screenshot(full_page=True, animations="disabled", caret="hide")
        with Image.open(io.BytesIO(raw)) as image:
            assert image.width == WIDTH, f"{name}: the page is wider than {WIDTH} px ({image.size})"
            if image.height > MAX_HEIGHT:  # a long page (events, a report): its top, enough to show what it is
                image = image.crop((0, 0, WIDTH, MAX_HEIGHT))
            small = image.convert("RGB").quantize(colors=32, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
            path = self.folder / f"{name}.png"
            small.save(path, format="PNG", optimize=True)
        self.taken[name] = path
        return path


class Person:
    """One signed-in (or signing-in) person in their own browser context."""

    def __init__(self, browser: Any, base_url: str, username: str, problems: list[str]) -> None:
        self.username = username
        self.context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, base_url=base_url.rstrip("/"),
                                           accept_downloads=True, reduced_motion="reduce")
        self.context.set_default_timeout(90_000)
        self.page: Page = self.context.new_page()
        self.problems = problems
        self.page.on("console", self._console)
        self.page.on("response", self._response)
        self.page.on("pageerror", self._script_error)

    def _console(self, message: Any) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.problems.append(f"{self.username} at {self.page.url}: {message.text[:200]}")

    def _script_error(self, error: Any) -> None:
        self.problems.append(f"{self.username}: script error at {self.page.url}: {error}")

    def _response(self, response: Any) -> None:
        if response.status >= 500:
            self.problems.append(f"{self.username}: HTTP {response.status} from {response.url}")

    def open(self, path: str) -> Page:
        self.page.goto(CONSOLE + path)
        return self.page

    def sign_in(self, password: str, *, keyboard: bool = False) -> None:
        """Through the sign-in form. `keyboard`: only keys (the user-name field has focus on arrival; Tab; Enter)."""
        page = self.page
        page.goto(CONSOLE + "/")
        expect(page).to_have_url(re.compile(r"/console/sign-in"))
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        if keyboard:
            expect(page.get_by_label("User name")).to_be_focused()
            page.keyboard.type(self.username)
            page.keyboard.press("Tab")
            expect(page.get_by_label("Password")).to_be_focused()
            page.keyboard.type(password)
            page.keyboard.press("Enter")
        else:
            page.get_by_label("User name").fill(self.username)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
        # signed in: the header names the person (a link to their account page)
        expect(page.get_by_role("link", name=self.username, exact=True)).to_be_visible()

    def change_password(self, old: str, new: str) -> None:
        page = self.page
        page.get_by_role("link", name=self.username, exact=True).click()
        expect(page.get_by_role("heading", name="Your account")).to_be_visible()
        page.get_by_label("Current password").fill(old)
        page.get_by_label("New password (12 characters or more)").fill(new)
        page.get_by_role("button", name="Change password").click()
        expect(page.get_by_role("status").filter(has_text="Your password was changed.")).to_be_visible()

    def first_sign_in(self, one_time_password: str, new_password: str, *, keyboard: bool = False) -> None:
        """Sign in with a one-time password and choose one's own at once: until then the console shows nothing
        but the account page (R14-WEB-1: every other page redirects to /console/account)."""
        self.sign_in(one_time_password, keyboard=keyboard)
        expect(self.page).to_have_url(re.compile(r"/console/account$"))
        self.change_password(one_time_password, new_password)

    def tab_to(self, locator: Any, most: int = 80) -> None:
        """Press Tab from where the focus is until `locator` has it (fails if it is not reachable by keyboard)."""
        for _ in range(most):
            self.page.keyboard.press("Tab")
            if locator.evaluate("element => element === document.activeElement"):
                return
        raise AssertionError(f"{locator} is not reachable with Tab within {most} presses")

    def close(self) -> None:
        self.context.close()


class People:
    """Makes `Person`s on one browser and stack; collects every page problem they see; closes them all."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.browser, self.base_url = browser, base_url
        self.problems: list[str] = []
        self.made: list[Person] = []

    def __call__(self, username: str) -> Person:
        self.made.append(Person(self.browser, self.base_url, username, self.problems))
        return self.made[-1]

    def close(self) -> None:
        for person in self.made:
            person.close()
