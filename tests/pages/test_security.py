"""Security settings pages: change password, TOTP setup, recovery codes, disabling two-step
login, app consents, sign out everywhere and login history, through the test client with
CSRF on; every refusal leaves the state as it was."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from factories import PASSWORD, make_totp_user, make_user
from oauth_helpers import login, refresh
from pages_helpers import csrf, recovery_codes, signed_in, submit

from authserver.identity import consents, twofactor
from authserver.platform.extensions import db, passwords
from authserver.platform.models import OAuthClient, RecoveryCode, User

NEW_PASSWORD = "a-brand-new-passphrase"
CODE_RE = re.compile(r"<code>([a-z0-9]{4}(?:-[a-z0-9]{4}){3})</code>")
SECRET_RE = re.compile(r'<code id="totp-secret">([A-Z2-7 ]+)</code>')


def _sign_in(client, world, username="alice"):
    response = submit(
        client, f"/login?aid={world.live_id}", {"username": username, "password": PASSWORD}
    )
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    return response


def _sign_in_with_recovery(client, world, username, code):
    _sign_in(client, world, username)
    response = submit(client, "/login/recovery", {"recovery_code": code})
    assert response.status_code == 303
    assert signed_in(client)


def _user(app, user_id) -> User:
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        db.session.expunge(user)
        return user


def _password_is(app, user_id, password) -> bool:
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        return passwords().verify(user.password_hash, password)


def _unused_codes(app, user_id) -> int:
    with app.app_context():
        return len(
            db.session.scalars(
                db.select(RecoveryCode).where(
                    RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
                )
            ).all()
        )


def _next_code(totp) -> str:
    """The next step's code: accepted (+-1 step) and not yet spent by a login."""
    return totp.at(time.time() + 30)


# --- signed-in only --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/account/security",
        "/account/security/password",
        "/account/security/totp",
        "/account/security/totp/confirm",
        "/account/security/recovery-codes",
        "/account/security/tfa/disable",
        "/account/security/history?page=2",
    ],
)
def test_pages_send_strangers_to_the_login_page(web, world, path):
    """Not signed in: a 303 to /login whose `next` comes back to the page asked for."""
    response = web.test_client().get(path)
    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == [path]


def test_post_without_login_changes_nothing(web, world):
    """A stranger's POST to sign out everywhere is sent to login; no token generation moves."""
    before = _user(web, world.alice_id).token_generation
    client = web.test_client()
    token = csrf(client.get("/login"))
    response = client.post("/account/security/sign-out-everywhere", data={"csrf_token": token})
    assert response.status_code == 303 and "/login" in response.headers["Location"]
    assert response.headers["Location"] == "/login?next=/account/security"  # a POST can't return
    assert _user(web, world.alice_id).token_generation == before


def test_overview_lists_sections(web, world):
    """The security page shows password, two-step login, apps, sign out and sign-ins."""
    client = web.test_client()
    _sign_in(client, world)
    html = client.get("/account/security").get_data(as_text=True)
    for words in ("Change password", "Set up an authenticator app", "Sign out everywhere"):
        assert words in html
    assert "Recent sign-ins" in html and "Password" in html


# --- change password -------------------------------------------------------------------


def test_change_password_signs_out_everywhere(web, world):
    """Right current password: the new one works, the old one not, every login ends and
    the login page says why."""
    client, other = web.test_client(), web.test_client()
    _sign_in(client, world)
    _sign_in(other, world)
    tokens = login(web.test_client(), world)
    response = submit(
        client,
        "/account/security/password",
        {"current_password": PASSWORD, "password": NEW_PASSWORD, "confirmation": NEW_PASSWORD},
    )
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/login")
    assert "signed out everywhere" in client.get(response.headers["Location"]).get_data(
        as_text=True
    )
    assert _password_is(web, world.alice_id, NEW_PASSWORD)
    assert not signed_in(client) and not signed_in(other)
    assert refresh(web.test_client(), tokens["refresh_token"], world.public_id).status_code == 400


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            {"current_password": "wrong-password!", "password": NEW_PASSWORD},
            "The current password is not right.",
        ),
        (
            {"current_password": PASSWORD, "password": NEW_PASSWORD, "confirmation": "other-one"},
            "The two passwords are not the same.",
        ),
        ({"current_password": PASSWORD, "password": "short"}, "Use at least 8 characters."),
        ({"current_password": PASSWORD, "password": "password"}, "too common"),
    ],
)
def test_change_password_refusals_change_nothing(web, world, data, error):
    """Wrong current password, mismatch, short or common password: 422 with the error at
    the field; the old password still works and the browser stays signed in."""
    client = web.test_client()
    _sign_in(client, world)
    data = {"confirmation": data["password"], **data}
    response = submit(client, "/account/security/password", data)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert error in html and 'aria-invalid="true"' in html
    assert _password_is(web, world.alice_id, PASSWORD)
    assert signed_in(client)


def test_change_password_without_csrf_is_refused(web, world):
    """No CSRF token: 400, the password is unchanged and the login goes on."""
    client = web.test_client()
    _sign_in(client, world)
    response = client.post(
        "/account/security/password",
        data={"current_password": PASSWORD, "password": NEW_PASSWORD, "confirmation": NEW_PASSWORD},
    )
    assert response.status_code == 400
    assert _password_is(web, world.alice_id, PASSWORD)
    assert signed_in(client)


# --- TOTP setup --------------------------------------------------------------------------


def _start_setup(client):
    response = submit(client, "/account/security/totp", {"password": PASSWORD})
    assert response.status_code == 303
    assert response.headers["Location"] == "/account/security/totp/confirm"
    page = client.get("/account/security/totp/confirm")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    match = SECRET_RE.search(html)
    assert match, html[:500]
    return html, match.group(1).replace(" ", "")


def test_totp_setup_shows_qr_and_codes_once(web, world):
    """Password, then the QR page (inline SVG and the secret in text), then a code from
    the app turns TOTP on and shows 10 recovery codes once; they are not shown again."""
    import pyotp

    client = web.test_client()
    _sign_in(client, world)
    html, secret = _start_setup(client)
    assert "<svg" in html and "<script" not in html
    response = submit(
        client,
        "/account/security/totp/confirm",
        {"code": pyotp.TOTP(secret).now()},
    )
    assert response.status_code == 200
    assert "no-store" in response.headers["Cache-Control"]
    codes = CODE_RE.findall(response.get_data(as_text=True))
    assert len(codes) == 10
    user = _user(web, world.alice_id)
    assert user.auth_method == "tfa_totp" and user.totp_secret == secret
    again = client.get("/account/security/totp/confirm")
    assert again.status_code == 303  # the setup is spent: nothing to show
    for page in (client.get("/account/security"), client.get(again.headers["Location"])):
        assert not CODE_RE.findall(page.get_data(as_text=True))
        assert codes[0] not in page.get_data(as_text=True)


def test_totp_setup_wrong_password_starts_nothing(web, world):
    """A wrong password: 422 at the password field and no pending setup."""
    client = web.test_client()
    _sign_in(client, world)
    response = submit(client, "/account/security/totp", {"password": "not-my-password"})
    assert response.status_code == 422
    assert "The password is wrong." in response.get_data(as_text=True)
    assert client.get("/account/security/totp/confirm").status_code == 303


def test_totp_setup_wrong_code_keeps_user_simple(web, world):
    """A wrong confirming code: 422 next to the field, the QR code still shown, and the
    user still has no second factor."""
    import pyotp

    client = web.test_client()
    _sign_in(client, world)
    _, secret = _start_setup(client)
    right = pyotp.TOTP(secret)
    wrong = next(c for c in ("000000", "111111", "222222") if c not in _window(right))
    response = submit(client, "/account/security/totp/confirm", {"code": wrong})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "The code is wrong or expired." in html and "<svg" in html
    user = _user(web, world.alice_id)
    assert user.auth_method == "simple" and user.totp_secret is None


def _window(totp) -> set[str]:
    now = time.time()
    return {totp.at(now + d) for d in (-60, -30, 0, 30, 60)}


def test_totp_confirm_without_csrf_is_refused(web, world):
    """No CSRF token on the confirming POST: 400 and TOTP stays off."""
    import pyotp

    client = web.test_client()
    _sign_in(client, world)
    _, secret = _start_setup(client)
    response = client.post(
        "/account/security/totp/confirm", data={"code": pyotp.TOTP(secret).now()}
    )
    assert response.status_code == 400
    assert _user(web, world.alice_id).auth_method == "simple"


# --- recovery codes ------------------------------------------------------------------------


def test_regenerate_recovery_codes(web, world):
    """A current app code gives 10 new codes; the old ones stop working."""
    user_id, totp = make_totp_user(web, world.live_id, "tina")
    old = recovery_codes(web, user_id)
    client = web.test_client()
    _sign_in_with_recovery(client, world, "tina", old[0])
    response = submit(client, "/account/security/recovery-codes", {"code": _next_code(totp)})
    assert response.status_code == 200
    new = CODE_RE.findall(response.get_data(as_text=True))
    assert len(new) == 10 and not set(new) & set(old)
    assert _unused_codes(web, user_id) == 10
    with web.app_context():
        user = db.session.get(User, user_id)
        with pytest.raises(Exception):  # noqa: B017 - InvalidOtp: the old set is gone
            twofactor.use_recovery_code(user, old[1])


def test_regenerate_with_wrong_code_keeps_old_codes(web, world):
    """A wrong code: 422 at the field, no new codes shown, the old unused ones remain."""
    user_id, totp = make_totp_user(web, world.live_id, "tina")
    old = recovery_codes(web, user_id)
    client = web.test_client()
    _sign_in_with_recovery(client, world, "tina", old[0])
    wrong = next(c for c in ("000000", "111111", "222222") if c not in _window(totp))
    response = submit(client, "/account/security/recovery-codes", {"code": wrong})
    assert response.status_code == 422
    assert not CODE_RE.findall(response.get_data(as_text=True))
    assert _unused_codes(web, user_id) == 9


def test_download_gives_a_text_file_of_the_codes(web, world):
    """The download answers a text/plain attachment with the posted codes, dropping anything
    that is not a recovery code."""
    client = web.test_client()
    _sign_in(client, world)
    token = csrf(client.get("/account/security"))
    # The download form carries its own prefix; its token is the session's CSRF token.
    response = client.post(
        "/account/security/recovery-codes/download",
        data={
            "download-csrf_token": token,
            "code": ["abcd-efgh-jkmn-pqrs", "<script>alert(1)</script>"],
        },
    )
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    body = response.get_data(as_text=True)
    assert "abcd-efgh-jkmn-pqrs" in body and "script" not in body


# --- disable two-step login ------------------------------------------------------------------


def test_disable_tfa_with_password_and_recovery_code(web, world):
    """Password and a recovery code turn TOTP off: the secret and codes are gone."""
    user_id, _ = make_totp_user(web, world.live_id, "tina")
    codes = recovery_codes(web, user_id)
    client = web.test_client()
    _sign_in_with_recovery(client, world, "tina", codes[0])
    response = submit(
        client, "/account/security/tfa/disable", {"password": PASSWORD, "recovery_code": codes[1]}
    )
    assert response.status_code == 303 and response.headers["Location"] == "/account/security"
    assert "Two-step login is off." in client.get("/account/security").get_data(as_text=True)
    user = _user(web, user_id)
    assert user.auth_method == "simple" and user.totp_secret is None
    assert _unused_codes(web, user_id) == 0


@pytest.mark.parametrize(
    ("password", "field", "error"),
    [
        ("wrong-password!", "code", "The password is wrong."),
        (PASSWORD, "code", "The code is wrong or expired."),
        (PASSWORD, "recovery_code", "The recovery code is wrong or was used already."),
        (PASSWORD, None, "Enter a code from your authenticator app or a recovery code."),
    ],
)
def test_disable_tfa_refusals_keep_it_on(web, world, password, field, error):
    """Wrong password, wrong code, wrong recovery code or no code: 422 with the error, and
    TOTP stays on with its codes."""
    user_id, totp = make_totp_user(web, world.live_id, "tina")
    codes = recovery_codes(web, user_id)
    client = web.test_client()
    _sign_in_with_recovery(client, world, "tina", codes[0])
    data = {"password": password}
    if field == "code":
        data["code"] = next(c for c in ("000000", "111111", "222222") if c not in _window(totp))
    elif field == "recovery_code":
        data["recovery_code"] = "aaaa-bbbb-cccc-dddd"
    response = submit(client, "/account/security/tfa/disable", data)
    assert response.status_code == 422
    assert error in response.get_data(as_text=True)
    user = _user(web, user_id)
    assert user.auth_method == "tfa_totp" and user.totp_secret
    assert _unused_codes(web, user_id) == 9


def test_disable_tfa_without_csrf_is_refused(web, world):
    """No CSRF token: 400 and two-step login stays on."""
    user_id, _ = make_totp_user(web, world.live_id, "tina")
    codes = recovery_codes(web, user_id)
    client = web.test_client()
    _sign_in_with_recovery(client, world, "tina", codes[0])
    response = client.post(
        "/account/security/tfa/disable", data={"password": PASSWORD, "recovery_code": codes[1]}
    )
    assert response.status_code == 400
    assert _user(web, user_id).auth_method == "tfa_totp"


# --- app consents ---------------------------------------------------------------------------


def _client_pk(app, client_id) -> str:
    with app.app_context():
        pk = db.session.scalar(db.select(OAuthClient.id).where(OAuthClient.client_id == client_id))
        assert pk
        return str(pk)


def _consent(app, user_id, client_pk, scope="openid email") -> None:
    with app.app_context():
        consents.remember(user_id, client_pk, scope)


def _has_consent(app, user_id, client_pk) -> bool:
    with app.app_context():
        return consents.covers(user_id, client_pk, "openid")


def test_consents_listed_and_revoked(web, world):
    """The page lists the app by name with its scopes in words; revoking forgets it."""
    pk = _client_pk(web, world.conf_id)
    _consent(web, world.alice_id, pk)
    client = web.test_client()
    _sign_in(client, world)
    html = client.get("/account/security").get_data(as_text=True)
    assert "Backend" in html and "See your email address" in html
    response = submit(
        client, f"/account/security/apps/{pk}/revoke", {}, token_from="/account/security"
    )
    assert response.status_code == 303
    assert not _has_consent(web, world.alice_id, pk)
    assert "Backend" not in client.get("/account/security").get_data(as_text=True)


def test_revoking_another_users_consent_is_404(web, world):
    """A consent id that is not the signed-in user's: 404, and the other user's consent stays."""
    pk = _client_pk(web, world.other_id_client)
    bob_id = make_user(web, None, "bob")
    _consent(web, bob_id, pk)
    client = web.test_client()
    _sign_in(client, world)
    response = submit(
        client, f"/account/security/apps/{pk}/revoke", {}, token_from="/account/security"
    )
    assert response.status_code == 404
    assert _has_consent(web, bob_id, pk)


def test_revoke_without_csrf_is_refused(web, world):
    """No CSRF token: 400 and the consent is kept."""
    pk = _client_pk(web, world.conf_id)
    _consent(web, world.alice_id, pk)
    client = web.test_client()
    _sign_in(client, world)
    assert client.post(f"/account/security/apps/{pk}/revoke").status_code == 400
    assert _has_consent(web, world.alice_id, pk)


# --- sign out everywhere -----------------------------------------------------------------


def test_sign_out_everywhere_ends_browsers_and_tokens(web, world):
    """Both browsers' logins end, and the refresh token an app holds stops working."""
    client, other = web.test_client(), web.test_client()
    _sign_in(client, world)
    _sign_in(other, world)
    tokens = login(web.test_client(), world)
    response = submit(
        client, "/account/security/sign-out-everywhere", {}, token_from="/account/security"
    )
    assert response.status_code == 303 and response.headers["Location"].startswith("/login")
    assert "signed out on every device" in client.get(response.headers["Location"]).get_data(
        as_text=True
    )
    assert not signed_in(client) and not signed_in(other)
    assert refresh(web.test_client(), tokens["refresh_token"], world.public_id).status_code == 400


def test_sign_out_everywhere_without_csrf_is_refused(web, world):
    """No CSRF token: 400 and every login goes on."""
    client = web.test_client()
    _sign_in(client, world)
    before = _user(web, world.alice_id).token_generation
    assert client.post("/account/security/sign-out-everywhere").status_code == 400
    assert signed_in(client)
    assert _user(web, world.alice_id).token_generation == before


def test_sign_out_everywhere_by_get_is_refused(web, world):
    """GET is not a way to sign out: 405 and the login goes on."""
    client = web.test_client()
    _sign_in(client, world)
    assert client.get("/account/security/sign-out-everywhere").status_code == 405
    assert signed_in(client)


# --- login history --------------------------------------------------------------------------


def test_login_history_newest_first_and_paginated(web, world):
    """25 sign-ins (one failed): page 1 holds the newest 20 with IP and device, page 2 the rest."""
    for n in range(24):
        submit(
            web.test_client(),
            f"/login?aid={world.live_id}",
            {"username": "alice", "password": PASSWORD if n else "wrong-password"},
        )
    client = web.test_client()
    client.environ_base["HTTP_USER_AGENT"] = "NewestBrowser/9"
    _sign_in(client, world)
    first = client.get("/account/security/history").get_data(as_text=True)
    assert first.count('class="item"') == 20
    assert first.index("NewestBrowser/9") < first.lower().index("werkzeug/")
    assert "127.0.0.1" in first and "Page 1 of 2" in first
    second = client.get("/account/security/history?page=2").get_data(as_text=True)
    assert second.count('class="item"') == 5
    assert "Failed" in second and "Failed" not in first
    for junk in ("0", "-1", "abc", "99999999999"):
        assert client.get(f"/account/security/history?page={junk}").status_code == 200


@pytest.mark.parametrize(
    ("language", "words"),
    [("es", "Cerrar sesión en todas partes"), ("fr", "Se déconnecter partout")],
)
def test_security_page_in_spanish_and_french(web, world, language, words):
    """The browser's Accept-Language picks the page's language."""
    client = web.test_client()
    _sign_in(client, world)
    html = client.get("/account/security", headers={"Accept-Language": language}).get_data(
        as_text=True
    )
    assert words in html and "Sign out everywhere" not in html
