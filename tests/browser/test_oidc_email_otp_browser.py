"""Authorization code + PKCE for an email-OTP user in Chromium: the code arrives through
a real local SMTP server (aiosmtpd) and is typed into our second-step page; pyoidc
exchanges the code and validates the ID token."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from factories import make_email_otp_user
from rp_helpers import finish, password_step, relying_party, start

pytestmark = pytest.mark.live_smtp  # the live server mails through the local SMTP server


def _mailed_code(sink: Any, to: str, timeout: float = 10.0) -> str:
    """The 6-digit code in the newest message to `to` (mail leaves in the background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in reversed(sink.messages()):
            if to in str(message["To"]):
                body = message.get_body(("plain",))
                match = re.search(r"\b(\d{6})\b", body.get_content() if body else "")
                assert match, message
                return match.group(1)
        time.sleep(0.1)
    raise AssertionError(f"no mail to {to} within {timeout} s")


def test_code_flow_for_an_email_otp_user_reading_the_mailed_code(
    app, world, smtp, live_server, page, shots
):
    """Password, then the code from the email the SMTP server received, consent, and a
    code pyoidc exchanges; the ID token says password + OTP were used."""
    sink, _ = smtp
    user_id = make_email_otp_user(app, world.live_id, "emma")
    rp, callback = relying_party(app, live_server, world.live_id)
    flow = start(rp, callback)
    page.goto(flow.url)

    page.wait_for_url("**/login?**")
    password_step(page, "emma")
    page.wait_for_url("**/login/code**")
    shots(page, "oidc-email-1-code")
    assert "e***@example.com" in page.content()  # the masked address, never the whole one
    page.get_by_label("Verification code").fill(_mailed_code(sink, "emma@example.com"))
    page.get_by_role("button", name="Verify").click()

    page.wait_for_url("**/oauth/authorize?**")
    shots(page, "oidc-email-2-consent")
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(f"{callback}?**")

    tokens = finish(rp, page.url, callback, flow)
    assert tokens["id_token"]["sub"] == user_id
    assert {"pwd", "otp", "mfa"} <= set(tokens["id_token"]["amr"])
