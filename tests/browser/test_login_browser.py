"""The hosted login in a real Chromium: a TOTP user signs in through both steps, a wrong
code is shown next to the field, and logout ends it."""

from __future__ import annotations

from factories import PASSWORD, make_totp_user


def test_totp_user_signs_in_and_out_in_chromium(app, world, live_server, page, shots):
    """Password step, a wrong code (error next to the field), the right code, the account
    page, then logout by the button; screenshots of each page."""
    _, totp = make_totp_user(app, world.live_id, "tina")

    page.goto(f"{live_server}/login?aid={world.live_id}")
    shots(page, "1-login")
    page.get_by_label("Username").fill("tina")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    page.wait_for_url("**/login/code**")
    shots(page, "2-code")
    page.get_by_label("Verification code").fill("000000" if totp.now() != "000000" else "111111")
    page.get_by_role("button", name="Verify").click()
    error = page.locator("[aria-invalid=true]")
    assert error.count() == 1
    shots(page, "3-wrong-code")

    page.get_by_label("Verification code").fill(totp.now())
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/account")
    shots(page, "4-account")
    assert "tina" in page.content()

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login**")
    page.goto(f"{live_server}/account")
    page.wait_for_url("**/login**")
