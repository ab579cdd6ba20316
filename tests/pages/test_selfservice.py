"""Forgot password, reset password, activation and email verification pages."""

from __future__ import annotations

import re
from typing import Any

import pytest
from factories import PASSWORD, make_totp_user, make_user
from pages_helpers import csrf, signed_in, submit

from authserver.identity import accounts, verification
from authserver.platform import background
from authserver.platform.extensions import db
from authserver.platform.models import User

NEW_PASSWORD = "a-brand-new-passphrase"


def _reset_token(web, user_id: str) -> str:
    """Issue a reset token through the use case and read it from the emailed link."""
    with web.app_context():
        user = db.session.get(User, user_id)
        verification.request_password_reset(user.account, user.username)
    background.jobs(web).drain()
    text = web.extensions["authserver.outbox"].of("email")[-1].text
    match = re.search(r"/reset-password\?token=([\w-]+)", text)
    assert match, text
    return match.group(1)


def _password_hash(web, user_id: str) -> str:
    with web.app_context():
        return db.session.get(User, user_id).password_hash


def test_forgot_password_same_answer_for_known_and_unknown(web, world):
    """Known and unknown usernames get the same page; only the known one gets an email."""
    make_user(web, world.live_id, "bob", email="bob@example.com")
    client = web.test_client()
    path = f"/forgot-password?aid={world.live_id}"
    known = submit(client, path, {"username": "bob"})
    unknown = submit(client, path, {"username": "nobody"})
    background.jobs(web).drain()
    assert known.status_code == unknown.status_code == 200
    assert known.get_data(as_text=True) == unknown.get_data(as_text=True)
    mails = web.extensions["authserver.outbox"].of("email")
    assert [m.to for m in mails] == ["bob@example.com"]
    assert "/reset-password?token=" in mails[0].text


def test_forgot_password_by_email_reaches_each_user_with_it(web, world):
    """An email instead of a username: a reset link for each of the account's users with
    that address (compared case-insensitively), none for an unknown one or another
    account's user, and the same page every time."""
    make_user(web, world.live_id, "bob", email="bob@example.com")
    make_user(web, world.live_id, "bobby", email="Bob@Example.com")
    make_user(web, world.other_id, "bob-elsewhere", email="bob@example.com")
    client = web.test_client()
    path = f"/forgot-password?aid={world.live_id}"
    known = submit(client, path, {"username": "BOB@example.com"})
    unknown = submit(client, path, {"username": "nobody@example.com"})
    background.jobs(web).drain()
    assert known.get_data(as_text=True) == unknown.get_data(as_text=True)
    mails = web.extensions["authserver.outbox"].of("email")
    assert sorted(m.to for m in mails) == ["Bob@example.com", "bob@example.com"]
    assert all("/reset-password?token=" in m.text for m in mails)


def test_forgot_password_without_csrf_sends_nothing(web, world):
    """A forgot-password POST without the CSRF token is 400 and no email goes out."""
    make_user(web, world.live_id, "bob", email="bob@example.com")
    client = web.test_client()
    response = client.post(f"/forgot-password?aid={world.live_id}", data={"username": "bob"})
    background.jobs(web).drain()
    assert response.status_code == 400
    assert web.extensions["authserver.outbox"].of("email") == []


def test_reset_get_does_not_consume_the_token(web, world):
    """Opening the link (GET, twice: a mail scanner and the person) leaves the token usable."""
    user_id = make_user(web, world.live_id, "bob", email="bob@example.com")
    token = _reset_token(web, user_id)
    client = web.test_client()
    for _ in range(2):
        page = client.get(f"/reset-password?token={token}", follow_redirects=True)
        assert page.status_code == 200 and 'for="password"' in page.get_data(as_text=True)
    done = client.post(
        "/reset-password",
        data={
            "csrf_token": csrf(page),
            "password": NEW_PASSWORD,
            "confirmation": NEW_PASSWORD,
        },
    )
    assert done.status_code == 200
    assert _password_hash(web, user_id) != ""
    with web.app_context():
        user = db.session.get(User, user_id)
        assert web.extensions["authserver.passwords"].verify(user.password_hash, NEW_PASSWORD)


def test_reset_does_not_log_in_nor_switch_off_tfa(web, world):
    """After a reset the browser is not signed in and the TOTP user still needs the code."""
    user_id, _ = make_totp_user(web, world.live_id, "tina")
    with web.app_context():
        db.session.get(User, user_id).email = "tina@example.com"
        db.session.commit()
    token = _reset_token(web, user_id)
    client = web.test_client()
    done = submit(
        client,
        "/reset-password",
        {"password": NEW_PASSWORD, "confirmation": NEW_PASSWORD},
        token_from=f"/reset-password?token={token}",
    )
    assert done.status_code == 200
    assert not signed_in(client)
    again = submit(
        client,
        f"/login?aid={world.live_id}",
        {"username": "tina", "password": NEW_PASSWORD},
    )
    assert again.headers["Location"] == "/login/code"
    with web.app_context():
        assert db.session.get(User, user_id).auth_method == "tfa_totp"


def test_reset_token_works_once(web, world):
    """A second POST with the same token is refused and changes nothing."""
    user_id = make_user(web, world.live_id, "bob", email="bob@example.com")
    token = _reset_token(web, user_id)
    client = web.test_client()
    data = {"password": NEW_PASSWORD, "confirmation": NEW_PASSWORD}
    submit(client, "/reset-password", data, token_from=f"/reset-password?token={token}")
    before = _password_hash(web, user_id)
    data = {**data, "password": "yet-another-passphrase", "confirmation": "yet-another-passphrase"}
    # The link's first GET only moves the token into the session; the POST (with a form
    # token from another page: the link's page itself now refuses a spent link) decides.
    assert client.get(f"/reset-password?token={token}").status_code == 303
    second = client.post("/reset-password", data={"csrf_token": csrf(client.get("/login")), **data})
    assert second.status_code == 400
    assert _password_hash(web, user_id) == before


def test_reset_mismatch_keeps_the_token(web, world):
    """Different passwords: an error at the field, the password unchanged, the token alive."""
    user_id = make_user(web, world.live_id, "bob", email="bob@example.com")
    token = _reset_token(web, user_id)
    client = web.test_client()
    before = _password_hash(web, user_id)
    data = {"password": NEW_PASSWORD, "confirmation": "something-else-entirely"}
    bad = submit(client, "/reset-password", data, token_from=f"/reset-password?token={token}")
    assert bad.status_code == 422
    assert 'aria-describedby="confirmation-error"' in bad.get_data(as_text=True)
    assert _password_hash(web, user_id) == before
    data["confirmation"] = NEW_PASSWORD
    ok = submit(client, "/reset-password", data, token_from=f"/reset-password?token={token}")
    assert ok.status_code == 200


def test_reset_without_csrf_changes_nothing(web, world):
    """A reset POST without the CSRF token is 400 and the password stays (the browser
    opened the link, so the session holds the token)."""
    user_id = make_user(web, world.live_id, "bob", email="bob@example.com")
    token = _reset_token(web, user_id)
    before = _password_hash(web, user_id)
    client = web.test_client()
    client.get(f"/reset-password?token={token}")
    response = client.post(
        "/reset-password",
        data={"password": NEW_PASSWORD, "confirmation": NEW_PASSWORD},
    )
    assert response.status_code == 400
    assert _password_hash(web, user_id) == before


def test_activation_page_activates_a_pending_user(web, world):
    """The invitation link's page sets the password and activates; the GET alone does nothing."""
    user_id = make_user(
        web, world.live_id, "ivy", email="ivy@example.com", password=None, status="pending"
    )
    with web.app_context():
        verification.send_activation(db.session.get(User, user_id))
    text = web.extensions["authserver.outbox"].of("email")[-1].text
    token = re.search(r"/activate\?token=([\w-]+)", text).group(1)
    client = web.test_client()
    page = client.get(f"/activate?token={token}", follow_redirects=True)
    with web.app_context():
        assert db.session.get(User, user_id).status == "pending"
    done = client.post(
        "/activate",
        data={
            "csrf_token": csrf(page),
            "password": NEW_PASSWORD,
            "confirmation": NEW_PASSWORD,
        },
    )
    assert done.status_code == 200
    with web.app_context():
        assert db.session.get(User, user_id).status == "active"
    assert not signed_in(client)


def test_verify_email_get_shows_a_button_and_post_verifies(web, world):
    """GET /verify-email changes nothing; the POST marks the address verified."""
    user_id = make_user(web, world.live_id, "bob", email="bob@example.com")
    with web.app_context():
        verification.send_email_verification(db.session.get(User, user_id))
    text = web.extensions["authserver.outbox"].of("email")[-1].text
    token = re.search(r"/verify-email\?token=([\w-]+)", text).group(1)
    client = web.test_client()
    page = client.get(f"/verify-email?token={token}", follow_redirects=True)
    with web.app_context():
        assert not db.session.get(User, user_id).email_verified
    done = client.post("/verify-email", data={"csrf_token": csrf(page)})
    assert done.status_code == 200
    with web.app_context():
        assert db.session.get(User, user_id).email_verified
    again = client.post("/verify-email", data={"csrf_token": csrf(page)})
    assert again.status_code == 400


def _emailed_link(web, user_id: str, path: str) -> str:
    """Mail the `path` link (reset, activation or verification) and return its token."""
    with web.app_context():
        user = db.session.get(User, user_id)
        if path == "/reset-password":
            verification.request_password_reset(user.account, user.username)
        elif path == "/activate":
            verification.send_activation(user)
        else:
            verification.send_email_verification(user)
    background.jobs(web).drain()
    text = web.extensions["authserver.outbox"].of("email")[-1].text
    match = re.search(rf"{re.escape(path)}\?token=([\w-]+)", text)
    assert match, text
    return match.group(1)


def _bob_with_link(web: Any, world: Any, path: str) -> tuple[str, str]:
    """bob, pending for /activate (else active), and the token of the link `path` mailed."""
    pending = path == "/activate"
    user_id = make_user(
        web,
        world.live_id,
        "bob",
        email="bob@example.com",
        password=None if pending else PASSWORD,
        status="pending" if pending else "active",
    )
    return user_id, _emailed_link(web, user_id, path)


@pytest.mark.parametrize("path", ["/reset-password", "/activate", "/verify-email"])
def test_emailed_link_moves_its_token_out_of_the_url(web, world, path):
    """The link's first GET keeps the token in the session and redirects (no-referrer) to
    the page without it; the page neither shows nor needs the token, and its POST works."""
    user_id, token = _bob_with_link(web, world, path)
    client = web.test_client()
    first = client.get(f"{path}?token={token}&ui_locales=es")
    assert first.status_code == 303
    assert first.headers["Location"] == f"{path}?ui_locales=es"
    assert first.headers["Referrer-Policy"] == "no-referrer"
    page = client.get(first.headers["Location"])
    assert page.status_code == 200
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert token not in page.get_data(as_text=True)
    fields = (
        {} if path == "/verify-email" else {"password": NEW_PASSWORD, "confirmation": NEW_PASSWORD}
    )
    done = client.post(path, data={"csrf_token": csrf(page), **fields})
    assert done.status_code == 200, done.get_data(as_text=True)[:500]
    with web.app_context():
        user = db.session.get(User, user_id)
        assert user.email_verified if path == "/verify-email" else user.status == "active"
    assert client.get(path).status_code == 400  # spent: the session no longer holds it


@pytest.mark.parametrize("path", ["/reset-password", "/activate", "/verify-email"])
def test_link_page_without_a_token_is_a_clear_400(web, path):
    """The page opened without its link (or after the token was spent) says the link is bad."""
    response = web.test_client().get(path)
    assert response.status_code == 400
    assert "This link is invalid" in response.get_data(as_text=True)


def test_a_token_serves_only_the_page_of_its_link(web, world):
    """A reset link's token in the session is not used by the verification page."""
    user_id = make_user(web, world.live_id, "bob", email="bob@example.com")
    token = _reset_token(web, user_id)
    client = web.test_client()
    client.get(f"/reset-password?token={token}")
    assert client.get("/verify-email").status_code == 400


def test_link_pages_load_nothing_from_another_origin(web, world):
    """The reset page loads nothing from another origin."""
    user_id = make_user(web, world.live_id, "bob", email="bob@example.com")
    token = _reset_token(web, user_id)
    response = web.test_client().get(f"/reset-password?token={token}", follow_redirects=True)
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "http://" not in body and "https://" not in body


def test_old_password_fails_after_reset(web, world):
    """After a reset through the page, the old password no longer logs in."""
    user_id = make_user(web, world.live_id, "bob", email="bob@example.com")
    token = _reset_token(web, user_id)
    client = web.test_client()
    data = {"password": NEW_PASSWORD, "confirmation": NEW_PASSWORD}
    submit(client, "/reset-password", data, token_from=f"/reset-password?token={token}")
    old = submit(client, f"/login?aid={world.live_id}", {"username": "bob", "password": PASSWORD})
    assert old.status_code == 401


def test_activation_page_sends_no_password_changed_alarm(web, world):
    """Activating through the invitation link's page mails no "password changed" alarm."""
    user_id = make_user(
        web, world.live_id, "ivy", email="ivy@example.com", password=None, status="pending"
    )
    token = _emailed_link(web, user_id, "/activate")
    client = web.test_client()
    data = {"password": NEW_PASSWORD, "confirmation": NEW_PASSWORD}
    done = submit(client, "/activate", data, token_from=f"/activate?token={token}")
    assert done.status_code == 200
    background.jobs(web).drain()
    events = [m.event for m in web.extensions["authserver.outbox"].of("email")]
    assert events == ["identity.activation_token.create.success"]


def _spend(web, client, path: str, token: str) -> None:
    fields = (
        {} if path == "/verify-email" else {"password": NEW_PASSWORD, "confirmation": NEW_PASSWORD}
    )
    done = submit(client, path, fields, token_from=f"{path}?token={token}")
    assert done.status_code == 200, done.get_data(as_text=True)[:500]


@pytest.mark.parametrize("path", ["/reset-password", "/activate", "/verify-email"])
def test_spent_link_shows_the_invalid_link_page_on_get(web, world, path):
    """Opening a link again after it was used: the invalid-link page at once (400, no form
    to fill in for nothing), not a form whose POST then fails."""
    _, token = _bob_with_link(web, world, path)
    _spend(web, web.test_client(), path, token)
    again = web.test_client().get(f"{path}?token={token}", follow_redirects=True)
    body = again.get_data(as_text=True)
    assert again.status_code == 400 and "This link is invalid" in body
    assert "<form" not in body


def test_superseded_or_outdated_reset_link_shows_the_invalid_link_page_on_get(web, world):
    """A reset link replaced by a newer one, or one whose password changed since, is dead on
    GET; peeking does not spend a live link (its page still shows the form)."""
    user_id = make_user(web, world.live_id, "bob", email="bob@example.com")
    old = _reset_token(web, user_id)
    new = _reset_token(web, user_id)
    superseded = web.test_client().get(f"/reset-password?token={old}", follow_redirects=True)
    assert superseded.status_code == 400
    client = web.test_client()
    for _ in range(2):  # a GET does not use the link up
        live = client.get(f"/reset-password?token={new}", follow_redirects=True)
        assert live.status_code == 200 and 'name="password"' in live.get_data(as_text=True)
    with web.app_context():
        accounts.set_password(db.session.get(User, user_id), "changed-by-the-user-1")
    outdated = web.test_client().get(f"/reset-password?token={new}", follow_redirects=True)
    assert outdated.status_code == 400


@pytest.mark.parametrize("path", ["/reset-password", "/activate", "/verify-email"])
def test_dead_link_page_leads_to_the_account_sign_in_page(web, world, path):
    """The emailed link names the user's account (`aid`) and its page keeps it: once the
    link is spent, the invalid-link page's sign-in link is that account's (where a new link
    can be asked for), not the bare global one."""
    _, token = _bob_with_link(web, world, path)
    link = web.extensions["authserver.outbox"].of("email")[-1].text
    assert f"{path}?token={token}&aid={world.live_id}" in link
    client = web.test_client()
    first = client.get(f"{path}?token={token}&aid={world.live_id}")
    assert first.headers["Location"] == f"{path}?aid={world.live_id}"
    _spend(web, web.test_client(), path, token)
    body = client.get(first.headers["Location"]).get_data(as_text=True)
    assert "This link is invalid" in body
    assert f'href="/login?aid={world.live_id}">Go to the sign-in page' in body
