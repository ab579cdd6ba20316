"""Support login: RFC 8693 token exchange at the token endpoint. A support specialist's
token and a user id give a short token for the user with `act`, only while the user
allows it; never for owners, across accounts, from another support login or to clients
not registered for it; recorded and mailed; turning the permission off ends it at once.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from factories import World, make_client, make_user
from oauth_helpers import bearer, jwt_parts, login
from verification_helpers import outbox

from authserver.platform.extensions import db
from authserver.platform.models import LoginRecord

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
MEDIA = "application/vnd.api+json"


class Desk:
    """The support desk of the live account: a client allowed token exchange, an agent
    (support specialist) and a customer who allows support login."""

    def __init__(self, app: Any, client: Any, world: World):
        self.http = client
        self.world = world
        self.client_id = make_client(
            app,
            world.live_id,
            "Support desk",
            public=True,
            grant_types=["password", "refresh_token", EXCHANGE],
        ).client_id
        self.agent_id = make_user(app, world.live_id, "agnes", role="support_specialist")
        self.sam_id = make_user(
            app,
            world.live_id,
            "sam",
            role="customer",
            email="sam@example.com",
            email_verified=True,
            allow_support_login=True,
        )
        self.agent_token = self.token_of("agnes")

    def token_of(self, username: str) -> str:
        """A password-grant access token of `username` through the desk's client."""
        answer = login(self.http, self.world, username=username, client_id=self.client_id)
        return str(answer["access_token"])


@pytest.fixture
def desk(app: Any, client: Any, world: World) -> Desk:
    return Desk(app, client, world)


def exchange(client: Any, desk: Desk, subject: str | None = None, **overrides: Any) -> Any:
    """POST /oauth/token with the token-exchange grant; `overrides` (None drops a field)."""
    data: dict[str, Any] = {
        "grant_type": EXCHANGE,
        "client_id": desk.client_id,
        "actor_token": desk.agent_token,
        "actor_token_type": ACCESS,
        "requested_subject": subject or desk.sam_id,
    }
    data.update(overrides)
    return client.post("/oauth/token", data={k: v for k, v in data.items() if v is not None})


def _support_records(app: Any, user_id: str) -> list[LoginRecord]:
    with app.app_context():
        return list(
            db.session.scalars(
                db.select(LoginRecord).where(
                    LoginRecord.user_id == user_id, LoginRecord.method == "support"
                )
            )
        )


def _patch_me(client: Any, token: str, user_id: str, attributes: dict[str, Any]) -> Any:
    body = {"data": {"type": "User", "id": user_id, "attributes": attributes}}
    return client.patch(
        "/v1/user", data=json.dumps(body), content_type=MEDIA, headers=bearer(token)
    )


def test_support_login_gives_a_short_token_with_act(app, client, desk):
    """The token is the user's, carries act.sub = the agent, lives SUPPORT_LOGIN_LIFETIME
    (capped by ACCESS_TOKEN_LIFETIME), has no refresh token and works on /v1/user."""
    response = exchange(client, desk)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert "refresh_token" not in body and body["issued_token_type"] == ACCESS
    expected = min(app.config["SUPPORT_LOGIN_LIFETIME"], app.config["ACCESS_TOKEN_LIFETIME"])
    assert body["expires_in"] == expected
    _, claims = jwt_parts(body["access_token"])
    assert claims["sub"] == desk.sam_id and claims["act"] == {"sub": desk.agent_id}
    assert claims["role"] == "customer" and claims["aid"] == desk.world.live_id
    assert claims["exp"] - claims["iat"] == expected
    me = client.get("/v1/user", headers=bearer(body["access_token"])).get_json()["data"]
    assert me["id"] == desk.sam_id


def test_support_login_is_in_the_history_and_mailed(app, client, desk):
    """The user's login history shows a support login naming the agent; the user is mailed."""
    assert exchange(client, desk).status_code == 200
    records = _support_records(app, desk.sam_id)
    assert [(r.actor_id, r.success) for r in records] == [(desk.agent_id, True)]
    own = desk.token_of("sam")
    logins = client.get("/v1/user/logins", headers=bearer(own)).get_json()["data"]
    support = [x["attributes"] for x in logins if x["attributes"]["method"] == "support"]
    assert support and support[0]["actorId"] == desk.agent_id
    mails = [m for m in outbox(app).of("email") if m.to == "sam@example.com"]
    assert [m.event for m in mails] == ["identity.support_login.create.success"]
    assert "agnes" in mails[0].text


def test_turning_the_permission_off_ends_support_tokens_at_once(app, client, desk):
    """PATCH /v1/user allowSupportLogin false: the support token is refused at once, the
    user's own token goes on, and no new support login is granted."""
    support_token = exchange(client, desk).get_json()["access_token"]
    own = desk.token_of("sam")
    assert client.get("/v1/user", headers=bearer(support_token)).status_code == 200
    response = _patch_me(client, own, desk.sam_id, {"allowSupportLogin": False})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["data"]["attributes"]["allowSupportLogin"] is False
    assert client.get("/v1/user", headers=bearer(support_token)).status_code == 401
    assert client.get("/v1/user", headers=bearer(own)).status_code == 200
    refused = exchange(client, desk)
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"
    # On again: a new support login works (the old deny-list row does not block it).
    assert _patch_me(client, own, desk.sam_id, {"allowSupportLogin": True}).status_code == 200
    again = exchange(client, desk).get_json()["access_token"]
    assert client.get("/v1/user", headers=bearer(again)).status_code == 200


def test_no_support_login_without_permission(app, client, desk):
    """A user who has not allowed it (the default) cannot be logged in as; nothing recorded."""
    other = make_user(app, desk.world.live_id, "nora", role="customer")
    response = exchange(client, desk, subject=other)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"
    assert _support_records(app, other) == []


def test_never_for_owners(app, client, desk):
    """An owner who allows support login still cannot be logged in as."""
    boss = make_user(app, desk.world.live_id, "boss", role="owner", allow_support_login=True)
    response = exchange(client, desk, subject=boss)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"
    assert _support_records(app, boss) == []


def test_only_support_specialists(app, client, desk):
    """A manager's token as actor_token is refused."""
    make_user(app, desk.world.live_id, "mona", role="manager")
    response = exchange(client, desk, actor_token=desk.token_of("mona"))
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"
    assert _support_records(app, desk.sam_id) == []


def test_never_across_accounts(app, client, desk):
    """A user of another account, or of the test twin, is no subject; an agent of another
    account cannot use this account's client."""
    stranger = make_user(
        app, desk.world.other_id, "stan", role="customer", allow_support_login=True
    )
    twin = make_user(app, desk.world.test_id, "tim", role="customer", allow_support_login=True)
    for subject in (stranger, twin):
        response = exchange(client, desk, subject=subject)
        assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"
        assert _support_records(app, subject) == []
    make_user(app, desk.world.other_id, "olaf", role="support_specialist")
    outsider = login(
        client,
        desk.world,
        username="olaf",
        aid=desk.world.other_id,
        client_id=desk.world.other_public_id,
    )["access_token"]
    for subject in (desk.sam_id, stranger):  # even a user of the agent's own account
        response = exchange(client, desk, actor_token=outsider, subject=subject)
        assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"
        assert _support_records(app, subject) == []


def test_no_chains_and_not_oneself(app, client, desk):
    """A support login's token cannot start another one (even for a support specialist
    subject), and an agent cannot exchange for themselves."""
    peer = make_user(
        app, desk.world.live_id, "pia", role="support_specialist", allow_support_login=True
    )
    as_peer = exchange(client, desk, subject=peer).get_json()["access_token"]
    chained = exchange(client, desk, actor_token=as_peer)
    assert chained.status_code == 400 and chained.get_json()["error"] == "invalid_grant"
    myself = exchange(client, desk, subject=desk.agent_id)
    assert myself.status_code == 400
    assert _support_records(app, desk.sam_id) == []


def test_client_must_be_registered_for_token_exchange(app, client, desk):
    """A client without the token-exchange grant type gets unauthorized_client."""
    response = exchange(client, desk, client_id=desk.world.public_id)
    assert response.status_code == 400 and response.get_json()["error"] == "unauthorized_client"
    assert _support_records(app, desk.sam_id) == []


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"actor_token": None}, "invalid_request"),
        ({"actor_token_type": None}, "invalid_request"),
        ({"actor_token_type": "urn:ietf:params:oauth:token-type:jwt"}, "invalid_request"),
        ({"requested_subject": ""}, "invalid_request"),
        ({"requested_subject": "x" * 65}, "invalid_request"),
        ({"requested_subject": "not-a-uuid"}, "invalid_grant"),
        ({"subject_token": "abc", "subject_token_type": ACCESS}, "invalid_request"),
        ({"scope": "openid"}, "invalid_request"),
        (
            {"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
            "invalid_request",
        ),
        ({"actor_token": "garbage"}, "invalid_grant"),
        ({"actor_token": "a.b.c"}, "invalid_grant"),
        ({"actor_token": "x" * 5000}, "invalid_request"),
    ],
)
def test_bad_input_is_a_clear_error(app, client, desk, overrides, error):
    """Missing, malformed, unsupported or oversized parameters are 400 with an OAuth error;
    nothing is recorded."""
    response = exchange(client, desk, **overrides)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"] == error
    assert _support_records(app, desk.sam_id) == []


def test_administrators_cannot_set_the_permission(app, client, desk):
    """allowSupportLogin is the user's own choice: an owner's PATCH /v1/users/{id} with it
    is refused and the value stays."""
    owner = login(client, desk.world, username="alice")["access_token"]
    body = {"data": {"type": "User", "id": desk.sam_id, "attributes": {"allowSupportLogin": False}}}
    response = client.patch(
        f"/v1/users/{desk.sam_id}", data=json.dumps(body), content_type=MEDIA, headers=bearer(owner)
    )
    assert 400 <= response.status_code < 500
    assert exchange(client, desk).status_code == 200


def test_discovery_lists_token_exchange(client):
    """The metadata's grant_types_supported names the token-exchange grant."""
    doc = client.get("/.well-known/openid-configuration").get_json()
    assert EXCHANGE in doc["grant_types_supported"]
