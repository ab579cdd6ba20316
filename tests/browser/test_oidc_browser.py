"""Authorization code + PKCE end to end: Chromium drives our login, second step and
consent pages; pyoidc (`oic`, the OpenID-certified relying-party library) builds the
request, exchanges the code and validates the ID token against our discovery document
and JWKS. None of the relying-party side is our code."""

from __future__ import annotations

from factories import make_totp_user
from rp_helpers import finish, password_step, relying_party, start


def test_code_flow_with_pkce_for_a_totp_user(app, world, live_server, page, shots):
    """Login with password + TOTP, consent, code back with our state; pyoidc exchanges it
    with the PKCE verifier and accepts the ID token (signature, iss, aud, nonce); the ID
    token says two factors were used, and userinfo answers for the same subject."""
    user_id, totp = make_totp_user(app, world.live_id, "tina")
    rp, callback = relying_party(app, live_server, world.live_id)
    flow = start(rp, callback)
    page.goto(flow.url)

    page.wait_for_url("**/login?**")
    shots(page, "oidc-1-login")
    password_step(page, "tina")
    page.wait_for_url("**/login/code**")
    page.get_by_label("Verification code").fill(totp.now())
    page.get_by_role("button", name="Verify").click()

    page.wait_for_url("**/oauth/authorize?**")
    shots(page, "oidc-2-consent")
    assert "Acme Web" in page.content()
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(f"{callback}?**")

    tokens = finish(rp, page.url, callback, flow)  # checks state, and the nonce
    id_token = tokens["id_token"]  # pyoidc verified its signature with our JWKS
    assert id_token["iss"] == live_server
    assert id_token["aud"] == [rp.client_id]
    assert id_token["nonce"] == flow.nonce
    assert id_token["sub"] == user_id
    assert {"pwd", "otp", "mfa"} <= set(id_token["amr"])
    info = rp.do_user_info_request(state=flow.state)
    assert info["sub"] == user_id
