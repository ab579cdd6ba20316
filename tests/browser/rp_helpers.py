"""pyoidc (`oic`) as the relying party of the browser tests: a client registered with us
and configured from our discovery document, the PKCE authorization request it builds,
and its code exchange with ID-token validation. None of the RP side is our code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from factories import CODE_GRANTS, PASSWORD, make_client
from oic import rndstr
from oic.oic import Client
from oic.oic.message import AuthorizationResponse, RegistrationResponse
from oic.utils.authn.client import CLIENT_AUTHN_METHOD


@dataclass
class Flow:
    """One authorization request: its URL and the secrets the RP keeps for the answer."""

    url: str
    state: str
    nonce: str
    verifier: str


def relying_party(
    app: Any, live_server: str, account_id: str, *, post_logout: list[str] | None = None
) -> tuple[Client, str]:
    """A confidential web client registered with us, and pyoidc configured from discovery."""
    callback = f"{live_server}/callback"
    made = make_client(
        app,
        account_id,
        "Acme Web",
        redirect_uris=[callback],
        post_logout_redirect_uris=post_logout or [],
        grant_types=CODE_GRANTS,
    )
    client_id, secret = made.client_id, made.secret
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


def start(rp: Client, callback: str, **extra: Any) -> Flow:
    """pyoidc's authorization request with PKCE (S256), state and nonce."""
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
            **extra,
        }
    )
    return Flow(request.request(rp.authorization_endpoint), state, nonce, verifier)


def finish(rp: Client, callback_url: str, callback: str, flow: Flow) -> Any:
    """Parse the code from the callback URL, exchange it with the verifier and return the
    token response (pyoidc checked the ID token's signature, iss, aud and nonce)."""
    answer = rp.parse_response(
        AuthorizationResponse, info=callback_url.split("?", 1)[1], sformat="urlencoded"
    )
    assert answer["state"] == flow.state
    tokens = rp.do_access_token_request(
        state=flow.state,
        request_args={
            "code": answer["code"],
            "code_verifier": flow.verifier,
            "redirect_uri": callback,
        },
        authn_method="client_secret_basic",
    )
    assert tokens["id_token"]["nonce"] == flow.nonce
    return tokens


def password_step(page: Any, username: str) -> None:
    """Fill the login page's username and password and sign in."""
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
