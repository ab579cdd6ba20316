"""The hosted login's known-device cookie (OWASP device cookies): what the cookie is, the
owner passing the per-user lockout that strangers caused, strangers staying locked out,
and a device's own lockout."""

from __future__ import annotations

from collections.abc import Callable

from factories import PASSWORD, World, make_totp_user
from flask import Flask
from flask.testing import FlaskClient
from oauth_helpers import password_grant
from pages_helpers import csrf, signed_in
from werkzeug.test import TestResponse

from authserver.identity.login import DEVICE_FAILURES, FAILURES_PER_USER

WRONG = "not-the-password"
COOKIE = "authserver_device"


def page_login(
    client: FlaskClient,
    world: World,
    *,
    username: str = "alice",
    password: str = PASSWORD,
    ip: str = "127.0.0.1",
    base_url: str | None = None,
) -> TestResponse:
    """The login form from `ip`: GET it for the CSRF token, then POST it."""
    path = f"/login?aid={world.live_id}"
    where = {"environ_base": {"REMOTE_ADDR": ip}} | ({"base_url": base_url} if base_url else {})
    form = client.get(path, **where)
    data = {"csrf_token": csrf(form), "username": username, "password": password}
    return client.post(path, data=data, **where)


def exhaust_per_user_limit(client: FlaskClient, world: World, username: str = "alice") -> None:
    """Strangers (the token endpoint, same throttle) spend the username's all-IP budget."""
    for i in range(FAILURES_PER_USER):
        response = password_grant(client, world, username, WRONG, ip=f"10.77.0.{i}")
        assert response.status_code == 400


def set_cookie_header(response: TestResponse) -> str:
    headers = [h for h in response.headers.getlist("Set-Cookie") if COOKIE in h.split("=")[0]]
    assert len(headers) == 1, response.headers.getlist("Set-Cookie")
    return headers[0]


def test_successful_login_sets_a_long_lived_httponly_device_cookie(web, world):
    """The cookie comes only with a successful login: HttpOnly, SameSite=Strict, Path=/,
    a year long; not Secure on a plain-http (loopback) issuer."""
    client = web.test_client()
    failed = page_login(client, world, password=WRONG)
    assert not any(COOKIE in h for h in failed.headers.getlist("Set-Cookie"))
    header = set_cookie_header(page_login(client, world))
    attributes = {a.strip().split("=")[0].lower() for a in header.split(";")[1:]}
    assert {"httponly", "path", "max-age", "samesite"} <= attributes
    assert "SameSite=Strict" in header and "Path=/" in header
    assert "Max-Age=31536000" in header
    assert "secure" not in attributes


def test_device_cookie_is_host_only_and_secure_on_an_https_issuer(
    make_app: Callable[..., Flask], app, world
):
    """Served over https, the cookie is `__Host-authserver_device` and Secure."""
    https = make_app(WTF_CSRF_ENABLED=True, ISSUER="https://auth.example.com")
    client = https.test_client()
    base = "https://auth.example.com"
    path = f"/login?aid={world.live_id}"
    form = client.get(path, base_url=base)
    response = client.post(
        path,
        data={"csrf_token": csrf(form), "username": "alice", "password": PASSWORD},
        base_url=base,
        headers={"Referer": base + path, "Origin": base},
    )
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    header = set_cookie_header(response)
    assert header.startswith("__Host-authserver_device=")
    assert "Secure" in header and "Domain" not in header


def test_owner_with_device_cookie_logs_in_while_strangers_are_locked_out(web, world):
    """Finding 17: strangers exhausted alice's all-IP limit; her browser that signed in
    before still signs in with the right password, and a browser without it gets 429."""
    owner, stranger = web.test_client(), web.test_client()
    assert page_login(owner, world).status_code == 303
    owner.post("/logout", data={"csrf_token": csrf(owner.get("/account"))})
    assert not signed_in(owner)
    exhaust_per_user_limit(web.test_client(), world)
    refused = page_login(stranger, world, ip="10.78.0.1")
    assert refused.status_code == 429 and not signed_in(stranger)
    assert page_login(owner, world, ip="10.78.0.2").status_code == 303
    assert signed_in(owner)


def test_device_cookie_carries_the_owner_through_the_second_step(web, world):
    """A TOTP user's known browser passes both steps while strangers have locked the name."""
    _, totp = make_totp_user(web, world.live_id, "tina")
    owner = web.test_client()
    first = page_login(owner, world, username="tina")
    assert first.headers["Location"] == "/login/code"
    code = owner.get("/login/code")
    done = owner.post("/login/code", data={"csrf_token": csrf(code), "code": totp.now()})
    assert done.status_code == 303 and signed_in(owner)
    owner.post("/logout", data={"csrf_token": csrf(owner.get("/account"))})
    exhaust_per_user_limit(web.test_client(), world, "tina")
    again = page_login(owner, world, username="tina", ip="10.79.0.1")
    assert again.headers["Location"] == "/login/code"
    # A wrong code is counted on the device's budget, not refused as a stranger's.
    code = owner.get("/login/code", environ_base={"REMOTE_ADDR": "10.79.0.1"})
    wrong = owner.post(
        "/login/code",
        data={"csrf_token": csrf(code), "code": "000000" if totp.now() != "000000" else "111111"},
        environ_base={"REMOTE_ADDR": "10.79.0.1"},
    )
    assert wrong.status_code == 401


def test_a_stolen_device_cookie_is_locked_out_on_its_own(web, world):
    """DEVICE_FAILURES wrong passwords with the cookie (from many IPs) lock that cookie out,
    even for the right password; those failures do not lock out anyone else."""
    owner = web.test_client()
    page_login(owner, world)
    cookie = owner.get_cookie(COOKIE)
    assert cookie is not None
    thief = web.test_client()
    thief.set_cookie(COOKIE, cookie.value)
    for i in range(DEVICE_FAILURES):
        assert page_login(thief, world, password=WRONG, ip=f"10.80.0.{i}").status_code == 401
    assert page_login(thief, world, ip="10.80.1.1").status_code == 429
    assert page_login(web.test_client(), world, ip="10.80.1.2").status_code == 303


def test_a_garbled_device_cookie_is_ignored(web, world):
    """A cookie we did not sign (or a malformed one) is a stranger's: the login still works,
    and a new cookie replaces it."""
    client = web.test_client()
    client.set_cookie(COOKIE, "garbage.\x7f" + "x" * 600)
    response = page_login(client, world)
    assert response.status_code == 303
    assert set_cookie_header(response).startswith(f"{COOKIE}=")
