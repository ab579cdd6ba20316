"""Authorization code + PKCE end to end: Chromium drives our login, second step and
consent pages; pyoidc (`oic`, the OpenID-certified relying-party library) builds the
request, exchanges the code and validates the ID token against our discovery document
and JWKS. None of the relying-party side is our code."""

from __future__ import annotations

from typing import Any

from oauth_helpers import PASSWORD, make_world
from oic import rndstr
from oic.oic import Client
from oic.oic.message import AuthorizationResponse, RegistrationResponse
from oic.utils.authn.client import CLIENT_AUTHN_METHOD
from pages_helpers import make_totp_user

from authserver import clients
from authserver.extensions import db
from authserver.models import Account


def _relying_party(app: Any, live_server: str, account_id: str) -> tuple[Client, str]:
    """A confidential web client registered with us, and pyoidc configured from discovery."""
    callback = f"{live_server}/callback"
    with app.app_context():
        account = db.session.get(Account, account_id)
        made = clients.create_client(
            account,
            "Acme Web",
            redirect_uris=[callback],
            grant_types=["authorization_code", "refresh_token"],
        )
        client_id, secret = made.client.client_id, made.secret
    rp = Client(client_authn_method=CLIENT_AUTHN_METHOD)
    rp.provider_config(live_server)
    rp.store_registration_info(
        RegistrationResponse(
            client_id=client_id,
            client_secret=secret,
            redirect_uris=[callback],
            token_endpoint_auth_method="client_secret_basic",
        )
    )
    rp.redirect_uris = [callback]
    return rp, callback


def test_code_flow_with_pkce_for_a_totp_user(app, live_server, page, shots):
    """Login with password + TOTP, consent, code back with our state; pyoidc exchanges it
    with the PKCE verifier and accepts the ID token (signature, iss, aud, nonce); the ID
    token says two factors were used, and userinfo answers for the same subject."""
    world = make_world(app)
    user_id, totp = make_totp_user(app, world.live_id, "tina")
    rp, callback = _relying_party(app, live_server, world.live_id)
    state, nonce = rndstr(), rndstr()
    challenge, verifier = rp.add_code_challenge()
    request = rp.construct_AuthorizationRequest(
        request_args={
            "client_id": rp.client_id,
            "response_type": "code",
            "scope": ["openid", "profile"],
            "redirect_uri": callback,
            "state": state,
            "nonce": nonce,
            **challenge,
        }
    )
    page.goto(request.request(rp.authorization_endpoint))

    page.wait_for_url("**/login?**")
    shots(page, "oidc-1-login")
    page.get_by_label("Username").fill("tina")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/login/code**")
    page.get_by_label("Verification code").fill(totp.now())
    page.get_by_role("button", name="Verify").click()

    page.wait_for_url("**/oauth/authorize?**")
    shots(page, "oidc-2-consent")
    assert "Acme Web" in page.content()
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(f"{callback}?**")

    answer = rp.parse_response(
        AuthorizationResponse, info=page.url.split("?", 1)[1], sformat="urlencoded"
    )
    assert answer["state"] == state
    tokens = rp.do_access_token_request(
        state=state,
        request_args={"code": answer["code"], "code_verifier": verifier, "redirect_uri": callback},
        authn_method="client_secret_basic",
    )
    id_token = tokens["id_token"]  # pyoidc verified its signature with our JWKS
    assert id_token["iss"] == live_server
    assert id_token["aud"] == [rp.client_id]
    assert id_token["nonce"] == nonce
    assert id_token["sub"] == user_id
    assert {"pwd", "otp", "mfa"} <= set(id_token["amr"])
    info = rp.do_user_info_request(state=state)
    assert info["sub"] == user_id
