"""The proof-of-work check in a real Chromium: past the failure threshold the login page
shows it, static/captcha.js solves it under the strict CSP (no violation), and the
person signs in."""

from __future__ import annotations

from typing import Any

import pytest
from factories import PASSWORD


@pytest.fixture
def live_config() -> dict[str, Any]:
    """The live server uses the built-in proof of work after two failures."""
    return {"CAPTCHA_VERIFY_URL": "altcha:", "CAPTCHA_AFTER_FAILURES": 2}


def test_the_check_appears_after_failures_solves_itself_and_lets_the_person_in(
    app, world, live_server, page, shots
):
    """Two wrong passwords, then the right one: the page asks for the check, the script
    solves it (its status says so and the button is enabled), and signing in again works."""
    problems: list[str] = []
    # Failed-status answers (the 401 and 400 pages) are logged too: only CSP refusals count.
    page.on("console", lambda m: problems.append(m.text) if "Refused" in m.text else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{live_server}/login?aid={world.live_id}")
    assert page.locator("[data-captcha]").count() == 0
    for password in ("wrong-1", "wrong-2", PASSWORD):
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()
    check = page.locator("[data-captcha]")
    assert check.count() == 1
    page.wait_for_selector("[data-captcha][data-solved=true]", timeout=20_000)
    shots(page, "captcha-solved")
    assert "Check done" in page.locator(".captcha-status").inner_text()
    assert page.locator("input[name=captcha_token]").input_value()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/account")
    assert "alice" in page.content()
    assert problems == []
