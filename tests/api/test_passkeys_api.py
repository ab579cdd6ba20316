"""Passkeys over /v1 (list, rename, remove: who may touch whose, bad bodies) and what the
password grant answers a user whose second factor is a passkey."""

from __future__ import annotations

import time
from typing import Any

import pytest
from factories import make_totp_user, make_user
from oauth_helpers import bearer, login, password_grant
from pages_helpers import recovery_codes
from passkey_helpers import ISSUER, enrol
from sqlalchemy import select

from authserver.platform.extensions import db
from authserver.platform.models import AuditEvent, Passkey, User

MEDIA = "application/vnd.api+json"


@pytest.fixture
def pk_app(make_app: Any) -> Any:
    """The app with a named-host issuer (passkeys are made there; same tables)."""
    return make_app(ISSUER=ISSUER)


def _ids(app: Any, user_id: str) -> list[str]:
    with app.app_context():
        return list(
            db.session.scalars(
                select(Passkey.id).where(Passkey.user_id == user_id).order_by(Passkey.created_at)
            )
        )


def _name(app: Any, passkey_id: str) -> str | None:
    with app.app_context():
        row = db.session.get(Passkey, passkey_id)
        return row.name if row else None


def _rename(client: Any, token: str, passkey_id: str, attributes: Any, **data: Any) -> Any:
    body = {"data": {"type": "Passkey", "id": passkey_id, "attributes": attributes, **data}}
    return client.patch(
        f"/v1/passkeys/{passkey_id}",
        json=body,
        headers={**bearer(token), "Content-Type": MEDIA},
    )


def _token(client: Any, world: Any, username: str) -> str:
    return str(login(client, world, username=username)["access_token"])


def _totp_member(app: Any, client: Any, world: Any, username: str, **fields: Any) -> Any:
    """A TOTP user of the live account (a passkey is then not their first factor, so
    adding one ends no login), their access token and recovery codes for the proofs."""
    user_id, totp = make_totp_user(app, world.live_id, username, **fields)
    answer = password_grant(client, world, username, otp=totp.now())
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return user_id, answer.get_json()["access_token"], recovery_codes(app, user_id)


def _make_simple(app: Any, user_id: str) -> None:
    """Setup: the user's code method goes (a direct write: no login ends), so their
    passkeys are their only second factor."""
    with app.app_context():
        db.session.get(User, user_id).auth_method = "simple"
        db.session.commit()


def test_own_passkeys_listed_renamed_and_removed(app, client, world, pk_app):
    """A user lists their passkeys (name, times, transports), renames one (audited) and
    removes one while another is left (204)."""
    tina, token, codes = _totp_member(app, client, world, "tina")
    enrol(pk_app, tina, "Laptop", recovery_code=codes[0])
    enrol(pk_app, tina, "Phone", recovery_code=codes[1])
    listed = client.get("/v1/passkeys", headers=bearer(token))
    assert listed.status_code == 200
    data = listed.get_json()["data"]
    assert [d["attributes"]["name"] for d in data] == ["Laptop", "Phone"]
    assert data[0]["attributes"]["transports"] == ["internal"]
    assert data[0]["attributes"]["lastUsedAt"] is None
    first, second = _ids(app, tina)

    renamed = _rename(client, token, first, {"name": "  Work laptop "})
    assert renamed.status_code == 200, renamed.get_data(as_text=True)
    assert renamed.get_json()["data"]["attributes"]["name"] == "Work laptop"
    with app.app_context():
        actions = db.session.scalars(
            select(AuditEvent.action).where(AuditEvent.target_id == first)
        ).all()
        assert sorted(actions) == ["passkey.create", "passkey.update"]

    assert client.delete(f"/v1/passkeys/{second}", headers=bearer(token)).status_code == 204
    assert _ids(app, tina) == [first]


@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 65},
        {"name": 7},
        {"name": None},
        {"name": "a\x01b"},
        {"name": "ok", "sign_count": 0},
    ],
    ids=["missing", "empty", "blank", "long", "number", "null", "control", "unknown"],
)
def test_bad_rename_bodies_are_refused_and_change_nothing(app, client, world, pk_app, attributes):
    """Missing, empty, over-long, mistyped or control-character names and unknown
    attributes get a 4xx JSON:API error; the name stays."""
    tina, token, codes = _totp_member(app, client, world, "tina")
    enrol(pk_app, tina, "Laptop", recovery_code=codes[0])
    (passkey_id,) = _ids(app, tina)
    answer = _rename(client, token, passkey_id, attributes)
    assert 400 <= answer.status_code < 500 and answer.get_json()["errors"]
    assert _name(app, passkey_id) == "Laptop"


def test_a_users_own_last_passkey_is_not_removed_with_a_token_alone(app, client, world, pk_app):
    """The last second factor of a simple user is not removed through the API (422
    last_second_factor): the security page asks for the password."""
    tina, token, codes = _totp_member(app, client, world, "tina")
    enrol(pk_app, tina, recovery_code=codes[0])
    _make_simple(app, tina)
    (passkey_id,) = _ids(app, tina)
    answer = client.delete(f"/v1/passkeys/{passkey_id}", headers=bearer(token))
    assert answer.status_code == 422
    assert answer.get_json()["errors"][0]["code"] == "last_second_factor"
    assert _ids(app, tina) == [passkey_id]


def test_who_may_see_and_change_whose_passkeys(app, client, world, pk_app):
    """An administrator lists and removes a customer's passkeys (their other logins end
    with the last one); not an owner's; a customer sees only their own (403 for another
    user's list, 404 for another user's passkey); unknown or malformed users 404/400."""
    make_user(app, world.live_id, "adam", role="administrator")
    cora, customer, codes = _totp_member(app, client, world, "cora")
    olga = make_user(app, world.live_id, "olga", role="owner")
    admin = _token(client, world, "adam")
    enrol(pk_app, cora, "Cora's key", recovery_code=codes[0])
    _make_simple(app, cora)  # her passkey is her last second factor
    enrol(pk_app, olga, "Olga's key")
    (cora_key,), (olga_key,) = _ids(app, cora), _ids(app, olga)

    listed = client.get(f"/v1/passkeys?filter[userId]={cora}", headers=bearer(admin))
    assert [d["id"] for d in listed.get_json()["data"]] == [cora_key]
    assert (
        client.get(f"/v1/passkeys?filter[userId]={olga}", headers=bearer(admin)).status_code == 403
    )
    assert (
        client.get(f"/v1/passkeys?filter[userId]={olga}", headers=bearer(customer)).status_code
        == 403
    )
    unknown = "00000000-0000-4000-8000-000000000000"
    assert (
        client.get(f"/v1/passkeys?filter[userId]={unknown}", headers=bearer(admin)).status_code
        == 404
    )
    assert client.get("/v1/passkeys?filter[userId]=", headers=bearer(admin)).status_code == 400
    assert (
        client.get(f"/v1/passkeys?filter[userId]={'x' * 37}", headers=bearer(admin)).status_code
        == 400
    )

    assert _rename(client, customer, olga_key, {"name": "mine"}).status_code == 404
    assert client.delete(f"/v1/passkeys/{olga_key}", headers=bearer(customer)).status_code == 404
    assert client.delete(f"/v1/passkeys/{olga_key}", headers=bearer(admin)).status_code == 404
    assert client.delete(f"/v1/passkeys/{'z' * 40}", headers=bearer(admin)).status_code == 404
    assert _ids(app, olga) == [olga_key]

    with app.app_context():
        generation = db.session.get(User, cora).token_generation
    assert client.delete(f"/v1/passkeys/{cora_key}", headers=bearer(admin)).status_code == 204
    assert _ids(app, cora) == []
    with app.app_context():
        assert db.session.get(User, cora).token_generation == generation + 1
    assert client.get("/v1/passkeys", headers=bearer(customer)).status_code == 401  # ended


def test_password_grant_sends_a_passkey_user_to_the_hosted_pages(app, client, world, pk_app):
    """A user whose only second factor is a passkey gets otp_required with otp_method
    passkey and the authorization endpoint to sign in through; a code cannot answer."""
    enrol(pk_app, world.alice_id)
    answer = password_grant(client, world, "alice")
    assert answer.status_code == 400
    body = answer.get_json()
    assert (body["error"], body["otp_method"]) == ("otp_required", "passkey")
    assert body["otp_url"].endswith("/oauth/authorize")
    assert "otp_resend_after" not in body
    assert answer.headers["X-OTP"] == "required; method=passkey"
    refused = password_grant(client, world, "alice", otp="123456")
    assert refused.get_json()["error"] == "invalid_otp"


def test_password_grant_still_takes_the_code_of_a_totp_user_with_a_passkey(
    app, client, world, pk_app
):
    """A passkey beside TOTP changes nothing for the password grant: the app's code works."""
    user_id, totp = make_totp_user(app, world.live_id, "tina")
    enrol(pk_app, user_id, otp=totp.at(time.time() - 30))  # leaves this step's code unused
    first = password_grant(client, world, "tina")
    assert first.get_json()["otp_method"] == "tfa_totp"
    assert password_grant(client, world, "tina", otp=totp.now()).status_code == 200
