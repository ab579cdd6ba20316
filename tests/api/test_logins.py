"""Login history: GET /v1/user/logins (oneself) and GET /v1/logins (the account's admins)."""

from __future__ import annotations

from typing import Any

import pytest
from factories import make_user
from oauth_helpers import bearer, login, password_grant, refresh

from authserver.platform.extensions import db
from authserver.platform.models import User


def test_own_history_newest_first_with_failures(app, client, world):
    """A user sees their own logins, newest first, failures with a reason, nobody else's."""
    make_user(app, world.live_id, "carl", role="customer")
    assert (
        password_grant(client, world, "carl", "wrong password", ip="198.51.100.7").status_code
        == 400
    )
    token = login(client, world, username="carl")["access_token"]
    login(client, world)  # alice: not in carl's history
    response = client.get("/v1/user/logins", headers=bearer(token))
    assert response.status_code == 200
    body = response.get_json()
    rows = [item["attributes"] for item in body["data"]]
    assert [(r["success"], r["method"], r["reason"]) for r in rows] == [
        (True, "password", None),
        (False, "password", "bad_credentials"),
    ]
    assert rows[1]["ip"] == "198.51.100.7"
    assert {item["type"] for item in body["data"]} == {"Login"}
    assert body["meta"] == {"totalCount": 2}
    assert rows[0]["time"] >= rows[1]["time"]


def test_account_history_for_administrators_only(app, client, world):
    """An administrator sees every login into the live account; a customer gets 403."""
    make_user(app, world.live_id, "ada", role="administrator")
    make_user(app, world.live_id, "carl", role="customer")
    carl = login(client, world, username="carl")["access_token"]
    login(client, world, username="tess")  # the test account's history is its own
    admin = login(client, world, username="ada")["access_token"]
    response = client.get("/v1/logins", headers=bearer(admin))
    assert response.status_code == 200
    users = {item["attributes"]["userId"] for item in response.get_json()["data"]}
    assert users == {world_user(app, "ada"), world_user(app, "carl")}
    assert client.get("/v1/logins", headers=bearer(carl)).status_code == 403


def world_user(app: Any, username: str) -> str:
    with app.app_context():
        return str(db.session.scalar(db.select(User.id).where(User.username == username)))


def test_pagination_links_and_sizes(app, client, world):
    """page[size]=2 over 5 logins: 2 per page, next/prev/last links, the last page has 1."""
    tokens = [login(client, world)["access_token"] for _ in range(5)]
    token = tokens[-1]
    first = client.get("/v1/user/logins?page[size]=2", headers=bearer(token)).get_json()
    assert len(first["data"]) == 2 and first["meta"] == {"totalCount": 5}
    assert first["links"]["next"].endswith("page[size]=2&page[number]=2")
    assert "prev" not in first["links"]
    last = client.get("/v1/user/logins?page[size]=2&page[number]=3", headers=bearer(token))
    body = last.get_json()
    assert len(body["data"]) == 1 and "next" not in body["links"]
    assert body["links"]["prev"].endswith("page[number]=2")
    seen = [i["id"] for i in first["data"]] + [i["id"] for i in body["data"]]
    assert len(set(seen)) == 3


@pytest.mark.parametrize(
    "query",
    [
        "page[size]=0",
        "page[size]=101",
        "page[size]=abc",
        "page[number]=0",
        "page[number]=-1",
        "page[number]=99999999",
        "page[size]=%C2%B2",
        "page[number]=1e3",
    ],
)
def test_bad_page_parameters_are_400(client, world, query):
    """Out-of-range or non-numeric page parameters: 400 invalid_parameter."""
    token = login(client, world)["access_token"]
    response = client.get(f"/v1/user/logins?{query}", headers=bearer(token))
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["code"] == "invalid_parameter"


def test_guest_and_client_tokens_have_no_own_history(client, world):
    """A guest token is not a user: 403 on /v1/user/logins."""
    guest = client.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": world.live_prt}
    ).get_json()["access_token"]
    assert client.get("/v1/user/logins", headers=bearer(guest)).status_code == 403


def test_refreshes_and_a_refused_reuse_are_in_the_history(client, world):
    """A refresh is recorded as method `refresh`; replaying a rotated refresh token (its
    successor used, so no retry) is recorded as a failed `refresh` with reason
    refresh_token_reused."""
    first = login(client, world)
    second = refresh(client, first["refresh_token"], world.public_id)
    assert second.status_code == 200
    third = refresh(client, second.get_json()["refresh_token"], world.public_id)
    assert third.status_code == 200
    replay = refresh(client, first["refresh_token"], world.public_id)
    assert replay.status_code == 400
    fresh = login(client, world)["access_token"]
    rows = client.get("/v1/user/logins", headers=bearer(fresh)).get_json()["data"]
    seen = [
        (r["attributes"]["method"], r["attributes"]["success"], r["attributes"]["reason"])
        for r in rows
    ]
    assert seen[:5] == [
        ("password", True, None),
        ("refresh", False, "refresh_token_reused"),
        ("refresh", True, None),
        ("refresh", True, None),
        ("password", True, None),
    ]
