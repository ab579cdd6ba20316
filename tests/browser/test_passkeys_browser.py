"""Passkeys in a real Chromium with its virtual authenticator (CDP WebAuthn domain: ctap2,
internal transport, resident keys, user verification): enrolment on the security page,
passwordless sign-in through an OIDC code + PKCE flow with pyoidc as the relying party,
a passkey as the second step after a password, a removed passkey refused, and a cloned
authenticator's counter regression refused and recorded.

Browsers refuse WebAuthn on an IP-address origin, so the server's issuer here is
http://localhost:PORT (it still listens on 127.0.0.1)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from factories import PASSWORD, make_user
from rp_helpers import finish, relying_party, start
from sqlalchemy import select
from werkzeug.serving import make_server

from authserver.platform.extensions import db
from authserver.platform.models import LoginRecord, Passkey

AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
}


@pytest.fixture
def base(make_app: Any, unused_port: int) -> Iterator[str]:
    """The app (CSRF on) served at http://localhost:<port>, its issuer."""
    url = f"http://localhost:{unused_port}"
    app = make_app(WTF_CSRF_ENABLED=True, ISSUER=url)
    server = make_server("127.0.0.1", unused_port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        thread.join(timeout=5)


class Authenticators:
    """The page's CDP WebAuthn session: add, export and remove virtual authenticators."""

    def __init__(self, page: Any):
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("WebAuthn.enable")

    def add(self) -> str:
        made = self.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
        return str(made["authenticatorId"])

    def credentials(self, authenticator: str) -> list[dict[str, Any]]:
        found = self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
        return list(found["credentials"])

    def presence(self, authenticator: str, *, automatic: bool) -> None:
        """Whether the authenticator answers at once (as if touched) or waits."""
        self.cdp.send(
            "WebAuthn.setAutomaticPresenceSimulation",
            {"authenticatorId": authenticator, "enabled": automatic},
        )

    def remove(self, authenticator: str) -> None:
        self.cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": authenticator})

    def add_credential(self, authenticator: str, credential: dict[str, Any]) -> None:
        self.cdp.send(
            "WebAuthn.addCredential", {"authenticatorId": authenticator, "credential": credential}
        )


def _password_sign_in(page: Any, base: str, aid: str, username: str) -> None:
    page.goto(f"{base}/login?aid={aid}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()


def _enrol(page: Any, base: str, aid: str, username: str, name: str = "Laptop") -> None:
    """Sign in with the password and add a passkey named `name` on the security page."""
    _password_sign_in(page, base, aid, username)
    page.wait_for_url("**/account")
    page.goto(f"{base}/account/security")
    page.get_by_role("link", name="Add a passkey").click()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url("**/account/security/passkeys/new")
    page.get_by_label("Name of the passkey").fill(name)
    page.get_by_role("button", name="Create the passkey").click()
    page.wait_for_url("**/account/security")
    assert "Your passkey was added." in page.content()
    assert name in page.locator("#passkeys-heading + p + ul").inner_text()
    page.context.clear_cookies()  # signed out: the next steps start as a stranger


def _records(app: Any, user_id: str) -> list[LoginRecord]:
    with app.app_context():
        rows = db.session.scalars(
            select(LoginRecord).where(LoginRecord.user_id == user_id).order_by(LoginRecord.id)
        )
        return list(rows)


NO_AUTOFILL = "delete PublicKeyCredential.isConditionalMediationAvailable;"


def test_enrol_then_passwordless_code_flow_with_pyoidc(app, world, base, page, shots):
    """A passkey made on the security page signs its user in without a password through
    an authorization-code + PKCE flow: the login page offers it in the username field's
    autofill (conditional UI; the virtual authenticator picks it at once), pyoidc
    validates the ID token, whose amr has hwk and mfa and whose acr is AAL2; the
    passkey's last use is recorded."""
    user_id = make_user(app, world.live_id, "pat")
    authenticators = Authenticators(page)
    authenticators.add()
    _enrol(page, base, world.live_id, "pat")
    shots(page, "passkey-1-enrolled")

    rp, callback = relying_party(app, base, world.live_id)
    flow = start(rp, callback)
    page.goto(flow.url)
    page.wait_for_url("**/oauth/authorize?**")  # via /login, where autofill offered it
    shots(page, "passkey-2-consent")
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(f"{callback}?**")

    id_token = finish(rp, page.url, callback, flow)["id_token"]
    assert id_token["sub"] == user_id
    assert {"hwk", "mfa"} <= set(id_token["amr"])
    assert "pwd" not in id_token["amr"]
    assert id_token["acr"] == "http://idmanagement.gov/ns/assurance/aal/2"
    with app.app_context():
        passkey = db.session.scalars(select(Passkey).where(Passkey.user_id == user_id)).one()
        assert passkey.last_used_at is not None
    assert _records(app, user_id)[-1].method == "passkey"


def test_passkey_as_the_second_step_then_removed_and_refused(app, world, base, page, shots):
    """With a passkey, a password sign-in asks for it at the second step and succeeds
    with it (password+passkey); once removed on the security page, the same
    authenticator's passkey is refused on /login."""
    user_id = make_user(app, world.live_id, "quinn")
    authenticators = Authenticators(page)
    phone = authenticators.add()
    _enrol(page, base, world.live_id, "quinn", name="Phone")

    # Untouched, the authenticator does not answer the login page's autofill offer.
    authenticators.presence(phone, automatic=False)
    _password_sign_in(page, base, world.live_id, "quinn")
    page.wait_for_url("**/login/code")
    authenticators.presence(phone, automatic=True)
    shots(page, "passkey-3-second-step")
    assert page.get_by_label("Verification code").count() == 0  # nothing to type
    page.get_by_role("button", name="Use a passkey").click()
    page.wait_for_url("**/account")
    assert _records(app, user_id)[-1].method == "password+passkey"

    page.goto(f"{base}/account/security")
    page.get_by_role("link", name="Remove Phone").click()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Remove the passkey").click()
    page.wait_for_url("**/account/security")
    assert "Two-step login is off." in page.content()
    with app.app_context():
        assert db.session.scalars(select(Passkey).where(Passkey.user_id == user_id)).all() == []

    page.context.clear_cookies()
    before = len(_records(app, user_id))
    page.goto(f"{base}/login?aid={world.live_id}")  # autofill offers the removed passkey
    page.wait_for_selector("text=The passkey could not be used")
    shots(page, "passkey-4-removed-refused")
    assert "/login" in page.url
    assert len(_records(app, user_id)) == before  # no login of quinn, not even a try


def test_cloned_authenticator_counter_regression_refused(app, world, base, page, shots):
    """A copy of the passkey on a second authenticator whose signature counter is behind
    the server's is refused, and the login history records the regression (in a browser
    without autofill offers: the "Sign in with a passkey" button)."""
    page.add_init_script(NO_AUTOFILL)
    user_id = make_user(app, world.live_id, "rudy")
    authenticators = Authenticators(page)
    first = authenticators.add()
    _enrol(page, base, world.live_id, "rudy")

    page.goto(f"{base}/login?aid={world.live_id}")
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url("**/account")  # the counter moved forward on the server
    page.context.clear_cookies()

    (credential,) = authenticators.credentials(first)
    assert credential["signCount"] >= 1
    authenticators.remove(first)
    clone = authenticators.add()
    authenticators.add_credential(clone, {**credential, "signCount": 0})

    page.goto(f"{base}/login?aid={world.live_id}")
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_selector("text=The passkey could not be used")
    shots(page, "passkey-5-clone-refused")
    last = _records(app, user_id)[-1]
    assert (last.success, last.reason) == (False, "passkey_counter_regression")
