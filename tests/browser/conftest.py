"""Browser tests: the app served on a real socket in a thread, and Debian's Chromium
driven by Playwright (its own browser download does not work here).

Screenshots go to $AUTHSERVER_SCREENSHOTS when set (to look at them), else to the test's
temporary directory.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture
def live_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Extra config for the live server's app: none, but in a module marked `live_smtp`
    its mail goes to the `smtp` fixture's local SMTP server (for tests that read it). A
    test module may still override this fixture."""
    if request.node.get_closest_marker("live_smtp") is None:
        return {}
    _, port = request.getfixturevalue("smtp")
    return {"MAIL_URL": f"smtp://127.0.0.1:{port}"}


@pytest.fixture
def live_server(make_app: Any, unused_port: int, live_config: dict[str, Any]) -> Iterator[str]:
    """The app (CSRF on, on the test's tables and Redis) at http://127.0.0.1:<port>."""
    base = f"http://127.0.0.1:{unused_port}"
    app = make_app(WTF_CSRF_ENABLED=True, ISSUER=base, **live_config)
    server = make_server("127.0.0.1", unused_port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One Chromium per test process (starting it costs about a second); each test gets
    its own context, so no cookie or storage passes from one test to the next."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh Chromium page in a fresh context (360 px wide, like a small phone)."""
    context = chromium.new_context(viewport={"width": 360, "height": 780})
    yield context.new_page()
    context.close()


@pytest.fixture
def shots(tmp_path: Path) -> Any:
    """shots(page, name): a full-page screenshot, named for the step."""
    folder = Path(os.environ.get("AUTHSERVER_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
