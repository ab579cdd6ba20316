"""Audit log through the command line: every CLI change leaves one row naming the
operator (`cli`), a refused one none, and `authserver audit list` reads them back.
"""

from __future__ import annotations

import getpass
import json

import bcrypt
import pytest
import sqlalchemy as sa

from authserver.cli import cli
from authserver.platform.extensions import db
from authserver.platform.models import AuditEvent

PASSWORD = "a long enough passphrase"


@pytest.fixture
def invoke(runner):
    def run(*args, input=None):
        return runner.invoke(cli, list(args), input=input)

    return run


def ok(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def rows(app) -> list[tuple[str, str, str, str | None, list[str]]]:
    """(action, actor, target type, account, changed) of every row, oldest first."""
    with app.app_context():
        found = db.session.scalars(
            sa.select(AuditEvent).order_by(AuditEvent.created_at, AuditEvent.id)
        ).all()
        return [
            (r.action, f"{r.actor_type}:{r.actor_id}", r.target_type, r.account_id, r.changed)
            for r in found
        ]


def test_every_cli_change_leaves_one_row_naming_the_operator(app, invoke):
    """accounts create, regenerate-publishable-token, users create (account and global),
    users import, clients create and keys rotate: one row each, actor cli:<login name>,
    no secret among them."""
    me = f"cli:{getpass.getuser()}"
    account = ok(invoke("accounts", "create", "--name", "Acme", "--json"))
    aid = account["id"]
    assert rows(app) == [
        (
            "account.create",
            me,
            "Account",
            aid,
            ["api_version", "default_auth_method", "default_locale", "name"],
        )
    ]
    ok(invoke("accounts", "regenerate-publishable-token", "--account", aid, "--json"))
    user = ok(
        invoke(
            "users", "create", "--account", aid, "--username", "root", "--password", "-",
            "--role", "owner", "--json", input=PASSWORD + "\n",
        )
    )  # fmt: skip
    ok(
        invoke(
            "users", "create", "--global", "--username", "g@example.com", "--password", PASSWORD,
            "--role", "customer", "--json",
        )
    )  # fmt: skip
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    line = {"username": "imp", "role": "customer", "passwordHash": hashed}
    result = invoke("users", "import", "--account", aid, "-", input=json.dumps(line) + "\n")
    assert result.exit_code == 0, result.output
    client = ok(
        invoke(
            "clients",
            "create",
            "--account",
            aid,
            "--name",
            "Backend",
            "--grant-type",
            "client_credentials",
            "--json",
        )
    )
    keys = ok(invoke("keys", "rotate", "--json"))
    got = rows(app)
    assert [(a, actor, t, acc) for a, actor, t, acc, _ in got] == [
        ("account.create", me, "Account", aid),
        ("account.publishable_token.regenerate", me, "Account", aid),
        ("user.create", me, "User", aid),
        ("user.create", me, "User", None),
        ("user.import", me, "Account", aid),
        ("client.create", me, "OAuthClient", aid),
        ("key.rotate", me, "SigningKey", None),
    ]
    assert got[2][4] == ["password", "role", "username"]
    with app.app_context():
        targets = db.session.scalars(
            sa.select(AuditEvent.target_id).order_by(AuditEvent.created_at)
        ).all()
    assert targets[2] == user["id"]
    assert targets[5] == client["clientId"]
    assert targets[6] == ",".join(k["kid"] for k in keys["keys"])
    dumped = json.dumps([*got, targets])
    assert PASSWORD not in dumped and client["clientSecret"] not in dumped


def test_a_refused_cli_change_leaves_no_row(app, invoke):
    """An import with a bad line imports nothing and records nothing; a refused user
    creation neither."""
    aid = ok(invoke("accounts", "create", "--name", "Acme", "--json"))["id"]
    bad = json.dumps({"username": "x", "role": "nope", "passwordHash": "plain"}) + "\n"
    assert invoke("users", "import", "--account", aid, "-", input=bad).exit_code == 1
    result = invoke(
        "users", "create", "--account", aid, "--username", "u", "--password", "short",
        "--role", "customer",
    )  # fmt: skip
    assert result.exit_code == 1
    assert [r[0] for r in rows(app)] == ["account.create"]


def test_audit_list_newest_first_with_filters(app, invoke):
    """`audit list --json` gives every event newest first with its total; --account,
    --action and --target-id narrow it; the human form prints one line an event."""
    first = ok(invoke("accounts", "create", "--name", "One", "--json"))["id"]
    second = ok(invoke("accounts", "create", "--name", "Two", "--json"))["id"]
    ok(invoke("accounts", "regenerate-publishable-token", "--account", first, "--json"))
    listed = ok(invoke("audit", "list", "--json"))
    assert listed["totalCount"] == 3
    assert [(e["action"], e["targetId"]) for e in listed["events"]] == [
        ("account.publishable_token.regenerate", first),
        ("account.create", second),
        ("account.create", first),
    ]
    assert listed["events"][0]["actorType"] == "cli"
    one = ok(invoke("audit", "list", "--account", first, "--action", "account.create", "--json"))
    assert [e["targetId"] for e in one["events"]] == [first]
    by_target = ok(invoke("audit", "list", "--target-id", second, "--json"))
    assert [e["action"] for e in by_target["events"]] == ["account.create"]
    limited = ok(invoke("audit", "list", "--limit", "1", "--json"))
    assert (len(limited["events"]), limited["totalCount"]) == (1, 3)
    human = invoke("audit", "list")
    assert human.exit_code == 0
    lines = human.output.splitlines()
    assert lines[0].split()[1:4] == ["account.publishable_token.regenerate", "Account", first]
    assert lines[-1] == "3 of 3 events"
    assert invoke("audit", "list", "--action", "nope").exit_code == 2


def test_every_key_command_is_recorded(app, invoke):
    """keys rotate, retire and revoke: one row each naming the key ids, written with the
    key change itself (the command's own transaction)."""
    new = [k["kid"] for k in ok(invoke("keys", "rotate", "--json"))["keys"]]
    ok(invoke("keys", "retire", new[0], "--json"))
    ok(invoke("keys", "revoke", new[1], "--json"))
    got = [(action, target) for action, _, target, _, _ in rows(app)]
    assert got == [
        ("key.rotate", "SigningKey"),
        ("key.retire", "SigningKey"),
        ("key.revoke", "SigningKey"),
    ]
    with app.app_context():
        targets = db.session.scalars(
            sa.select(AuditEvent.target_id).order_by(AuditEvent.created_at)
        ).all()
    assert targets == [",".join(new), new[0], new[1]]
