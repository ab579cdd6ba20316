"""Username changes answer "taken or not" (409 vs 200), so PATCH /v1/user and
/v1/users/{id} are throttled like sign-ups: per person asking and per IP."""

from __future__ import annotations

import json
from typing import Any

from factories import World, make_user
from flask.testing import FlaskClient
from oauth_helpers import bearer, login
from verification_helpers import role_token

from authserver.identity import users
from authserver.platform.extensions import db
from authserver.platform.models import User

MEDIA = "application/vnd.api+json"
LIMIT = users.USERNAME_CHANGES[0]


def patch(
    client: FlaskClient, token: str, path: str, user_id: str, attrs: dict[str, Any], ip: str
) -> Any:
    body = {"data": {"type": "User", "id": user_id, "attributes": attrs}}
    return client.patch(
        path,
        data=json.dumps(body),
        content_type=MEDIA,
        headers=bearer(token),
        environ_base={"REMOTE_ADDR": ip},
    )


def username_of(app: Any, user_id: str) -> str:
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        return user.username


def test_member_probing_usernames_gets_429(app, client, world: World):
    """Finding 13: a signed-in customer probing names with PATCH /v1/user gets 409/200 for
    USERNAME_CHANGES attempts, then 429 with Retry-After (from another IP too), and the
    refused change is not made."""
    carl = make_user(app, world.live_id, "carl")
    token = login(client, world, username="carl")["access_token"]
    statuses = set()
    for i in range(LIMIT):
        name = "alice" if i % 2 else f"carl{i}"  # alice exists: 409
        response = patch(client, token, "/v1/user", carl, {"username": name}, "198.51.100.1")
        statuses.add(response.status_code)
    assert statuses == {200, 409}
    before = username_of(app, carl)
    for ip in ("198.51.100.1", "198.51.100.2"):
        refused = patch(client, token, "/v1/user", carl, {"username": "alice"}, ip)
        assert refused.status_code == 429
        assert refused.json["errors"][0]["code"] == "throttled"
        assert int(refused.headers["Retry-After"]) > 0
    refused = patch(client, token, "/v1/user", carl, {"username": "free-name"}, "198.51.100.3")
    assert refused.status_code == 429
    assert username_of(app, carl) == before


def test_other_profile_changes_are_not_counted(app, client, world: World):
    """Changing the name (or sending the current username) is not a probe: never 429."""
    carl = make_user(app, world.live_id, "carl")
    token = login(client, world, username="carl")["access_token"]
    for i in range(LIMIT + 5):
        attrs = {"name": f"Carl {i}", "username": "carl"}
        assert patch(client, token, "/v1/user", carl, attrs, "198.51.100.4").status_code == 200


def test_one_ip_probing_with_many_accounts_gets_429(app, client, world: World):
    """Many members behind one IP share its budget: past USERNAME_CHANGES, 429 for the next."""
    tokens = {}
    for i in range(3):
        user_id = make_user(app, world.live_id, f"prober{i}")
        tokens[user_id] = login(client, world, username=f"prober{i}")["access_token"]
    ids = list(tokens)
    for i in range(LIMIT):
        user_id = ids[i % 3]
        attrs = {"username": f"probe-{i}"}
        response = patch(client, tokens[user_id], "/v1/user", user_id, attrs, "198.51.100.5")
        assert response.status_code in (200, 409)
    user_id = ids[0]
    attrs = {"username": "alice"}
    assert (
        patch(client, tokens[user_id], "/v1/user", user_id, attrs, "198.51.100.5").status_code
        == 429
    )
    assert (
        patch(client, tokens[user_id], "/v1/user", user_id, attrs, "198.51.100.6").status_code
        == 409
    )


def test_administrator_renames_are_throttled_too(app, client, world: World):
    """PATCH /v1/users/{id} with a new username counts per administrator: then 429."""
    admin = role_token(app, client, world, "administrator")
    carl = make_user(app, world.live_id, "carl")
    for i in range(LIMIT):
        response = patch(
            client, admin, f"/v1/users/{carl}", carl, {"username": f"c{i}"}, "10.1.1.1"
        )
        assert response.status_code == 200
    refused = patch(client, admin, f"/v1/users/{carl}", carl, {"username": "alice"}, "10.1.1.2")
    assert refused.status_code == 429
    assert username_of(app, carl) == f"c{LIMIT - 1}"
