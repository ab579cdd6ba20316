"""Passkey pages over HTTP (CSRF on): offered only on a named host, the ceremonies'
options, passwordless sign-in and the second step with a software authenticator, hostile
answers, and the security page's add, rename and remove with their proofs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from factories import PASSWORD, make_user
from pages_helpers import csrf, login_records, signed_in, submit
from passkey_helpers import ISSUER, SoftAuthenticator, enrol
from sqlalchemy import select

from authserver.identity import passkeys
from authserver.platform.extensions import db
from authserver.platform.models import Passkey

OFFER = "Sign in with a passkey"
WHY = "browsers allow them only on a named host"


@pytest.fixture
def pkweb(make_app: Any) -> Any:
    """The pages with CSRF on, at a named-host issuer (passkeys offered)."""
    return make_app(WTF_CSRF_ENABLED=True, ISSUER=ISSUER)


def _options(client: Any, path: str, page: Any) -> Any:
    return client.post(path, data={"csrf_token": csrf(page)})


def _sign_in_with_password(client: Any, world: Any, username: str) -> Any:
    path = f"/login?aid={world.live_id}"
    return submit(client, path, {"username": username, "password": PASSWORD})


def _passwordless(client: Any, world: Any, device: SoftAuthenticator, **sign: Any) -> Any:
    page = client.get(f"/login?aid={world.live_id}")
    options = _options(client, "/login/passkey/options", page)
    assert options.status_code == 200
    answer = device.sign_in(options.get_data(as_text=True), **sign)
    return client.post(
        f"/login/passkey?aid={world.live_id}",
        data={"csrf_token": csrf(page), "credential": answer},
    )


def _keys(app: Any, user_id: str) -> list[Passkey]:
    with app.app_context():
        rows = db.session.scalars(select(Passkey).where(Passkey.user_id == user_id)).all()
        for row in rows:
            db.session.expunge(row)
        return list(rows)


def test_an_ip_address_issuer_offers_no_passkeys_and_says_why(web, world):
    """On http://127.0.0.1 (browsers refuse WebAuthn there) the login and security pages
    show no passkey button and no script but say why; the options endpoint is 404."""
    client = web.test_client()
    page = client.get(f"/login?aid={world.live_id}")
    html = page.get_data(as_text=True)
    assert OFFER not in html and "passkeys.js" not in html and WHY in html
    assert _options(client, "/login/passkey/options", page).status_code == 404
    _sign_in_with_password(client, world, "alice")
    security = client.get("/account/security").get_data(as_text=True)
    assert "Add a passkey" not in security and WHY in security


def test_options_are_json_for_user_verification_and_need_the_csrf_token(pkweb, world):
    """The login page loads the script and a hidden passkey form; its options are
    uncached JSON for this RP ID requiring user verification; without a CSRF token 400."""
    client = pkweb.test_client()
    page = client.get(f"/login?aid={world.live_id}")
    html = page.get_data(as_text=True)
    assert OFFER in html and "/static/passkeys.js" in html and WHY not in html
    assert 'autocomplete="username webauthn"' in html
    answer = _options(client, "/login/passkey/options", page)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    options = json.loads(answer.get_data(as_text=True))
    assert options["rpId"] == "localhost" and options["userVerification"] == "required"
    assert options["allowCredentials"] == []
    assert client.post("/login/passkey/options").status_code == 400


def test_passwordless_sign_in_over_http(app, pkweb, world):
    """A passkey answer to the login page's options signs its user in (303 to /account),
    recorded as `passkey`; the same answer again is refused."""
    device = enrol(pkweb, world.alice_id)
    client = pkweb.test_client()
    page = client.get(f"/login?aid={world.live_id}")
    options = _options(client, "/login/passkey/options", page).get_data(as_text=True)
    answer = device.sign_in(options)
    data = {"csrf_token": csrf(page), "credential": answer}
    done = client.post(f"/login/passkey?aid={world.live_id}", data=data)
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    assert signed_in(client)
    assert login_records(app, world.alice_id)[-1] == ("passkey", True)
    stranger = pkweb.test_client()
    stranger_page = stranger.get(f"/login?aid={world.live_id}")
    replay = {"csrf_token": csrf(stranger_page), "credential": answer}
    assert stranger.post(f"/login/passkey?aid={world.live_id}", data=replay).status_code == 401
    assert not signed_in(stranger)


@pytest.mark.parametrize(
    ("credential", "status"),
    [
        (None, 422),
        ("", 422),
        ("garbage", 401),
        ("{}", 401),
        ('{"id": "AA", "response": {"clientDataJSON": 5}}', 401),
        ("x" * (passkeys.RESPONSE_MAX + 1), 422),
        ("a\x00b", 400),
    ],
    ids=["missing", "empty", "garbage", "empty-object", "mistyped", "oversized", "nul"],
)
def test_hostile_passkey_answers_get_a_4xx_page(pkweb, world, credential, status):
    """Missing, malformed, oversized or NUL-bearing answers to /login/passkey get a 4xx
    HTML page and sign nobody in."""
    client = pkweb.test_client()
    page = client.get(f"/login?aid={world.live_id}")
    data = {"csrf_token": csrf(page)}
    if credential is not None:
        data["credential"] = credential
    answer = client.post(f"/login/passkey?aid={world.live_id}", data=data)
    assert answer.status_code == status
    assert "text/html" in answer.content_type
    assert not signed_in(client)


def test_a_passkey_only_user_answers_the_second_step_with_it(app, pkweb, world):
    """After the password, a user whose second factor is a passkey gets the second step
    with "Use a passkey" and no code field; a bad answer is 401, a good one signs in
    (password+passkey)."""
    device = enrol(pkweb, world.alice_id)
    client = pkweb.test_client()
    first = _sign_in_with_password(client, world, "alice")
    assert first.headers["Location"] == "/login/code"
    page = client.get("/login/code")
    html = page.get_data(as_text=True)
    assert "Use a passkey" in html and 'name="code"' not in html
    token = csrf(page)
    bad = client.post("/login/code/passkey", data={"csrf_token": token, "credential": "{}"})
    assert bad.status_code == 401
    options = client.post("/login/code/passkey/options", data={"csrf_token": token})
    assert [c["type"] for c in options.get_json()["allowCredentials"]] == ["public-key"]
    answer = device.sign_in(options.get_data(as_text=True))
    done = client.post("/login/code/passkey", data={"csrf_token": token, "credential": answer})
    assert done.status_code == 303 and signed_in(client)
    assert login_records(app, world.alice_id)[-1] == ("password+passkey", True)


def test_second_step_options_need_a_pending_login(pkweb):
    """Without a password step behind it, the second step's options are 404."""
    client = pkweb.test_client()
    page = client.get("/login")
    assert _options(client, "/login/code/passkey/options", page).status_code == 404


def test_adding_on_the_security_page_needs_the_password_first(app, pkweb, world):
    """No registration options or form without the password proof; with it, the page's
    options answered by an authenticator add the named passkey."""
    client = pkweb.test_client()
    _sign_in_with_password(client, world, "alice")
    assert client.get("/account/security/passkeys/new").status_code == 303
    security = client.get("/account/security")
    assert _options(client, "/account/security/passkeys/options", security).status_code == 404
    wrong = submit(client, "/account/security/passkeys/add", {"password": "not it"})
    assert wrong.status_code == 422
    right = submit(client, "/account/security/passkeys/add", {"password": PASSWORD})
    assert right.headers["Location"] == "/account/security/passkeys/new"
    form = client.get("/account/security/passkeys/new")
    options = _options(client, "/account/security/passkeys/options", form)
    assert options.get_json()["authenticatorSelection"]["userVerification"] == "required"
    device = SoftAuthenticator()
    made = client.post(
        "/account/security/passkeys/new",
        data={
            "csrf_token": csrf(form),
            "name": "Desk key",
            "credential": device.register(options.get_data(as_text=True)),
        },
    )
    assert made.status_code == 303
    assert [k.name for k in _keys(app, world.alice_id)] == ["Desk key"]


def test_rename_and_remove_on_the_security_page(app, pkweb, world):
    """A bad name changes nothing; a good one renames; removal needs the right password
    and then the passkey no longer signs in; another user's passkey is 404."""
    device = enrol(pkweb, world.alice_id, "Laptop")
    (key,) = _keys(app, world.alice_id)
    other = make_user(app, world.live_id, "bob")
    enrol(pkweb, other, "Bob's")
    (bobs,) = _keys(app, other)

    client = pkweb.test_client()
    _sign_in_with_password(client, world, "alice")
    page = client.get("/login/code")
    token = csrf(page)
    options = client.post("/login/code/passkey/options", data={"csrf_token": token})
    answer = device.sign_in(options.get_data(as_text=True))
    client.post("/login/code/passkey", data={"csrf_token": token, "credential": answer})
    assert signed_in(client)

    token = csrf(client.get("/account/security"))
    rename = f"/account/security/passkeys/{key.id}/rename"
    client.post(rename, data={"csrf_token": token, "name": "bad\x01name"})
    assert _keys(app, world.alice_id)[0].name == "Laptop"
    client.post(rename, data={"csrf_token": token, "name": "Old laptop"})
    assert _keys(app, world.alice_id)[0].name == "Old laptop"
    bobs_path = f"/account/security/passkeys/{bobs.id}/remove"
    assert client.get(bobs_path).status_code == 404
    remove = f"/account/security/passkeys/{key.id}/remove"
    assert submit(client, remove, {"password": "not it"}).status_code == 422
    assert len(_keys(app, world.alice_id)) == 1
    assert submit(client, remove, {"password": PASSWORD}).status_code == 303
    assert _keys(app, world.alice_id) == [] and len(_keys(app, other)) == 1
    assert _passwordless(pkweb.test_client(), world, device).status_code == 401
