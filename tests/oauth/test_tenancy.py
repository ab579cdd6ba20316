"""Live and test accounts (issue 14): a test account's client reaches only the test account
at every front door, a live client's logins are live-account logins only, and ID tokens
and userinfo say which account and mode a login is for.

Some tests make a "legacy" token or code with the domain functions: one a test client
could get before the fix (a live login issued to a test client), to show that such a
token is no key to the live account afterwards either."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest
from factories import (
    CODE_GRANTS,
    PASSWORD,
    SPA_CB,
    TOKEN_GRANTS,
    Cred,
    OidcWorld,
    World,
    make_client,
    make_user,
)
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet
from oauth_helpers import basic, bearer, jwt_parts, login, password_grant, refresh
from oidc_helpers import auth_params, exchange, pkce, query_of, sign_in
from pages_helpers import submit
from sqlalchemy import select
from verification_helpers import guest_token

from authserver.identity import authorization, tokens, users
from authserver.identity.browser_login import BrowserLogin
from authserver.platform.extensions import db
from authserver.platform.models import Account, LoginRecord, OAuthClient, User

BAD_CREDENTIALS = {
    "error": "invalid_grant",
    "error_description": "Username and password does not match.",
}
MEDIA = "application/vnd.api+json"


@pytest.fixture
def pair(app: Flask, oidc_world: OidcWorld) -> SimpleNamespace:
    """Clients of the test account (like the live account's in `oidc_world`): a
    first-party browser app, a confidential backend, a public native app."""
    test = oidc_world.base.test_id
    return SimpleNamespace(
        spa=make_client(
            app,
            test,
            "Acme test SPA",
            public=True,
            redirect_uris=[SPA_CB],
            grant_types=CODE_GRANTS,
            skip_consent=True,
        ),
        conf=make_client(
            app, test, "Acme test backend", grant_types=[*TOKEN_GRANTS, "client_credentials"]
        ),
        native=Cred(oidc_world.base.test_public_id),
    )


def _error(response: Any) -> str:
    return str(response.get_json()["error"])


def _introspect(client: FlaskClient, cred: Cred, token: str) -> dict[str, Any]:
    assert cred.secret
    response = client.post(
        "/oauth/introspect", data={"token": token}, headers=basic(cred.client_id, cred.secret)
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return dict(response.get_json())


def _live_conf(world: World) -> Cred:
    return Cred(world.conf_id, world.conf_secret)


def _legacy_tokens(
    app: Flask, client_id: str, user_id: str, account_id: str | None
) -> tuple[str, str]:
    """(refresh token, access token with openid) of a login of `user_id` in `account_id`,
    issued to the client `client_id` whatever its account (as a test client could get
    for the live account before the fix)."""
    with app.app_context():
        pk = db.session.scalar(select(OAuthClient.id).where(OAuthClient.client_id == client_id))
        user = db.session.get(User, user_id)
        account = db.session.get(Account, account_id) if account_id else None
        assert pk and user
        principal = tokens.user_principal(user, account, user.role, ["pwd"])
        value = tokens.new_refresh_token_value()
        tokens.save_refresh_token(value, pk, principal, "openid profile")
        access = tokens.sign_access_token(client_id, principal, "openid profile", 300)
    return value, access


def _id_claims(client: FlaskClient, id_token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(client.get("/oauth/jwks").get_json())
    return dict(jwt.decode(id_token, keys, algorithms=["RS256"]).claims)


def _authorize(browser: FlaskClient, client_id: str) -> tuple[Any, str]:
    """An authorization request of `client_id`: (the answer, the PKCE verifier)."""
    verifier, challenge = pkce()
    params = auth_params(client_id, challenge)
    return browser.get("/oauth/authorize", query_string=params), verifier


def _login_page(aid: str | None, client_id: str) -> str:
    """The login page as an app's authorization request sends the browser there, with
    `aid` picked by the person."""
    _, challenge = pkce()
    next_url = "/oauth/authorize?" + urlencode(auth_params(client_id, challenge))
    query = f"aid={aid}&" if aid else ""
    return f"/login?{query}next={quote(next_url, safe='')}"


# ---------------------------------------------------------------- finding 8: test -> live


def test_test_client_password_grant_cannot_log_into_live(app, client, world):
    """Finding 8: the test account's client with aid:<live account> and a live user's
    right password answers like a wrong password, and records no success."""
    response = password_grant(
        client, world, "alice", aid=world.live_id, client_id=world.test_public_id
    )
    assert response.status_code == 400 and response.get_json() == BAD_CREDENTIALS
    with app.app_context():
        ok = db.session.scalars(select(LoginRecord).where(LoginRecord.success.is_(True))).all()
    assert ok == []


def test_test_client_authorize_issues_no_code_for_a_live_login(app, web, browser, oidc_world, pair):
    """Finding 8: a browser signed in to the live account gets no code from a test
    client (it must log in again), and the login page refuses a live user for it."""
    base = oidc_world.base
    sign_in(web, browser, base.alice_id, base.live_id)
    response, _ = _authorize(browser, pair.spa.client_id)
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/login"
    assert "code" not in query_of(response)
    fresh = web.test_client()
    page = _login_page(base.live_id, pair.spa.client_id)
    answer = submit(fresh, page, {"username": "alice", "password": PASSWORD})
    assert answer.status_code == 401
    assert fresh.get("/account").status_code != 200


def test_a_code_for_a_live_login_gives_a_test_client_nothing(app, client, oidc_world, pair):
    """A live login's code issued to a test client (as before the fix) is refused at the
    token endpoint: no live token leaves for a test client."""
    base = oidc_world.base
    verifier, challenge = pkce()
    with app.app_context():
        alice = db.session.get(User, base.alice_id)
        live = db.session.get(Account, base.live_id)
        assert alice and live
        login_ = BrowserLogin(alice.id, live.id, ("pwd",), int(time.time()))
        member = authorization.Member(alice, live, "owner", login_)
        code = authorization.issue_code(
            SimpleNamespace(client_id=pair.spa.client_id),
            member,
            redirect_uri=SPA_CB,
            scope="openid profile",
            nonce=None,
            code_challenge=challenge,
        )
    response = exchange(client, code, verifier, pair.spa.client_id)
    assert response.status_code == 400 and _error(response) == "invalid_grant"
    assert "access_token" not in response.get_json()


def test_test_client_cannot_refresh_a_live_refresh_token(app, client, world):
    """Finding 8: a live login's refresh token held by a test client cannot be used."""
    value, _ = _legacy_tokens(app, world.test_public_id, world.alice_id, world.live_id)
    response = refresh(client, value, world.test_public_id)
    assert response.status_code == 400 and _error(response) == "invalid_grant"
    assert "access_token" not in response.get_json()


def test_test_client_introspection_does_not_read_live_tokens(client, world, pair):
    """Finding 8: the test account's confidential client gets active:false for a live
    access or refresh token; the live client reads them."""
    live = login(client, world)
    for token in (live["access_token"], live["refresh_token"]):
        assert _introspect(client, pair.conf, token) == {"active": False}
        seen = _introspect(client, _live_conf(world), token)
        assert seen["active"] is True and seen["aid"] == world.live_id
        assert seen["mode"] == "live"


def test_live_client_introspection_does_not_read_test_tokens(client, world, pair):
    """And the other way: the live client gets active:false for the test account's
    tokens, which the test account's client reads (mode test)."""
    test = login(client, world, username="tess")
    for token in (test["access_token"], test["refresh_token"]):
        assert _introspect(client, _live_conf(world), token) == {"active": False}
        seen = _introspect(client, pair.conf, token)
        assert (seen["active"], seen["aid"], seen["mode"]) == (True, world.test_id, "test")


def test_test_client_cannot_revoke_a_live_token(app, client, world):
    """Revocation: a live login's tokens issued to a test client are not its to revoke
    (invalid_grant); they stay as they were."""
    value, access = _legacy_tokens(app, world.test_public_id, world.alice_id, world.live_id)
    for token in (value, access):
        response = client.post(
            "/oauth/revoke", data={"token": token, "client_id": world.test_public_id}
        )
        assert response.status_code == 400 and _error(response) == "invalid_grant"
        assert _introspect(client, _live_conf(world), token)["active"] is True


def test_test_client_credentials_stay_in_the_test_account(client, world, pair):
    """Client credentials: the test client's token is for the test account in test mode,
    and aid:<live account> is invalid_scope."""
    auth = basic(pair.conf.client_id, pair.conf.secret)
    own = client.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=auth)
    assert own.status_code == 200
    _, claims = jwt_parts(own.get_json()["access_token"])
    assert (claims["aid"], claims["mode"]) == (world.test_id, "test")
    live = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": f"aid:{world.live_id}"},
        headers=auth,
    )
    assert live.status_code == 400 and _error(live) == "invalid_scope"


def test_userinfo_refuses_a_live_token_of_a_test_client(app, client, world):
    """Userinfo: a live login's access token issued to a test client reads nothing."""
    _, access = _legacy_tokens(app, world.test_public_id, world.alice_id, world.live_id)
    response = client.get("/oauth/userinfo", headers=bearer(access))
    assert response.status_code == 401
    assert "preferred_username" not in response.get_json()


@pytest.mark.parametrize("direction", ["test client, live prt", "live client, test prt"])
def test_publishable_token_of_the_other_mode_is_refused(client, world, direction):
    """A publishable token with a client of the paired account gives no guest token."""
    if direction.startswith("test"):
        client_id, prt = world.test_public_id, world.live_prt
    else:
        client_id, prt = world.public_id, world.test_prt
    response = refresh(client, prt, client_id)
    assert response.status_code == 400 and _error(response) == "invalid_grant"


# ---------------------------------------------------------------- finding 9: test identities


def _sign_up_in_test_account(client: FlaskClient, world: World, username: str) -> None:
    """Anyone may: a guest token from the public test publishable token, then sign-up."""
    guest = guest_token(client, world.test_prt)
    attributes = {"username": username, "password": PASSWORD, "email": "owner@acme.example"}
    response = client.post(
        "/v1/users",
        data=json.dumps({"data": {"type": "User", "attributes": attributes}}),
        content_type=MEDIA,
        headers=bearer(guest),
    )
    assert response.status_code == 201, response.get_data(as_text=True)


def test_live_app_does_not_sign_in_a_test_account_impostor(app, web, browser, oidc_world):
    """Finding 9: someone signs up `a_owner` in the test account; through a live app's
    hosted flow with aid=<test account> the login is refused, and a browser already
    signed in to the test account gets no code from the live app."""
    base = oidc_world.base
    make_user(app, base.live_id, "a_owner", role="owner", email="owner@acme.example")
    _sign_up_in_test_account(app.test_client(), base, "a_owner")
    page = _login_page(base.test_id, oidc_world.first_party_id)
    answer = submit(browser, page, {"username": "a_owner", "password": PASSWORD})
    assert answer.status_code == 401
    with app.app_context():
        impostor = db.session.scalar(
            select(User.id).where(User.account_id == base.test_id, User.username == "a_owner")
        )
    assert impostor
    sign_in(web, browser, impostor, base.test_id)
    response, _ = _authorize(browser, oidc_world.first_party_id)
    assert urlsplit(response.headers["Location"]).path == "/login"
    assert "code" not in query_of(response)


def test_id_token_and_userinfo_carry_aid_and_mode(web, browser, oidc_world, pair):
    """Finding 9: the ID token and userinfo say the account and mode of the login, live
    for the live app's user and test for the test app's."""
    base = oidc_world.base
    cases = [
        (base.alice_id, base.live_id, oidc_world.first_party_id, "live"),
        (base.tess_id, base.test_id, pair.spa.client_id, "test"),
    ]
    for user_id, account_id, client_id, mode in cases:
        sign_in(web, browser, user_id, account_id)
        response, verifier = _authorize(browser, client_id)
        token = exchange(browser, query_of(response)["code"], verifier, client_id)
        assert token.status_code == 200, token.get_data(as_text=True)
        body = token.get_json()
        claims = _id_claims(browser, body["id_token"])
        assert (claims["sub"], claims["aid"], claims["mode"]) == (user_id, account_id, mode)
        info = browser.get("/oauth/userinfo", headers=bearer(body["access_token"])).get_json()
        assert (info["sub"], info["aid"], info["mode"]) == (user_id, account_id, mode)


def test_discovery_lists_aid_and_mode(client):
    """Discovery's claims_supported names aid and mode, so relying parties can ask."""
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert {"aid", "mode"} <= set(meta["claims_supported"])


def test_live_password_grant_cannot_log_a_test_user_in(client, world):
    """A live client with aid:<test account> answers like a wrong password for a test
    user (the password grant follows the same rule as the hosted flow)."""
    response = password_grant(client, world, "tess", aid=world.test_id, client_id=world.public_id)
    assert response.status_code == 400 and response.get_json() == BAD_CREDENTIALS


def test_live_user_may_still_switch_to_the_test_account(client, world, pair):
    """Kept: a live user's refresh token through the live client gives a token for the
    paired test account (aid and mode test), which userinfo accepts; introspection shows
    it to the test account's client only (it is a test-mode token)."""
    value = login(client, world)["refresh_token"]
    response = refresh(client, value, world.public_id, scope=f"aid:{world.test_id}")
    assert response.status_code == 200, response.get_data(as_text=True)
    access = response.get_json()["access_token"]
    _, claims = jwt_parts(access)
    assert (claims["aid"], claims["mode"], claims["sub"]) == (world.test_id, "test", world.alice_id)
    info = client.get("/oauth/userinfo", headers=bearer(access)).get_json()
    assert (info["aid"], info["mode"]) == (world.test_id, "test")
    assert _introspect(client, _live_conf(world), access) == {"active": False}
    assert _introspect(client, pair.conf, access)["mode"] == "test"


# ---------------------------------------------------------------- global users, test clients


def _password(client: FlaskClient, client_id: str, username: str, aid: str | None) -> Any:
    """A password grant with exactly this aid (none: a global login)."""
    form = {"grant_type": "password", "username": username, "password": PASSWORD}
    return client.post(
        "/oauth/token",
        data={**form, "client_id": client_id, **({"scope": f"aid:{aid}"} if aid else {})},
    )


def test_global_user_through_a_test_client_only_as_a_test_member(app, client, world):
    """A global user may use a test client only signed in to the test account as its
    member (a test-mode token); a global login (no aid, live mode) is refused there but
    still works through the live client."""
    gina = make_user(app, None, "gina", role="owner", member_of={world.live_id: "owner"})
    bare = _password(client, world.test_public_id, "gina", None)
    assert bare.status_code == 400 and bare.get_json() == BAD_CREDENTIALS
    not_member = _password(client, world.test_public_id, "gina", world.test_id)
    assert not_member.status_code == 400 and not_member.get_json() == BAD_CREDENTIALS
    with app.app_context():
        test = db.session.get(Account, world.test_id)
        users.add_member(test, db.session.get(User, gina), "owner")
    member = _password(client, world.test_public_id, "gina", world.test_id)
    assert member.status_code == 200, member.get_data(as_text=True)
    _, claims = jwt_parts(member.get_json()["access_token"])
    assert (claims["sub"], claims["aid"], claims["mode"]) == (gina, world.test_id, "test")
    live = _password(client, world.public_id, "gina", None)
    assert live.status_code == 200, live.get_data(as_text=True)
    _, claims = jwt_parts(live.get_json()["access_token"])
    assert (claims["aid"], claims["mode"]) == (None, "live")


def test_global_member_of_the_test_account_through_a_test_app(app, web, browser, oidc_world, pair):
    """In the hosted flow a global user's login counts for a test app only as a member
    of the test account; the ID token then says aid=<test account>, mode test."""
    base = oidc_world.base
    gus = make_user(app, None, "gus", role="owner", member_of={base.live_id: "owner"})
    sign_in(web, browser, gus, None)
    response, _ = _authorize(browser, pair.spa.client_id)
    assert urlsplit(response.headers["Location"]).path == "/login"
    with app.app_context():
        test = db.session.get(Account, base.test_id)
        users.add_member(test, db.session.get(User, gus), "customer")
    response, verifier = _authorize(browser, pair.spa.client_id)
    token = exchange(browser, query_of(response)["code"], verifier, pair.spa.client_id)
    claims = _id_claims(browser, token.get_json()["id_token"])
    assert (claims["sub"], claims["aid"], claims["mode"]) == (gus, base.test_id, "test")
