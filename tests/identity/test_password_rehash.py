"""Password hashes follow the app's argon2 settings: a right password whose hash was made
with other parameters is hashed again with the current ones (password grant, hosted login,
re-authentication), without ending any token or login; a wrong one changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from argon2 import extract_parameters
from factories import PASSWORD, make_email_otp_user, make_user
from flask import Flask
from oauth_helpers import bearer, login, password_grant, refresh
from pages_helpers import emailed_code, signed_in, submit
from verification_helpers import link_token, mails

from authserver.identity import accounts, verification
from authserver.platform import background
from authserver.platform.errors import ValidationFailed
from authserver.platform.extensions import db, passwords
from authserver.platform.models import Account, User

MEDIA = "application/vnd.api+json"
WRONG = "not the password at all"
OLD_TIME_COST = 1  # the suite's cheap settings (tests/conftest.py)
NEW_TIME_COST = 2


@pytest.fixture
def stronger(make_app: Callable[..., Flask]) -> Flask:
    """The same database and Redis, served with a higher argon2 time cost (a new release)."""
    return make_app(ARGON2_TIME_COST=NEW_TIME_COST)


def _row(app: Flask, user_id: str) -> dict[str, Any]:
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        return {
            "hash": user.password_hash,
            "generation": user.token_generation,
            "updated_at": user.password_updated_at,
        }


def _time_cost(app: Flask, user_id: str) -> int:
    return extract_parameters(_row(app, user_id)["hash"]).time_cost


def _post(client: Any, path: str, token: str, kind: str, attributes: dict[str, Any]) -> Any:
    body = {"data": {"type": kind, "attributes": attributes}}
    return client.post(path, data=json.dumps(body), content_type=MEDIA, headers=bearer(token))


def test_password_grant_renews_the_hash_and_keeps_every_token(app, client, world, stronger):
    """After a login under old settings, a login under new ones stores a hash with the new
    parameters; generation and password date stay, and the earlier tokens keep working."""
    first = login(client, world)
    before = _row(app, world.alice_id)
    assert _time_cost(app, world.alice_id) == OLD_TIME_COST
    new = stronger.test_client()
    second = login(new, world)
    assert sorted(second) == sorted(first)  # the same kind of answer
    after = _row(stronger, world.alice_id)
    assert after["hash"] != before["hash"]
    assert extract_parameters(after["hash"]).time_cost == NEW_TIME_COST
    assert after["generation"] == before["generation"]
    assert after["updated_at"] == before["updated_at"]
    assert new.get("/v1/user", headers=bearer(first["access_token"])).status_code == 200
    assert refresh(new, first["refresh_token"], world.public_id).status_code == 200
    login(new, world)  # the same password still works; an up-to-date hash stays as it is
    assert _row(stronger, world.alice_id)["hash"] == after["hash"]


def test_wrong_password_leaves_the_old_hash(app, client, world, stronger):
    """A failed login under the new settings answers as before and keeps the old hash; the
    right password afterwards renews it."""
    new = stronger.test_client()
    before = _row(app, world.alice_id)["hash"]
    old_answer = password_grant(client, world, "alice", WRONG)
    new_answer = password_grant(new, world, "alice", WRONG)
    assert (new_answer.status_code, new_answer.get_json()) == (
        old_answer.status_code,
        old_answer.get_json(),
    )
    assert _row(stronger, world.alice_id)["hash"] == before
    login(new, world)
    assert _time_cost(stronger, world.alice_id) == NEW_TIME_COST


def test_otp_required_step_keeps_the_renewed_hash(app, world, stronger):
    """A two-step user's right password renews the hash although the answer is only
    otp_required (nothing else is written); the emailed code then logs in as usual."""
    user_id = make_email_otp_user(app, world.live_id, "otto")
    generation = _row(app, user_id)["generation"]
    new = stronger.test_client()
    assert password_grant(new, world, "otto", WRONG).status_code == 400
    assert _time_cost(stronger, user_id) == OLD_TIME_COST
    step = password_grant(new, world, "otto", PASSWORD)
    assert step.status_code == 400 and step.get_json()["error"] == "otp_required"
    assert _time_cost(stronger, user_id) == NEW_TIME_COST
    done = password_grant(new, world, "otto", PASSWORD, otp=emailed_code(stronger))
    assert done.status_code == 200, done.get_data(as_text=True)
    assert _row(stronger, user_id)["generation"] == generation


def test_hosted_login_renews_the_hash_and_keeps_browser_logins(web, world, make_app):
    """The login page under new settings renews the hash after a refused wrong password; a
    browser signed in before stays signed in."""
    earlier = web.test_client()
    path = f"/login?aid={world.live_id}"
    assert submit(earlier, path, {"username": "alice", "password": PASSWORD}).status_code == 303
    stronger_web = make_app(ARGON2_TIME_COST=NEW_TIME_COST, WTF_CSRF_ENABLED=True)
    browser = stronger_web.test_client()
    wrong = submit(browser, path, {"username": "alice", "password": WRONG})
    assert wrong.status_code == 401  # the login page again, with its error
    assert _time_cost(stronger_web, world.alice_id) == OLD_TIME_COST
    right = submit(browser, path, {"username": "alice", "password": PASSWORD})
    assert right.status_code == 303 and right.headers["Location"] == "/account"
    assert _time_cost(stronger_web, world.alice_id) == NEW_TIME_COST
    assert signed_in(browser) and signed_in(earlier)


def test_totp_setup_password_renews_the_hash(app, client, world, stronger):
    """POST /v1/totp_setups proves the password: wrong, 422 and the old hash; right, 201
    and a hash with the new parameters, with the caller's token still good."""
    token = login(client, world)["access_token"]
    new = stronger.test_client()
    refused = _post(new, "/v1/totp_setups", token, "TotpSetup", {"password": WRONG})
    assert refused.status_code == 422
    assert _time_cost(stronger, world.alice_id) == OLD_TIME_COST
    started = _post(new, "/v1/totp_setups", token, "TotpSetup", {"password": PASSWORD})
    assert started.status_code == 201, started.get_data(as_text=True)
    assert _time_cost(stronger, world.alice_id) == NEW_TIME_COST
    assert new.get("/v1/user", headers=bearer(token)).status_code == 200


def test_current_password_on_patch_user_renews_the_hash(app, client, world, stronger):
    """PATCH /v1/user moving the email proves currentPassword: wrong, 422 and the old hash;
    right, 200 and a hash with the new parameters."""
    token = login(client, world)["access_token"]
    new = stronger.test_client()

    def patch(password: str) -> Any:
        attributes = {"email": "alice@example.com", "currentPassword": password}
        body = {"data": {"type": "User", "id": world.alice_id, "attributes": attributes}}
        return new.patch(
            "/v1/user", data=json.dumps(body), content_type=MEDIA, headers=bearer(token)
        )

    assert patch(WRONG).status_code == 422
    assert _time_cost(stronger, world.alice_id) == OLD_TIME_COST
    response = patch(PASSWORD)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert _time_cost(stronger, world.alice_id) == NEW_TIME_COST


def test_security_page_totp_setup_renews_the_hash(app, world, make_app):
    """Re-authentication on the security pages (TOTP setup step 1) renews the hash too."""
    old_hash = _row(app, world.alice_id)["hash"]
    stronger_web = make_app(ARGON2_TIME_COST=NEW_TIME_COST, WTF_CSRF_ENABLED=True)
    browser = stronger_web.test_client()
    path = f"/login?aid={world.live_id}"
    assert submit(browser, path, {"username": "alice", "password": PASSWORD}).status_code == 303
    # Signing in renewed the hash: put the old-settings one back to re-authenticate with.
    with stronger_web.app_context():
        db.session.execute(
            db.update(User).where(User.id == world.alice_id).values(password_hash=old_hash)
        )
        db.session.commit()
    response = submit(browser, "/account/security/totp", {"password": PASSWORD})
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    assert _time_cost(stronger_web, world.alice_id) == NEW_TIME_COST
    assert signed_in(browser)


def test_renewal_never_undoes_a_password_change_made_meanwhile(world, stronger):
    """upgrade_password_hash writes only over the hash that was checked: a password changed
    (and committed) after the check keeps its new hash, and the call says nothing was done."""
    with stronger.app_context():
        user = db.session.get(User, world.alice_id)
        assert user is not None and passwords().verify(user.password_hash, PASSWORD)
        with db.engine.begin() as other:  # another request changes the password meanwhile
            other.execute(
                db.update(User)
                .where(User.id == world.alice_id)
                .values(password_hash=passwords().hash("the new passphrase"))
            )
        assert accounts.upgrade_password_hash(user, PASSWORD) is False
        db.session.commit()
    stored = _row(stronger, world.alice_id)["hash"]
    with stronger.app_context():
        assert passwords().verify(stored, "the new passphrase")
        assert not passwords().verify(stored, PASSWORD)


def test_a_renewed_hash_ends_the_users_outstanding_reset_link(app, world, stronger):
    """A reset link vouches for the stored hash: after a login under new settings renewed
    it, the link mailed before is refused and the password stays the one typed."""
    user_id = make_user(app, world.live_id, "rita", email="rita@example.com")
    with app.app_context():
        account = db.session.get(Account, world.live_id)
        assert account is not None
        verification.request_password_reset(account, "rita")
        assert background.jobs(app).drain()
    [mail] = mails(app, "identity.password_reset_token.create.success")
    token = link_token(mail.text, "/reset-password")
    assert password_grant(stronger.test_client(), world, "rita").status_code == 200
    assert _time_cost(stronger, user_id) == NEW_TIME_COST
    with stronger.app_context(), pytest.raises(ValidationFailed) as refused:
        verification.reset_password(token, "a-brand-new-passphrase")
    assert refused.value.code == "invalid_token"
    assert password_grant(stronger.test_client(), world, "rita").status_code == 200


def test_a_disabled_users_right_password_renews_nothing(app, world, stronger):
    """A right password of a disabled user is still refused, and its hash is not touched:
    the renewal comes after every check of the login."""
    user_id = make_user(app, world.live_id, "dina", status="disabled")
    before = _row(app, user_id)["hash"]
    refused = password_grant(stronger.test_client(), world, "dina")
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"
    assert _row(stronger, user_id)["hash"] == before
