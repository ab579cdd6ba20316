"""JSON:API query parameters on /v1 GETs: `sort` (users, logins, audit events),
sparse `fields[TYPE]` on every GET, `include=account` on users, and a 400 naming the
parameter for anything in JSON:API's reserved style a route does not support."""

from __future__ import annotations

import time
from typing import Any

import pytest
from factories import make_user
from oauth_helpers import bearer, login, password_grant
from verification_helpers import role_token

from authserver.api import query

USERS = "/v1/users"


def _get(client: Any, token: str, url: str) -> Any:
    return client.get(url, headers=bearer(token))


def _ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return dict(response.get_json())


def _bad(response: Any, parameter: str) -> dict[str, Any]:
    assert response.status_code == 400, response.get_data(as_text=True)
    [error] = response.get_json()["errors"]
    assert error["source"] == {"parameter": parameter}
    return dict(error)


@pytest.fixture
def owner(client: Any, world: Any) -> str:
    return str(login(client, world)["access_token"])


def _names(doc: dict[str, Any]) -> list[str]:
    return [u["attributes"]["username"] for u in doc["data"]]


def test_users_sort_by_username_and_creation_time(app, client, world, owner):
    """sort=username, -username, createdAt and -createdAt order the list; the page links
    keep the sort."""
    for name in ("carl", "bert", "dora"):
        make_user(app, world.live_id, name)
        time.sleep(0.01)  # distinct creation times
    by_name = _names(_ok(_get(client, owner, f"{USERS}?sort=username")))
    assert by_name == sorted(by_name)
    assert _names(_ok(_get(client, owner, f"{USERS}?sort=-username"))) == by_name[::-1]
    oldest = _names(_ok(_get(client, owner, f"{USERS}?sort=createdAt")))
    assert oldest[-3:] == ["carl", "bert", "dora"]
    newest = _ok(_get(client, owner, f"{USERS}?sort=-createdAt&page[size]=2"))
    assert _names(newest) == ["dora", "bert"]
    assert "sort=-createdAt" in newest["links"]["next"]


@pytest.mark.parametrize(
    "value", ["name", "-", "username,", ",username", "--username", "createdAt,email", "x" * 500]
)
def test_users_bad_sort_is_400_naming_sort(client, world, owner, value):
    """A sort key the route does not support (or a malformed list) is 400 with
    source.parameter sort."""
    _bad(_get(client, owner, f"{USERS}?sort={value}"), "sort")


def test_logins_and_audit_events_sort_by_time(app, client, world, owner):
    """Logins and audit events are newest first; sort=time turns them oldest first."""
    password_grant(client, world, "alice", "wrong-password")
    login(client, world)
    newest = _ok(_get(client, owner, "/v1/user/logins"))["data"]
    oldest = _ok(_get(client, owner, "/v1/user/logins?sort=time"))["data"]
    assert [r["id"] for r in oldest] == [r["id"] for r in newest][::-1]
    assert _ok(_get(client, owner, "/v1/logins?sort=-time"))["data"][0]["id"] == newest[0]["id"]
    make_user(app, world.live_id, "audited")
    role_token(app, client, world, "manager")
    events = _ok(_get(client, owner, "/v1/audit_events"))["data"]
    ascending = _ok(_get(client, owner, "/v1/audit_events?sort=time"))["data"]
    assert len(events) >= 2
    assert [e["id"] for e in ascending] == [e["id"] for e in events][::-1]
    _bad(_get(client, owner, "/v1/audit_events?sort=action"), "sort")


def test_sparse_fieldsets_keep_only_the_named_fields(client, world, owner):
    """fields[User]=username,email leaves only those attributes (and no relationships);
    an empty list leaves none; fields of another type do not touch users."""
    doc = _ok(_get(client, owner, "/v1/user?fields[User]=username,email"))
    assert set(doc["data"]["attributes"]) == {"username", "email"}
    assert "relationships" not in doc["data"]
    bare = _ok(_get(client, owner, "/v1/user?fields[User]="))["data"]
    assert set(bare) == {"type", "id"}
    linked = _ok(_get(client, owner, "/v1/user?fields[User]=account"))["data"]
    assert "attributes" not in linked and linked["relationships"]["account"]["data"]["id"]
    untouched = _ok(_get(client, owner, "/v1/user?fields[Account]=name"))["data"]
    assert "createdAt" in untouched["attributes"]
    listed = _ok(_get(client, owner, f"{USERS}?fields[User]=role"))["data"]
    assert all(set(u["attributes"]) == {"role"} for u in listed)


def test_include_account_adds_it_and_its_sparse_fieldset_applies(client, world, owner):
    """include=account puts the user's Account under `included`, once for a whole list;
    fields[Account] trims it."""
    doc = _ok(_get(client, owner, "/v1/user?include=account&fields[Account]=name,mode"))
    [account] = doc["included"]
    assert (account["type"], account["id"]) == ("Account", world.live_id)
    assert account["attributes"] == {"name": "Acme", "mode": "live"}
    listed = _ok(_get(client, owner, f"{USERS}?include=account"))
    assert [a["id"] for a in listed["included"]] == [world.live_id]
    assert "included" not in _ok(_get(client, owner, "/v1/user"))


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        ("/v1/user?include=memberships", "include"),
        ("/v1/user?include=", "include"),
        ("/v1/user?include=account,account.owner", "include"),
        ("/v1/clients?include=account", "include"),
        ("/v1/account?include=users", "include"),
        ("/v1/clients?sort=name", "sort"),
        ("/v1/user?sort=username", "sort"),
        ("/v1/user?fields[User]=password", "fields[User]"),
        ("/v1/user?fields[User]=username,,email", "fields[User]"),
        ("/v1/user?fields[Client]=name", "fields[Client]"),
        ("/v1/user?fields=username", "fields"),
        ("/v1/user?filter[status]=active", "filter[status]"),
        ("/v1/users?filter[bogus]=1", "filter[bogus]"),
        ("/v1/users?page[offset]=1", "page[offset]"),
        ("/v1/users?bogus=1", "bogus"),
        ("/v1/account?search=x", "search"),
        ("/v1/users?sort=username&sort=createdAt", "sort"),
    ],
)
def test_unsupported_reserved_parameters_are_400_naming_them(client, world, owner, url, parameter):
    """What a route does not support, in JSON:API's reserved style (a-z only, or a known
    family), is 400 with source.parameter; a repeated parameter too."""
    _bad(_get(client, owner, url), parameter)


def test_implementation_specific_names_are_left_alone(client, world, owner):
    """A name with a capital, digit, dash or underscore is not JSON:API's to reserve: it is
    ignored, as before."""
    assert _get(client, owner, "/v1/user?cacheBust=1&_=2&v2=x").status_code == 200


def test_every_get_route_declares_the_fields_its_resources_have(app, client, world, owner):
    """Each GET route's fields[TYPE] names are exactly its resources' attributes and
    relationships, so a sparse fieldset can name every field and nothing else."""
    role_token(app, client, world, "manager")  # a login and an audit event to render
    urls = {
        "/v1/user": "User",
        "/v1/users": "User",
        "/v1/account": "Account",
        "/v1/account/publishable_token": "PublishableToken",
        "/v1/clients": "Client",
        "/v1/logins": "Login",
        "/v1/user/logins": "Login",
        "/v1/audit_events": "AuditEvent",
    }
    for url, type_ in urls.items():
        doc = _ok(_get(client, owner, url))
        items = doc["data"] if isinstance(doc["data"], list) else [doc["data"]]
        assert items, url
        endpoint = app.url_map.bind("localhost").match(url)[0]
        declared = query.spec_of(app.view_functions[endpoint]).types[type_]
        for item in items:
            present = set(item.get("attributes", {})) | set(item.get("relationships", {}))
            assert present == declared, url
