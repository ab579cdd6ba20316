"""What the security page's changes end: revoking an app ends its tokens at once, and
changing the second factor (on, re-enrol, off) ends every other browser login and every
token of the user while this browser stays signed in."""

from __future__ import annotations

import re
import time
from typing import Any

import pyotp
from factories import PASSWORD, World, make_totp_user
from flask import Flask
from oauth_helpers import basic, bearer, login, password_grant, refresh, settle_totp_step
from pages_helpers import recovery_codes, signed_in, submit

from authserver.identity import consents
from authserver.platform.extensions import db
from authserver.platform.models import OAuthClient

SECRET_RE = re.compile(r'<code id="totp-secret">([A-Z2-7 ]+)</code>')


def _sign_in(client: Any, world: World, username: str = "alice") -> None:
    response = submit(
        client, f"/login?aid={world.live_id}", {"username": username, "password": PASSWORD}
    )
    assert response.status_code == 303, response.get_data(as_text=True)[:300]


def _sign_in_with_recovery(client: Any, world: World, username: str, code: str) -> None:
    _sign_in(client, world, username)
    assert submit(client, "/login/recovery", {"recovery_code": code}).status_code == 303
    assert signed_in(client)


def _client_pk(app: Flask, client_id: str) -> str:
    with app.app_context():
        pk = db.session.scalar(db.select(OAuthClient.id).where(OAuthClient.client_id == client_id))
        assert pk
        return str(pk)


def _api(app: Flask, token: str) -> int:
    return int(app.test_client().get("/v1/user", headers=bearer(token)).status_code)


def _conf_login(app: Flask, world: World) -> dict[str, Any]:
    """alice's tokens through the confidential client (HTTP Basic)."""
    response = app.test_client().post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": PASSWORD,
            "scope": f"openid aid:{world.live_id}",
        },
        headers=basic(world.conf_id, world.conf_secret),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return dict(response.get_json())


def test_revoking_an_app_ends_its_tokens_at_once(web, world):
    """Revoke on the security page: that app's refresh and access tokens stop working at
    once; another app's tokens of the same user go on."""
    pk = _client_pk(web, world.public_id)
    with web.app_context():
        consents.remember(world.alice_id, pk, "openid")
    app_tokens = login(web.test_client(), world)
    other_app = _conf_login(web, world)
    browser = web.test_client()
    _sign_in(browser, world)
    response = submit(
        browser, f"/account/security/apps/{pk}/revoke", {}, token_from="/account/security"
    )
    assert response.status_code == 303
    assert _api(web, app_tokens["access_token"]) == 401
    assert (
        refresh(web.test_client(), app_tokens["refresh_token"], world.public_id).status_code == 400
    )
    assert _api(web, other_app["access_token"]) == 200
    assert signed_in(browser)
    # The revocation covers tokens issued up to its second (JWT iat has whole seconds):
    # a token of a later second works, if the user lets the app in again.
    time.sleep(1.05 - time.time() % 1)
    again = login(web.test_client(), world)
    assert _api(web, again["access_token"]) == 200


def _others(web: Flask, world: World, username: str = "alice") -> tuple[Any, dict[str, Any]]:
    """Another signed-in browser and a token pair of the same user."""
    other = web.test_client()
    _sign_in(other, world, username)
    tokens = login(web.test_client(), world, username=username)
    return other, tokens


def _assert_others_ended(web: Flask, world: World, other: Any, tokens: dict[str, Any]) -> None:
    assert not signed_in(other)
    assert _api(web, tokens["access_token"]) == 401
    assert refresh(web.test_client(), tokens["refresh_token"], world.public_id).status_code == 400


def _setup_secret(client: Any, data: dict[str, str]) -> str:
    assert submit(client, "/account/security/totp", data).status_code == 303
    html = client.get("/account/security/totp/confirm").get_data(as_text=True)
    match = SECRET_RE.search(html)
    assert match, html[:500]
    return match.group(1).replace(" ", "")


def test_turning_totp_on_ends_other_logins_and_keeps_this_one(web, world):
    """TOTP on through the pages: other browsers and tokens end; this browser stays in."""
    settle_totp_step(margin=5.0)
    browser = web.test_client()
    _sign_in(browser, world)
    other, tokens = _others(web, world)
    secret = _setup_secret(browser, {"password": PASSWORD})
    confirmed = submit(
        browser, "/account/security/totp/confirm", {"code": pyotp.TOTP(secret).now()}
    )
    assert confirmed.status_code == 200
    assert signed_in(browser)
    _assert_others_ended(web, world, other, tokens)


def test_re_enrolling_totp_ends_other_logins_and_keeps_this_one(web, world):
    """A new authenticator app through the pages: the other logins end, this one stays."""
    settle_totp_step(margin=5.0)
    user_id, totp = make_totp_user(web, world.live_id, "tina")
    codes = recovery_codes(web, user_id)
    browser = web.test_client()
    _sign_in_with_recovery(browser, world, "tina", codes[0])
    other = web.test_client()
    _sign_in_with_recovery(other, world, "tina", codes[1])
    response = password_grant(web.test_client(), world, "tina", recovery_code=codes[3])
    assert response.status_code == 200, response.get_data(as_text=True)
    tokens = response.get_json()
    secret = _setup_secret(browser, {"password": PASSWORD, "recovery_code": codes[2]})
    new = pyotp.TOTP(secret)
    assert secret != totp.secret
    confirmed = submit(browser, "/account/security/totp/confirm", {"code": new.now()})
    assert confirmed.status_code == 200
    assert signed_in(browser)
    _assert_others_ended(web, world, other, tokens)


def test_turning_two_step_login_off_ends_other_logins_and_keeps_this_one(web, world):
    """TOTP off through the pages: the other browser ends, this one stays signed in."""
    user_id, _ = make_totp_user(web, world.live_id, "tina")
    codes = recovery_codes(web, user_id)
    browser, other = web.test_client(), web.test_client()
    _sign_in_with_recovery(browser, world, "tina", codes[0])
    _sign_in_with_recovery(other, world, "tina", codes[1])
    response = submit(
        browser, "/account/security/tfa/disable", {"password": PASSWORD, "recovery_code": codes[2]}
    )
    assert response.status_code == 303
    assert signed_in(browser)
    assert not signed_in(other)
