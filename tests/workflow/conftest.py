"""Fixtures of the workflow tests: headless Debian Chromium under Playwright, one per session.

Chromium is the Debian package at /usr/bin/chromium: installed with ``apt-get install -y
--no-install-recommends chromium`` when missing and this user is root or has passwordless sudo, skipped
with the reason otherwise; Playwright drives it (``executable_path``), never downloading a browser. One
definition here, so that every module shares the session's browser (Playwright's sync API runs one
instance per thread).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


def _install_chromium() -> str | None:
    """Install Debian's chromium; the reason it cannot be installed, or None when it is."""
    if os.geteuid() == 0:
        prefix = []
    elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        prefix = ["sudo", "-n"]
    else:
        return (
            f"{CHROMIUM} is missing and this user is neither root nor has passwordless sudo to apt-get install chromium"
        )
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        result = subprocess.run(prefix + command, capture_output=True, text=True, timeout=1200)
        if result.returncode != 0:
            return f"{' '.join(command)} failed: {result.stderr[-500:]}"
    return None if CHROMIUM.is_file() else f"apt-get installed chromium but {CHROMIUM} does not exist"


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian package) under Playwright, for the session."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (test extra)")
    if not CHROMIUM.is_file():
        reason = _install_chromium()
        if reason:
            pytest.skip(reason)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        yield chromium
        chromium.close()


class Visit:
    """A page that records console errors, page errors, failed requests and any request outside file://."""

    def __init__(self, browser):
        self.page = browser.new_page(viewport={"width": 1200, "height": 900})
        self.problems: list[str] = []
        self.page.on(
            "console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
        )
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed request: {r.url}"))
        self.page.route("**/*", self._only_files)

    def _only_files(self, route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            self.problems.append(f"request outside the site: {route.request.url}")
            route.abort()

    def open(self, path: Path):
        self.page.goto(path.as_uri())
        self.page.wait_for_load_state("load")
        return self.page

    def close(self):
        self.page.close()


@pytest.fixture
def visit(browser):
    visits = []

    def make():
        visits.append(Visit(browser))
        return visits[-1]

    yield make
    for v in visits:
        v.close()
