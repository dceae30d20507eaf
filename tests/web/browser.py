"""A live console in a thread and a headless Chromium driven by Playwright, for the browser tests."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest
from flask import Flask
from werkzeug.serving import make_server

from helpdesk.core.models import Role
from tests.servers import require
from tests.web.conftest import PASSWORD, STAFF

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class LiveServer:
    def __init__(self, app: Flask, port: int = 0) -> None:
        """``port``: one chosen beforehand, when the app's settings must name its URL (HELPDESK_WEB_URL)."""
        self._server = make_server("127.0.0.1", port, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="live-console", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def live(app: Flask) -> Iterator[LiveServer]:
    server = LiveServer(app)
    server.start()
    yield server
    server.stop()


# Per module, not per session: while Playwright's sync API runs, this thread has a running
# event loop, and later tests that call asyncio.run() (the SMTP sender) would fail.
@pytest.fixture(scope="module")
def browser(chromium_executable: str):  # type: ignore[no-untyped-def]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require("Playwright", False, "the playwright package is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_executable, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def log_in(page, live: LiveServer, role: Role) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live.url}/login")
    page.fill("input[name=email]", STAFF[role])
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("header.top nav")


def screenshot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
