"""Changing the second factor over /v1 (TOTP on, re-enrol, off, email codes on) ends every
other login of the user: other tokens and browser logins. The token that made the change,
and its refresh token, go on."""

from __future__ import annotations

import json
from typing import Any

import pyotp
import pytest
from factories import PASSWORD, World
from flask import Flask
from oauth_helpers import bearer, login, refresh, settle_totp_step
from pages_helpers import signed_in, submit

from authserver.platform.extensions import db
from authserver.platform.models import User

MEDIA = "application/vnd.api+json"


@pytest.fixture(autouse=True)
def _clear_of_step_end() -> None:
    """Codes are computed for this step and the next: start well inside a 30 s step."""
    settle_totp_step(margin=5.0)


def _post(client: Any, path: str, type_: str, token: str, attributes: dict[str, Any]) -> Any:
    body = {"data": {"type": type_, "attributes": attributes}}
    return client.post(path, data=json.dumps(body), content_type=MEDIA, headers=bearer(token))


def _enrol(
    client: Any, token: str, proof: dict[str, str] | None = None
) -> tuple[pyotp.TOTP, list[str]]:
    """Start and confirm a TOTP setup with `token`: (the app's TOTP, the recovery codes)."""
    started = _post(
        client, "/v1/totp_setups", "TotpSetup", token, {"password": PASSWORD, **(proof or {})}
    )
    assert started.status_code == 201, started.get_data(as_text=True)
    totp = pyotp.TOTP(started.get_json()["data"]["attributes"]["secret"])
    confirmed = _post(
        client, "/v1/totp_confirmations", "TotpConfirmation", token, {"code": totp.now()}
    )
    assert confirmed.status_code == 201, confirmed.get_data(as_text=True)
    return totp, confirmed.get_json()["data"]["attributes"]["recoveryCodes"]


def _login_with(client: Any, world: World, recovery_code: str) -> dict[str, Any]:
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": PASSWORD,
            "client_id": world.public_id,
            "scope": f"openid aid:{world.live_id}",
            "recovery_code": recovery_code,
        },
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return dict(response.get_json())


def _browser(web: Flask, world: World) -> Any:
    browser = web.test_client()
    response = submit(
        browser, f"/login?aid={world.live_id}", {"username": "alice", "password": PASSWORD}
    )
    assert response.status_code == 303
    return browser


def _api(client: Any, token: str) -> int:
    return int(client.get("/v1/user", headers=bearer(token)).status_code)


def _check(client: Any, world: World, mine: dict[str, Any], other: dict[str, Any]) -> None:
    """`mine` (the caller) goes on, access and refresh; `other` is over."""
    assert _api(client, mine["access_token"]) == 200
    assert _api(client, other["access_token"]) == 401
    assert refresh(client, other["refresh_token"], world.public_id).status_code == 400
    renewed = refresh(client, mine["refresh_token"], world.public_id)
    assert renewed.status_code == 200, renewed.get_data(as_text=True)
    assert _api(client, renewed.get_json()["access_token"]) == 200


def test_turning_totp_on_ends_other_logins(web, client, world):
    """TOTP on with token A: token B and a browser login end; A and its refresh go on."""
    mine, other = login(client, world), login(client, world)
    browser = _browser(web, world)
    _enrol(client, mine["access_token"])
    _check(client, world, mine, other)
    assert not signed_in(browser)


def test_re_enrolling_ends_other_logins(web, client, world):
    """A new authenticator app with token A: logins made after the first setup end too."""
    mine = login(client, world)
    old, codes = _enrol(client, mine["access_token"])
    other = _login_with(client, world, codes[0])
    new, _ = _enrol(client, mine["access_token"], {"recoveryCode": codes[1]})
    assert new.secret != old.secret
    _check(client, world, mine, other)


def test_turning_totp_off_ends_other_logins(web, client, world):
    """TOTP off with token A: token B and a browser login end; A goes on."""
    mine = login(client, world)
    _, codes = _enrol(client, mine["access_token"])
    other = _login_with(client, world, codes[0])
    response = _post(
        client,
        "/v1/tfa_disablements",
        "TfaDisablement",
        mine["access_token"],
        {"password": PASSWORD, "recoveryCode": codes[1]},
    )
    assert response.status_code == 204, response.get_data(as_text=True)
    _check(client, world, mine, other)


def test_turning_email_codes_on_ends_other_logins(app, web, client, world):
    """authMethod tfa_email through PATCH /v1/user: the other logins end, the caller's not."""
    with app.app_context():
        user = db.session.get(User, world.alice_id)
        assert user is not None
        user.email, user.email_verified = "alice@example.com", True
        db.session.commit()
    mine, other = login(client, world), login(client, world)
    browser = _browser(web, world)
    body = {
        "data": {
            "type": "User",
            "id": world.alice_id,
            "attributes": {"authMethod": "tfa_email", "currentPassword": PASSWORD},
        }
    }
    response = client.patch(
        "/v1/user", data=json.dumps(body), content_type=MEDIA, headers=bearer(mine["access_token"])
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    _check(client, world, mine, other)
    assert not signed_in(browser)
