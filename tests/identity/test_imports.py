"""`authserver users import`: JSON lines with argon2, bcrypt and Django PBKDF2 hashes become
users who sign in with their old password (password grant and /login), and whose hash is
argon2id from that login on; a file with any bad line is refused by line and writes nothing."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import bcrypt
import pytest
from argon2 import PasswordHasher, Type, extract_parameters
from factories import PASSWORD
from flask import Flask
from oauth_helpers import password_grant
from pages_helpers import submit
from sqlalchemy import func, select

from authserver.cli import cli
from authserver.identity import accounts, users
from authserver.platform.extensions import db
from authserver.platform.models import User

WRONG = "not the password at all"


def bcrypt_hash(password: str = PASSWORD, cost: int = 4) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


def django_hash(password: str = PASSWORD, iterations: int = 1000, salt: str = "pepperSalt") -> str:
    """The format of Django's PBKDF2PasswordHasher (django.contrib.auth.hashers)."""
    raw = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(raw).decode()}"


def argon2i_hash(password: str = PASSWORD) -> str:
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.I).hash(password)


def jsonl(*rows: dict[str, Any] | str) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def person(username: str, password_hash: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "username": username,
        "role": "customer",
        "passwordHash": password_hash or bcrypt_hash(),
        **extra,
    }


@pytest.fixture
def run_import(runner, tmp_path):
    """run_import(account_id, text, *options): the command on a file holding `text`."""

    def run(account_id: str, text: str, *options: str) -> Any:
        path = tmp_path / "users.jsonl"
        path.write_text(text, encoding="utf-8")
        return runner.invoke(cli, ["users", "import", "--account", account_id, str(path), *options])

    return run


def _user(app: Flask, account_id: str, username: str) -> User | None:
    with app.app_context():
        return db.session.scalar(
            select(User).where(User.account_id == account_id, User.username == username)
        )


def _count(app: Flask) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(User)) or 0)


def test_import_stores_every_field_and_keeps_the_hashes(app, world, run_import):
    """Three users with the three hash kinds are stored normalised, as user creation would
    (username lower-cased, email domain lower-cased, verified email stamped), hashes as given."""
    hashes = {"bee": bcrypt_hash(), "dj": django_hash(), "ari": argon2i_hash()}
    text = jsonl(
        person(
            " Bee ",
            hashes["bee"],
            email="Bee@Example.COM",
            emailVerified=True,
            name="Bee Keeper",
            role="manager",
            phone="+15551234567",
            authMethod="tfa_sms",
        ),
        person("dj", hashes["dj"]),
        "",  # blank lines are skipped
        person("ari", hashes["ari"], email="ari@example.com", authMethod="tfa_email"),
    )
    result = run_import(world.live_id, text, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"imported": 3, "errors": []}
    bee = _user(app, world.live_id, "bee")
    assert bee is not None
    assert (bee.email, bee.email_verified, bee.name, bee.role) == (
        "Bee@example.com",
        True,
        "Bee Keeper",
        "manager",
    )
    assert bee.email_verified_at is not None
    assert (bee.phone_number, bee.auth_method, bee.status) == ("+15551234567", "tfa_sms", "active")
    assert bee.password_hash == hashes["bee"]
    dj = _user(app, world.live_id, "dj")
    assert dj is not None and dj.password_hash == hashes["dj"]
    assert dj.auth_method == "simple" and not dj.email_verified
    ari = _user(app, world.live_id, "ari")
    assert ari is not None and ari.auth_method == "tfa_email"


def test_import_human_output(world, run_import):
    """Without --json the command says how many users it imported, on one line."""
    result = run_import(world.live_id, jsonl(person("one"), person("two")))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"Imported 2 users into account {world.live_id}"


@pytest.mark.parametrize(
    ("kind", "make_hash"),
    [("bcrypt", bcrypt_hash), ("django", django_hash), ("argon2i", argon2i_hash)],
)
def test_imported_user_signs_in_by_password_grant_and_gets_argon2id(
    app, client, world, run_import, kind, make_hash
):
    """An imported user's old password works at the token endpoint; a wrong one is refused
    and leaves the hash alone; the right one replaces it with the app's argon2id."""
    old = make_hash()
    assert run_import(world.live_id, jsonl(person("mig", old))).exit_code == 0
    wrong = password_grant(client, world, "mig", WRONG)
    assert wrong.status_code == 400 and wrong.get_json()["error"] == "invalid_grant"
    assert _user(app, world.live_id, "mig").password_hash == old
    right = password_grant(client, world, "mig", PASSWORD)
    assert right.status_code == 200, right.get_data(as_text=True)
    new = _user(app, world.live_id, "mig").password_hash
    assert new.startswith("$argon2id$")
    params = extract_parameters(new)
    assert (params.time_cost, params.memory_cost) == (
        app.config["ARGON2_TIME_COST"],
        app.config["ARGON2_MEMORY_COST"],
    )
    assert password_grant(client, world, "mig", PASSWORD).status_code == 200
    assert password_grant(client, world, "mig", WRONG).status_code == 400


def test_imported_user_signs_in_on_the_login_page_and_gets_argon2id(web, world, run_import):
    """The hosted /login accepts an imported Django user's old password and stores argon2id."""
    old = django_hash()
    assert run_import(world.live_id, jsonl(person("page", old))).exit_code == 0
    browser = web.test_client()
    path = f"/login?aid={world.live_id}"
    assert submit(browser, path, {"username": "page", "password": WRONG}).status_code == 401
    assert _user(web, world.live_id, "page").password_hash == old
    assert submit(browser, path, {"username": "page", "password": PASSWORD}).status_code == 303
    assert _user(web, world.live_id, "page").password_hash.startswith("$argon2id$")


def test_bcrypt_uses_the_first_72_bytes_as_its_makers_did(app, client, world, run_import):
    """A bcrypt hash of a long password (made from its first 72 bytes, as bcrypt does)
    accepts that password rather than failing on bcrypt 5's length check."""
    long = "é" * 40  # 80 bytes
    made = bcrypt.hashpw(long.encode()[:72], bcrypt.gensalt(4)).decode()
    assert run_import(world.live_id, jsonl(person("longpw", made))).exit_code == 0
    assert password_grant(client, world, "longpw", long).status_code == 200


def test_bad_lines_are_reported_by_number_and_nothing_is_written(app, world, run_import):
    """Every bad line is named with its number and field; the good lines are not imported."""
    with app.app_context():
        account = accounts.get_account(world.live_id)
        glob = users.create_user(account=None, username="globe", password=PASSWORD, role="owner")
        users.add_member(account, glob, "manager")
    before = _count(app)
    lines = [
        person("good1"),  # 1
        "{not json",  # 2
        person("bad name!"),  # 3
        person("x", role="emperor"),  # 4
        person("y", email="nope"),  # 5
        person("z", authMethod="tfa_totp"),  # 6
        person("w", authMethod="tfa_sms"),  # 7: no phone
        person("v", passwordHash="plaintext-password"),  # 8
        person("GOOD1"),  # 9: same as line 1 once normalised
        person("alice"),  # 10: an account user already has it
        person("globe"),  # 11: a global member of the account has it
        {"username": "u", "role": "customer"},  # 12: no hash
        person("t", colour="blue"),  # 13
        person("s", emailVerified=True),  # 14: no email
        person("r", passwordHash=bcrypt_hash(cost=4).replace("$04$", "$16$")),  # 15: cost
        person("q", passwordHash=django_hash(iterations=2_000_001)),  # 16
        "[1, 2]",  # 17
        person("good2", phone="555"),  # 18
    ]
    result = run_import(world.live_id, jsonl(*lines), "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["imported"] == 0
    by_line = {e["line"]: e for e in report["errors"]}
    assert sorted(by_line) == list(range(2, 19))
    expected_fields = {
        3: "username",
        4: "role",
        5: "email",
        6: "authMethod",
        7: "phone",
        8: "passwordHash",
        9: "username",
        10: "username",
        11: "username",
        12: "passwordHash",
        13: "colour",
        14: "emailVerified",
        15: "passwordHash",
        16: "passwordHash",
        18: "phone",
    }
    for line, field in expected_fields.items():
        assert by_line[line]["field"] == field, by_line[line]
    assert "line 1" in by_line[9]["detail"]
    assert by_line[10]["detail"] == by_line[11]["detail"] == "Username is already taken."
    assert _count(app) == before
    assert _user(app, world.live_id, "good1") is None


def test_bad_lines_human_output(app, world, run_import):
    """Without --json each bad line is one stderr line `line N: detail (field)`, then a
    summary; the exit status is 1."""
    result = run_import(world.live_id, jsonl(person("ok"), person("ok"), "nope"))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == [
        "line 2: Username is also on line 1. (username)",
        "line 3: The line is not valid JSON.",
        "authserver: error: 2 bad lines; nothing imported",
    ]
    assert _user(app, world.live_id, "ok") is None


def test_unknown_account_is_one_line_and_writes_nothing(app, run_import):
    """An account id that does not exist is a one-line error (exit 1)."""
    before = _count(app)
    result = run_import("00000000-0000-0000-0000-000000000000", jsonl(person("a")))
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert _count(app) == before


def test_same_username_in_another_account_is_allowed(app, world, run_import):
    """Usernames are per account: importing `alice` into another account works."""
    result = run_import(world.other_id, jsonl(person("alice")))
    assert result.exit_code == 0, result.output
    assert _user(app, world.other_id, "alice") is not None


def test_import_reads_standard_input(app, runner, world):
    """`-` as FILE reads the JSON lines from standard input."""
    result = runner.invoke(
        cli,
        ["users", "import", "--account", world.live_id, "-", "--json"],
        input=jsonl(person("piped")).encode(),
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["imported"] == 1
    assert _user(app, world.live_id, "piped") is not None


def test_unique_emails_are_enforced_on_import_when_the_account_requires_them(
    app, world, run_import
):
    """With requireUniqueEmails on, a line repeating an earlier line's email (any case) or
    a stored user's is refused by number and nothing is imported; without it they pass,
    and imported users get emailAddedAt."""
    with app.app_context():
        users.create_user(
            account=accounts.get_account(world.live_id),
            username="held",
            password=PASSWORD,
            role="customer",
            email="held@example.com",
        )
        accounts.update_account(
            accounts.get_account(world.live_id), {"require_unique_emails": True}
        )
    lines = jsonl(
        person("a1", email="same@example.com"),
        person("a2", email="SAME@example.com"),
        person("a3", email="Held@example.com"),
    )
    result = run_import(world.live_id, lines, "--json")
    assert result.exit_code == 1, result.output
    errors = {e["line"]: e for e in json.loads(result.output)["errors"]}
    assert sorted(errors) == [2, 3] and {e["field"] for e in errors.values()} == {"email"}
    assert _user(app, world.live_id, "a1") is None
    assert run_import(world.other_id, lines).exit_code == 0
    imported = _user(app, world.other_id, "a2")
    assert imported is not None and imported.email_added_at is not None
