"""Guest sign-up and mail to unverified addresses: the mail a sign-up sends carries no text
the requester chose (no name in the greeting until the address is verified), and no login
code is mailed to an unverified address (the login asks to verify first)."""

from __future__ import annotations

import json
import re
from typing import Any

from factories import PASSWORD
from oauth_helpers import password_grant
from pages_helpers import submit
from verification_helpers import guest_token

from authserver.identity import verification
from authserver.platform import background
from authserver.platform.extensions import db
from authserver.platform.models import Account, User

SPAM = "Claim your prize at evil.example"


def _sign_up(client: Any, world: Any, **attributes: Any) -> str:
    """A guest sign-up through /v1/users; the new user's id."""
    guest = guest_token(client, world.live_prt)
    body = {"data": {"type": "User", "attributes": {"password": PASSWORD, **attributes}}}
    response = client.post(
        "/v1/users",
        data=json.dumps(body),
        headers={"Authorization": f"Bearer {guest}", "Content-Type": "application/vnd.api+json"},
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return str(response.get_json()["data"]["id"])


def _mails(app: Any) -> list[Any]:
    background.jobs(app).drain()
    return list(app.extensions["authserver.outbox"].of("email"))


def _emailed_code_default(app: Any, world: Any) -> None:
    with app.app_context():
        db.session.get(Account, world.live_id).default_auth_method = "tfa_email"
        db.session.commit()


def test_sign_up_mail_carries_no_text_the_requester_chose(app, client, world):
    """A guest naming itself with an advert, for a stranger's address: the verification
    mail reaches the address without the name (the greeting is plain)."""
    _sign_up(
        client,
        world,
        username="victim",
        email="victim@example.com",
        name=SPAM,
        firstName=SPAM,
        lastName=SPAM,
    )
    [mail] = _mails(app)
    assert mail.to == "victim@example.com"
    assert "evil.example" not in mail.text and "evil.example" not in (mail.subject or "")
    assert "Hello," in mail.text


def test_a_verified_address_is_greeted_by_name(app, client, world):
    """Control: once the address is verified, mail greets the person by their name."""
    user_id = _sign_up(client, world, username="vera", email="vera@example.com", firstName="Vera")
    with app.app_context():
        db.session.get(User, user_id).email_verified = True
        db.session.commit()
        user = db.session.get(User, user_id)
        verification.request_password_reset(user.account, "vera")
    assert "Hello Vera," in _mails(app)[-1].text


def test_no_login_code_is_mailed_to_an_unverified_address(app, client, world):
    """An account whose default is emailed codes: a guest signs up a stranger's address
    and logs in with its own password: no code mail, a clear invalid_grant instead."""
    _emailed_code_default(app, world)
    _sign_up(client, world, username="mallory", email="victim@example.com")
    sent = len(_mails(app))  # the verification mail
    for _ in range(3):
        response = password_grant(client, world, "mallory")
        assert response.status_code == 400
        body = response.get_json()
        assert body["error"] == "invalid_grant"
        assert "Confirm your email address" in body["error_description"]
    assert len(_mails(app)) == sent


def test_the_login_page_asks_to_verify_first(web, world):
    """The hosted login page says to confirm the address first (403) and mails no code."""
    _emailed_code_default(web, world)
    _sign_up(web.test_client(), world, username="mallory", email="victim@example.com")
    sent = len(_mails(web))
    response = submit(
        web.test_client(),
        f"/login?aid={world.live_id}",
        {"username": "mallory", "password": PASSWORD},
    )
    assert response.status_code == 403
    assert "not confirmed yet" in response.get_data(as_text=True)
    assert len(_mails(web)) == sent


def test_after_verification_the_code_is_mailed(app, client, world):
    """Control: once the address is verified through its link, the login mails a code."""
    _emailed_code_default(app, world)
    _sign_up(client, world, username="olive", email="olive@example.com")
    [link_mail] = _mails(app)
    token = re.search(r"/verify-email\?token=([\w-]+)", link_mail.text).group(1)
    with app.app_context():
        verification.verify_email(token)
    response = password_grant(client, world, "olive")
    assert response.get_json()["error"] == "otp_required"
    assert _mails(app)[-1].to == "olive@example.com"
