"""The security settings in a real Chromium at 360 px: TOTP setup from the QR page then a
login with it, sign out everywhere reaching another browser, and a password reset from
the link a real SMTP server received."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pyotp
import pytest
from factories import PASSWORD, make_user
from verification_helpers import body_of

from authserver.identity import consents
from authserver.platform.extensions import db
from authserver.platform.models import OAuthClient

NEW_PASSWORD = "a-brand-new-passphrase"
CODE_RE = re.compile(r"\b[a-z0-9]{4}(?:-[a-z0-9]{4}){3}\b")


pytestmark = pytest.mark.live_smtp  # the live server mails over SMTP: the reset test reads it


def _sign_in(page, base, aid, username, password=PASSWORD):
    page.goto(f"{base}/login?aid={aid}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_totp_setup_from_the_qr_page_then_sign_in_with_it(
    app, world, live_server, page, shots, tmp_path
):
    """Set up TOTP from the QR page (secret read from the text), keep the downloaded
    recovery codes, sign out, and sign in again with a code from the new secret."""
    _sign_in(page, live_server, world.live_id, "alice")
    page.wait_for_url("**/account")
    page.get_by_role("link", name="Security settings").click()
    page.wait_for_url("**/account/security")
    shots(page, "security-1-overview")

    page.get_by_role("link", name="Set up an authenticator app").click()
    shots(page, "security-2-totp-password")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url("**/account/security/totp/confirm")
    assert page.locator("figure.qr svg").is_visible()
    shots(page, "security-3-totp-qr")
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    totp = pyotp.TOTP(secret)

    page.get_by_label("Verification code").fill("000000" if totp.now() != "000000" else "111111")
    page.get_by_role("button", name="Turn on two-step login").click()
    assert page.locator("[aria-invalid=true]").count() == 1
    shots(page, "security-4-totp-wrong-code")
    page.get_by_label("Verification code").fill(totp.now())
    page.get_by_role("button", name="Turn on two-step login").click()
    page.get_by_role("heading", name="Two-step login is on").wait_for()
    shots(page, "security-5-recovery-codes")
    shown = CODE_RE.findall(page.locator("ol.codes").inner_text())
    assert len(shown) == 10

    with page.expect_download() as info:
        page.get_by_role("button", name="Download as a text file").click()
    saved = Path(tmp_path) / "codes.txt"
    info.value.save_as(saved)
    assert CODE_RE.findall(saved.read_text()) == shown

    page.emulate_media(media="print")
    shots(page, "security-6-recovery-codes-print")
    page.emulate_media(media="screen")
    page.get_by_role("link", name="I saved my codes").click()
    page.wait_for_url("**/account/security")
    shots(page, "security-7-overview-totp-on")
    page.get_by_role("link", name="New recovery codes").click()
    shots(page, "security-8-renew-codes")
    page.goto(f"{live_server}/account/security/tfa/disable")
    shots(page, "security-9-disable")

    page.goto(f"{live_server}/account")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login**")
    _sign_in(page, live_server, world.live_id, "alice")
    page.wait_for_url("**/login/code**")
    # The confirming code's time step is spent; the next step's code is still in the window.
    page.get_by_label("Verification code").fill(totp.at(time.time() + 30))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/account")
    assert "alice" in page.content()


def test_sign_out_everywhere_ends_another_browsers_session(app, world, live_server, page, shots):
    """Two browser contexts signed in as one user; "sign out everywhere" in the first ends
    the second's session too. Also shows the apps list and the login history."""
    with app.app_context():
        pk = db.session.scalar(db.select(OAuthClient.id).where(OAuthClient.name == "Backend"))
        consents.remember(world.alice_id, str(pk), "openid profile email offline_access")
    other = page.context.browser.new_context(viewport={"width": 360, "height": 780})
    second = other.new_page()
    try:
        _sign_in(second, live_server, world.live_id, "alice")
        second.wait_for_url("**/account")
        _sign_in(page, live_server, world.live_id, "alice", password="wrong-password")
        _sign_in(page, live_server, world.live_id, "alice")
        page.wait_for_url("**/account")

        page.goto(f"{live_server}/account/security")
        assert page.get_by_text("See your email address").is_visible()
        shots(page, "security-10-overview-apps")
        page.get_by_role("link", name="See all sign-ins").click()
        page.wait_for_url("**/account/security/history")
        assert page.get_by_text("Failed").count() == 1
        shots(page, "security-11-history")

        page.goto(f"{live_server}/account/security/password")
        page.get_by_label("Current password").fill("not-the-password")
        page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        page.get_by_label("New password again").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Change password").click()
        assert page.locator("[aria-invalid=true]").count() == 1
        shots(page, "security-12-password-wrong-current")

        page.goto(f"{live_server}/account/security")
        page.get_by_role("button", name="Sign out everywhere").click()
        page.wait_for_url("**/login**")
        assert page.get_by_text("signed out on every device").is_visible()
        shots(page, "security-13-signed-out-everywhere")

        second.goto(f"{live_server}/account/security")
        second.wait_for_url("**/login**")
        assert second.get_by_label("Username").is_visible()
    finally:
        other.close()


def test_forgot_password_from_the_emailed_link(app, world, live_server, smtp, page, shots):
    """Ask for a reset link, open it from the mail a real SMTP server got, set a new
    password, and sign in with it."""
    sink, _ = smtp
    base = live_server
    make_user(app, world.live_id, "rita", email="rita@example.com")

    page.goto(f"{base}/login?aid={world.live_id}")
    page.get_by_role("link", name="Forgot your password?").click()
    shots(page, "reset-1-forgot")
    page.get_by_label("Username").fill("rita")
    page.get_by_role("button", name="Send the link").click()
    page.get_by_role("heading", name="Check your email").wait_for()
    shots(page, "reset-2-check-email")

    deadline = time.time() + 10
    while not sink.envelopes and time.time() < deadline:
        time.sleep(0.1)  # the mail goes out in the background
    [message] = sink.messages()
    assert message["To"] == "rita@example.com"
    link = re.search(r"^(http://\S+/reset-password\?token=\S+)$", body_of(message), re.M)
    assert link, body_of(message)
    assert link.group(1).startswith(base)

    page.goto(link.group(1))
    # The first GET moved the token into the session: the address bar no longer holds it.
    assert page.url == f"{base}/reset-password?aid={world.live_id}"  # the account stays
    shots(page, "reset-3-new-password")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Save the password").click()
    page.get_by_role("heading", name="Your password was changed").wait_for()
    shots(page, "reset-4-done")

    page.get_by_role("link", name="Sign in").click()
    page.get_by_label("Username").fill("rita")
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/account")
    assert "rita" in page.content()
