"""The `authserver clients` lifecycle commands: list, show, update, rotate-secret, disable,
enable, delete, each with --json; refusals are one line and change nothing; a disabled
client's tokens and a rotated secret stop at once, also on an instance that cached them.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from factories import PASSWORD, World, make_client
from oauth_helpers import basic, bearer

from authserver.cli import cli
from authserver.identity import demo
from authserver.platform.extensions import db
from authserver.platform.models import OAuthClient
from authserver.platform.security import digest

CB = "https://app.example.com/cb"


@pytest.fixture
def invoke(runner: Any) -> Any:
    def run(*args: str) -> Any:
        return runner.invoke(cli, list(args))

    return run


def _json(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _row(app: Any, client_id: str) -> dict[str, Any]:
    with app.app_context():
        row = db.session.query(OAuthClient).filter_by(client_id=client_id).one()
        return {c.name: getattr(row, c.name) for c in OAuthClient.__table__.columns}


def _one_line_error(result: Any, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def _login(client: Any, world: World, client_id: str, secret: str) -> Any:
    return client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": PASSWORD,
            "scope": f"aid:{world.live_id}",
        },
        headers=basic(client_id, secret),
    )


def test_list_and_show_print_settings_never_secrets(invoke, world):
    """`clients list --account` shows the account's clients; `show` one, with no secret."""
    listed = _json(invoke("clients", "list", "--account", world.live_id, "--json"))
    assert {c["clientId"] for c in listed["clients"]} == {world.public_id, world.conf_id}
    shown = _json(invoke("clients", "show", world.conf_id, "--json"))
    assert shown["name"] == "Backend" and shown["status"] == "active"
    assert "clientSecret" not in shown and world.conf_secret not in json.dumps(listed)
    text = invoke("clients", "list", "--account", world.live_id)
    assert world.conf_id in text.output and "Backend" in text.output
    assert "grant types" in invoke("clients", "show", world.conf_id).output


def test_show_unknown_client_is_one_line(invoke):
    """An unknown client id ends with one line and exit 1."""
    assert "No such client" in _one_line_error(invoke("clients", "show", "nope"))


def test_update_adds_and_removes_uris_and_sets_flags(app, invoke, world):
    """`update` adds and removes redirect URIs, replaces grants and scope, sets skip-consent."""
    data = _json(
        invoke(
            "clients",
            "update",
            world.conf_id,
            "--name",
            "Backend 2",
            "--add-redirect-uri",
            CB,
            "--add-redirect-uri",
            "https://app.example.com/other",
            "--add-post-logout-redirect-uri",
            "https://app.example.com/",
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--scope",
            "openid email",
            "--skip-consent",
            "--json",
        )
    )
    assert data["redirectUris"] == [CB, "https://app.example.com/other"]
    assert data["grantTypes"] == ["authorization_code", "refresh_token"]
    assert data["skipConsent"] is True and data["scope"] == "openid email"
    data = _json(
        invoke(
            "clients",
            "update",
            world.conf_id,
            "--remove-redirect-uri",
            "https://app.example.com/other",
            "--no-skip-consent",
            "--json",
        )
    )
    assert data["redirectUris"] == [CB] and data["skipConsent"] is False
    row = _row(app, world.conf_id)
    assert row["name"] == "Backend 2" and row["post_logout_redirect_uris"] == [
        "https://app.example.com/"
    ]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--add-redirect-uri", "javascript:alert(1)"], 1, "redirectUris"),
        (["--add-redirect-uri", "http://evil.example.com/cb"], 1, "redirectUris"),
        (["--grant-type", "authorization_code"], 1, "redirectUris"),  # no redirect URI
        (["--scope", "openid admin"], 1, "scope"),
        (["--name", " "], 1, "name"),
        (["--remove-redirect-uri", CB], 2, "not one of"),
        ([], 2, "nothing to change"),
    ],
)
def test_update_refuses_bad_input_and_changes_nothing(app, invoke, world, args, code, needle):
    """A refused update is one line on stderr, a non-zero exit, and no change."""
    before = _row(app, world.conf_id)
    result = invoke("clients", "update", world.conf_id, *args)
    assert result.exit_code == code, result.output
    assert needle in result.output
    assert _row(app, world.conf_id) == before


def test_public_client_cannot_get_client_credentials_by_update(app, invoke, world):
    """The rules of registration hold on update: no client_credentials for a public client."""
    line = _one_line_error(
        invoke("clients", "update", world.public_id, "--grant-type", "client_credentials")
    )
    assert "grantTypes" in line
    assert "client_credentials" not in _row(app, world.public_id)["grant_types"]


def test_rotate_secret_refuses_the_old_one_at_once_on_every_instance(app, invoke, world, make_app):
    """The new secret is shown once and stored as a digest; the old one is refused on the
    next request, also by an instance that cached the client a moment ago."""
    other = make_app().test_client()
    assert _login(other, world, world.conf_id, world.conf_secret).status_code == 200
    data = _json(invoke("clients", "rotate-secret", world.conf_id, "--json"))
    new = data["clientSecret"]
    assert new != world.conf_secret and _row(app, world.conf_id)["client_secret_hash"] == digest(
        new
    )
    assert _login(other, world, world.conf_id, world.conf_secret).status_code == 401
    assert _login(other, world, world.conf_id, new).status_code == 200
    assert "shown once" in invoke("clients", "rotate-secret", world.conf_id).output


def test_rotate_secret_of_a_public_client_is_refused(app, invoke, world):
    """A public client has no secret to rotate; nothing changes."""
    assert "public" in _one_line_error(invoke("clients", "rotate-secret", world.public_id))
    assert _row(app, world.public_id)["client_secret_hash"] is None


def test_disable_stops_tokens_at_once_and_enable_revives_none(app, client, invoke, world):
    """`disable` refuses the client's access tokens and its secret at once; `enable` lets
    it get new tokens while the old ones stay void."""
    access = _login(client, world, world.conf_id, world.conf_secret).get_json()["access_token"]
    assert client.get("/v1/account", headers=bearer(access)).status_code == 200
    disabled = _json(invoke("clients", "disable", world.conf_id, "--json"))
    assert disabled == {"clientId": world.conf_id, "status": "disabled"}
    assert client.get("/v1/account", headers=bearer(access)).status_code == 401
    assert _login(client, world, world.conf_id, world.conf_secret).status_code == 401
    assert _json(invoke("clients", "enable", world.conf_id, "--json"))["status"] == "active"
    assert client.get("/v1/account", headers=bearer(access)).status_code == 401
    time.sleep(1.01 - time.time() % 1)  # whole-second iat: the disable's second counts before
    fresh = _login(client, world, world.conf_id, world.conf_secret)
    assert fresh.status_code == 200
    assert (
        client.get("/v1/account", headers=bearer(fresh.get_json()["access_token"])).status_code
        == 200
    )


def test_delete_removes_the_client_from_list_and_show(app, client, invoke, world):
    """`delete` ends the client: gone from list and show, its secret refused."""
    assert _json(invoke("clients", "delete", world.conf_id, "--json"))["status"] == "deleted"
    listed = _json(invoke("clients", "list", "--account", world.live_id, "--json"))
    assert world.conf_id not in {c["clientId"] for c in listed["clients"]}
    _one_line_error(invoke("clients", "show", world.conf_id))
    _one_line_error(invoke("clients", "enable", world.conf_id))
    assert _login(client, world, world.conf_id, world.conf_secret).status_code == 401


def test_list_of_unknown_account_is_one_line(invoke):
    """`clients list` for an account that does not exist fails with one line."""
    _one_line_error(invoke("clients", "list", "--account", "nope"))


def test_create_with_skip_consent(app, invoke, world):
    """`create --skip-consent` marks a first-party app; the default is off."""
    data = _json(
        invoke(
            "clients",
            "create",
            "--account",
            world.live_id,
            "--name",
            "First party",
            "--redirect-uri",
            CB,
            "--skip-consent",
            "--json",
        )
    )
    assert data["skipConsent"] is True
    other = make_client(app, world.live_id, "Third party", redirect_uris=[CB])
    assert _row(app, other.client_id)["skip_consent"] is False


def test_demo_clients_have_the_grants_the_readme_uses(app, client):
    """The demo web app does the README's password, refresh and client-credentials calls;
    the demo mobile app the browser flow and the password grant."""
    with app.app_context():
        summary = demo._create(app)
    web, mobile = summary["clients"]
    aid = summary["account"]["id"]
    admin = next(u for u in summary["users"] if u["username"] == "admin")
    auth = basic(web["clientId"], web["clientSecret"])
    tokens = client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "username": "admin",
            "password": admin["password"],
            "scope": f"aid:{aid}",
        },
        headers=auth,
    )
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    refreshed = client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens.get_json()["refresh_token"]},
        headers=auth,
    )
    assert refreshed.status_code == 200
    credentials = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=auth
    )
    assert credentials.status_code == 200
    with app.app_context():
        row = db.session.query(OAuthClient).filter_by(client_id=mobile["clientId"]).one()
        assert set(row.grant_types) == {"authorization_code", "refresh_token", "password"}
