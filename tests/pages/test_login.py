"""Hosted login pages: password step, second step (TOTP, emailed code, recovery code),
CSRF, the safe `next`, the shared throttle, logout, headers and language."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from factories import PASSWORD, make_email_otp_user, make_totp_user
from oauth_helpers import password_grant
from pages_helpers import csrf, emailed_code, login_records, recovery_codes, signed_in, submit

from authserver.identity import login as login_policy


def _login(client, world, username="alice", password=PASSWORD, next_=None):
    path = f"/login?aid={world.live_id}" + (f"&next={quote(next_, safe='')}" if next_ else "")
    return submit(client, path, {"username": username, "password": password})


def test_simple_user_logs_in_and_lands_on_account(web, world):
    """Right password: 303 to /account, which shows who is signed in; a login record is written."""
    client = web.test_client()
    response = _login(client, world)
    assert response.status_code == 303
    assert response.headers["Location"] == "/account"
    page = client.get("/account")
    assert page.status_code == 200 and "alice" in page.get_data(as_text=True)
    assert login_records(web, world.alice_id) == [("password", True)]


def test_login_without_csrf_token_is_refused_and_does_not_log_in(web, world):
    """A POST without the CSRF token (or a forged one) gets 400 and no session login."""
    client = web.test_client()
    client.get("/login")
    for data in ({}, {"csrf_token": "forged.token.value"}):
        response = client.post(
            f"/login?aid={world.live_id}", data={"username": "alice", "password": PASSWORD, **data}
        )
        assert response.status_code == 400
        assert "text/html" in response.content_type
    assert not signed_in(client)
    assert login_records(web, world.alice_id) == []


def test_csrf_token_of_another_session_is_refused(web, world):
    """A token taken from one browser's session does not work in another's."""
    thief, victim = web.test_client(), web.test_client()
    token = csrf(thief.get("/login"))
    victim.get("/login")
    response = victim.post(
        f"/login?aid={world.live_id}",
        data={"csrf_token": token, "username": "alice", "password": PASSWORD},
    )
    assert response.status_code == 400
    assert not signed_in(victim)


def test_foreign_origin_is_refused_even_with_a_token(web, world):
    """A POST whose Origin is another site is refused although its CSRF token is valid."""
    client = web.test_client()
    token = csrf(client.get("/login"))
    response = client.post(
        f"/login?aid={world.live_id}",
        data={"csrf_token": token, "username": "alice", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 400
    assert not signed_in(client)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "null"},
        {"Origin": "null", "Sec-Fetch-Site": "same-origin"},
        {"Origin": "http://localhost.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_null_origin_and_cross_site_posts_are_refused(web, world, headers):
    """`Origin: null` (a sandboxed or no-referrer page's POST) and a browser's cross-site
    Sec-Fetch-Site are refused with a 400 page although the CSRF token is valid."""
    client = web.test_client()
    token = csrf(client.get("/login"))
    response = client.post(
        f"/login?aid={world.live_id}",
        data={"csrf_token": token, "username": "alice", "password": PASSWORD},
        headers=headers,
    )
    assert response.status_code == 400
    assert "did not come from this site" in response.get_data(as_text=True)
    assert not signed_in(client)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "http://localhost"},
        {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
    ],
)
def test_our_own_origin_or_none_is_accepted(web, world, headers):
    """Control: our own Origin (what browsers send under same-origin), or no Origin, signs in."""
    client = web.test_client()
    token = csrf(client.get("/login"))
    response = client.post(
        f"/login?aid={world.live_id}",
        data={"csrf_token": token, "username": "alice", "password": PASSWORD},
        headers=headers,
    )
    assert response.status_code == 303
    assert signed_in(client)


def test_wrong_password_and_unknown_user_look_identical(web, world):
    """A wrong password and an unknown username give the same status and page."""
    client = web.test_client()
    wrong = _login(client, world, password="not-the-password")
    unknown = _login(client, world, username="nobody")
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda r: r.get_data(as_text=True).replace(csrf(r), "").replace("nobody", "alice")  # noqa: E731
    assert strip(wrong) == strip(unknown)
    assert "The username or password is wrong." in wrong.get_data(as_text=True)
    assert 'aria-describedby="password-error"' in wrong.get_data(as_text=True)
    assert not signed_in(client)


def test_totp_user_needs_the_second_step(web, world):
    """A TOTP user goes to /login/code after the password, and is signed in only with the code."""
    user_id, totp = make_totp_user(web, world.live_id, "tina")
    client = web.test_client()
    first = _login(client, world, username="tina")
    assert first.status_code == 303 and first.headers["Location"] == "/login/code"
    assert not signed_in(client)
    page = client.get("/login/code")
    assert 'for="code"' in page.get_data(as_text=True)
    wrong = client.post("/login/code", data={"csrf_token": csrf(page), "code": "000000"})
    assert wrong.status_code == 401 and not signed_in(client)
    page = client.get("/login/code")
    done = client.post("/login/code", data={"csrf_token": csrf(page), "code": totp.now()})
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    assert signed_in(client)
    assert ("password+otp", True) in login_records(web, user_id)


def test_session_cookie_is_renewed_at_each_step(web, world):
    """The CSRF token (the session) changes after the password and after the code."""
    _, totp = make_totp_user(web, world.live_id, "tina")
    client = web.test_client()
    before = csrf(client.get(f"/login?aid={world.live_id}"))
    _login(client, world, username="tina")
    page = client.get("/login/code")
    middle = csrf(page)
    client.post("/login/code", data={"csrf_token": middle, "code": totp.now()})
    after = csrf(client.get("/login"))
    assert len({before, middle, after}) == 3


def test_pre_login_cookie_replayed_is_not_signed_in(web, world):
    """A session cookie captured before the login stays anonymous after the login (no fixation)."""
    client = web.test_client()
    client.get("/login")
    old_cookie = client.get_cookie("authserver_session").value
    _login(client, world)
    assert signed_in(client)
    other = web.test_client()
    other.set_cookie("authserver_session", old_cookie)
    assert not signed_in(other)


def test_email_code_user_logs_in_with_the_emailed_code(web, world):
    """An email-OTP user gets a code by email at the password step and logs in with it."""
    user_id = make_email_otp_user(web, world.live_id, "emma")
    client = web.test_client()
    _login(client, world, username="emma")
    page = client.get("/login/code")
    assert "e***" in page.get_data(as_text=True) or "@" in page.get_data(as_text=True)
    code = emailed_code(web)
    done = client.post("/login/code", data={"csrf_token": csrf(page), "code": code})
    assert done.status_code == 303 and signed_in(client)
    assert ("password+otp", True) in login_records(web, user_id)


def test_send_a_new_code_respects_the_cooldown(web, world):
    """'Send a new code' right after the first code sends nothing and says when it can."""
    make_email_otp_user(web, world.live_id, "emma")
    client = web.test_client()
    _login(client, world, username="emma")
    outbox = web.extensions["authserver.outbox"]
    sent_before = len(outbox.of("email"))
    page = client.get("/login/code")
    response = client.post("/login/code/resend", data={"resend-csrf_token": csrf(page)})
    assert response.status_code == 200
    assert "A new code can be sent in" in response.get_data(as_text=True)
    assert len(outbox.of("email")) == sent_before


def test_send_a_new_code_sends_when_no_cooldown(web, world, make_app):
    """With the cooldown over (0 here), 'send a new code' emails a new code that works."""
    app = make_app(WTF_CSRF_ENABLED=True, OTP_RESEND_COOLDOWN=0)
    make_email_otp_user(app, world.live_id, "emma")
    client = app.test_client()
    _login(client, world, username="emma")
    first = emailed_code(app)
    page = client.get("/login/code")
    response = client.post("/login/code/resend", data={"resend-csrf_token": csrf(page)})
    assert "We sent a new code." in response.get_data(as_text=True)
    second = emailed_code(app)
    assert len(app.extensions["authserver.outbox"].of("email")) == 2
    page = client.get("/login/code")
    if first != second:
        stale = client.post("/login/code", data={"csrf_token": csrf(page), "code": first})
        assert stale.status_code == 401
    client.post("/login/code", data={"csrf_token": csrf(page), "code": second})
    assert signed_in(client)


def test_recovery_code_finishes_the_login_once(web, world):
    """A recovery code works instead of the TOTP code, and only once."""
    user_id, _ = make_totp_user(web, world.live_id, "tina")
    codes = recovery_codes(web, user_id)
    client = web.test_client()
    _login(client, world, username="tina")
    done = submit(client, "/login/recovery", {"recovery_code": codes[0]})
    assert done.status_code == 303 and signed_in(client)
    again = web.test_client()
    _login(again, world, username="tina")
    reused = submit(again, "/login/recovery", {"recovery_code": codes[0]})
    assert reused.status_code == 401 and not signed_in(again)
    assert ("password+recovery_code", True) in login_records(web, user_id)


@pytest.mark.parametrize("path", ["/account", "/account?x=1"])
def test_account_sends_strangers_to_the_login_page(web, path):
    """Not signed in, /account answers a 303 to the login page that comes back to /account."""
    response = web.test_client().get(path)
    assert response.status_code == 303
    assert response.headers["Location"] == "/login?next=/account"


@pytest.mark.parametrize("path", ["/account", "/login/code", "/login/recovery"])
def test_second_step_cannot_be_skipped(web, world, path):
    """After the password alone, later URLs do not sign in (nor does /login/code without one)."""
    make_totp_user(web, world.live_id, "tina")
    client = web.test_client()
    _login(client, world, username="tina")
    client.get(path)
    assert not signed_in(client)
    stranger = web.test_client()
    response = stranger.get("/login/code")
    assert response.status_code == 303 and response.headers["Location"].startswith("/login")


def test_second_step_expires(web, world, make_app):
    """A pending second step older than OTP_LIFETIME sends the person back to the password."""
    app = make_app(WTF_CSRF_ENABLED=True)
    make_totp_user(app, world.live_id, "tina")
    client = app.test_client()
    _login(client, world, username="tina")
    with client.session_transaction() as session:
        session["pending_login"] = {**session["pending_login"], "exp": 1}
    response = client.get("/login/code")
    assert response.status_code == 303 and response.headers["Location"].startswith("/login?")
    assert not signed_in(client)


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "https://evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
        "/\r\nLocation: https://evil.example",
        "\t//evil.example",
    ],
)
def test_next_cannot_leave_the_server(web, world, target):
    """Open-redirect attempts in `next` are ignored: the login lands on /account."""
    client = web.test_client()
    response = _login(client, world, next_=target)
    assert response.status_code == 303
    assert response.headers["Location"] == "/account"


def test_next_relative_path_is_followed_after_the_second_step(web, world):
    """A relative `next` (an authorization request) is where the second step ends."""
    _, totp = make_totp_user(web, world.live_id, "tina")
    client = web.test_client()
    target = "/oauth/authorize?client_id=x&state=abc"
    _login(client, world, username="tina", next_=target)
    done = submit(client, "/login/code", {"code": totp.now()})
    assert done.headers["Location"] == target


def test_throttle_is_shared_with_the_password_grant(web, world):
    """Token-endpoint failures count for the page: past the limit the right password gets 429."""
    client = web.test_client()
    for _ in range(login_policy.FAILURES_PER_IP):
        password_grant(client, world, "alice", "wrong-password")
    response = _login(client, world)
    assert response.status_code == 429 and "Retry-After" in response.headers
    assert not signed_in(client)


def test_logout_by_get_is_refused(web, world):
    """GET /logout is 405 and the person stays signed in."""
    client = web.test_client()
    _login(client, world)
    assert client.get("/logout").status_code == 405
    assert signed_in(client)


def test_logout_without_csrf_is_refused(web, world):
    """POST /logout without the CSRF token is 400 and the person stays signed in."""
    client = web.test_client()
    _login(client, world)
    assert client.post("/logout").status_code == 400
    assert signed_in(client)


def test_logout_by_post_signs_out(web, world):
    """POST /logout with the token signs out: /account sends to the login page again."""
    client = web.test_client()
    _login(client, world)
    response = submit(client, "/logout", {}, token_from="/account")
    assert response.status_code == 303
    assert not signed_in(client)


def test_cookie_copied_before_logout_is_signed_out_after_it(web, world):
    """Logout ends the login on the server, not only in the browser: the signed-in cookie
    replayed afterwards (say, copied off the machine before logout) is no longer signed in
    (OWASP Session Management Cheat Sheet, "Session Expiration")."""
    client = web.test_client()
    _login(client, world)
    signed_in_cookie = client.get_cookie("authserver_session").value
    submit(client, "/logout", {}, token_from="/account")
    other = web.test_client()
    other.set_cookie("authserver_session", signed_in_cookie)
    assert not signed_in(other)


def test_security_headers_on_pages_and_error_pages(web):
    """Login and error pages carry CSP (frame-ancestors 'none'), a same-origin referrer
    policy, nosniff, no-store."""
    client = web.test_client()
    for path in ("/login", "/does-not-exist", "/forgot-password"):
        response = client.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
        assert "text/html" in response.content_type
        body = response.get_data(as_text=True)
        assert "<script" not in body and "style=" not in body


def test_session_cookie_flags(web, world):
    """The session cookie is HttpOnly and SameSite=Lax (Secure is covered by the https test)."""
    client = web.test_client()
    response = client.get("/login")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_https_issuer_makes_the_cookie_secure_and_host_prefixed(world, make_app):
    """With an https issuer the cookie is __Host-, Secure, and pages send HSTS."""
    app = make_app(WTF_CSRF_ENABLED=True, ISSUER="https://login.example")
    response = app.test_client().get("/login", base_url="https://login.example")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-authserver_session=") and "Secure" in cookie
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_https_login_post_works_without_a_referer(world, make_app):
    """No-referrer pages still post over https: the CSRF check does not demand a Referer."""
    app = make_app(WTF_CSRF_ENABLED=True, ISSUER="https://login.example")
    client = app.test_client()
    page = client.get(f"/login?aid={world.live_id}", base_url="https://login.example")
    response = client.post(
        f"/login?aid={world.live_id}",
        data={"csrf_token": csrf(page), "username": "alice", "password": PASSWORD},
        base_url="https://login.example",
    )
    assert response.status_code == 303


@pytest.mark.parametrize(
    ("query", "headers", "expected"),
    [
        ("&ui_locales=fr", {"Accept-Language": "es"}, "Se connecter"),
        ("", {"Accept-Language": "es"}, "Iniciar sesión"),
        ("&next=" + quote("/oauth/authorize?ui_locales=fr", safe=""), {}, "Se connecter"),
        ("", {}, "Sign in"),
    ],
)
def test_page_language(web, world, query, headers, expected):
    """ui_locales (also inside next) wins over Accept-Language, which wins over the default."""
    response = web.test_client().get(f"/login?aid={world.live_id}{query}", headers=headers)
    assert f"<h1>{expected}</h1>" in response.get_data(as_text=True)


def test_account_default_language(web, world):
    """Without ui_locales or Accept-Language the account's default language is used."""
    from authserver.platform.extensions import db
    from authserver.platform.models import Account

    with web.app_context():
        account = db.session.get(Account, world.live_id)
        account.default_locale = "es"
        db.session.commit()
    response = web.test_client().get(f"/login?aid={world.live_id}")
    body = response.get_data(as_text=True)
    assert "<h1>Iniciar sesión</h1>" in body and 'lang="es"' in body
    assert "Acme" in body  # the account's name at the top


def test_api_exemption_does_not_leak_to_pages(web, world):
    """The API's CSRF exemption stays on /v1: page POSTs without a token are still refused."""
    client = web.test_client()
    for path in ("/login", "/forgot-password", "/reset-password", "/verify-email", "/logout"):
        assert client.post(path, data={}).status_code == 400, path
