"""The `authserver` command line: every command, its JSON output and its one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from authserver.cli import cli
from authserver.platform import keys
from authserver.platform.extensions import db
from authserver.platform.models import Account, OAuthClient, User
from authserver.platform.security import digest

AUTHSERVER = os.path.join(os.path.dirname(sys.executable), "authserver")


@pytest.fixture
def invoke(runner):
    def run(*args, input=None):
        return runner.invoke(cli, list(args), input=input)

    return run


@pytest.fixture
def account(invoke):
    result = invoke("accounts", "create", "--name", "Acme", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _count(app, model):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def _one_line_error(result, code=1):
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_accounts_create_makes_a_live_account_paired_with_a_test_account(app, account):
    """`accounts create` returns the id, the test account id and two distinct publishable tokens."""
    tokens = account["publishableTokens"]
    assert tokens["live"].startswith("prt-live-") and tokens["test"].startswith("prt-test-")
    with app.app_context():
        live = db.session.get(Account, account["id"])
        test = db.session.get(Account, account["testAccountId"])
        assert (live.mode, test.mode) == ("live", "test")
        assert live.test_account_id == test.id
        assert test.name == live.name == "Acme"


def test_accounts_create_rejects_an_empty_name_and_writes_nothing(app, invoke):
    """A blank name is a one-line error, and no half account is left behind."""
    line = _one_line_error(invoke("accounts", "create", "--name", "   "))
    assert "name" in line
    assert _count(app, Account) == 0


def test_accounts_regenerate_publishable_token(app, invoke, account):
    """Regenerating gives a new token of the same mode; the old one is gone."""
    result = invoke(
        "accounts", "regenerate-publishable-token", "--account", account["id"], "--json"
    )
    assert result.exit_code == 0, result.output
    new = json.loads(result.output)["publishableToken"]
    assert new.startswith("prt-live-") and new != account["publishableTokens"]["live"]
    with app.app_context():
        assert db.session.get(Account, account["id"]).publishable_token == new


def test_users_create_account_user(app, invoke, account):
    """`users create --account` stores a normalised username, an argon2 hash and the role."""
    result = invoke(
        "users",
        "create",
        "--account",
        account["id"],
        "--username",
        "  Alice@Example.COM ",
        "--password",
        "correct horse battery",
        "--role",
        "administrator",
        "--email",
        "alice@example.com",
        "--email-verified",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    with app.app_context():
        user = db.session.get(User, data["id"])
        assert user.username == "alice@example.com"
        assert user.account_id == account["id"]
        assert user.role == "administrator"
        assert user.email_verified and user.email_verified_at is not None
        assert user.password_hash.startswith("$argon2id$")
        assert "correct horse" not in user.password_hash
        assert user.auth_method == "simple"


def test_users_create_global_user_and_password_from_stdin(app, invoke):
    """`--global` makes a user without account; `--password -` reads the password from stdin."""
    result = invoke(
        "users",
        "create",
        "--global",
        "--username",
        "owner@example.com",
        "--password",
        "-",
        "--role",
        "owner",
        "--json",
        input="a long enough secret\n",
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = db.session.get(User, json.loads(result.output)["id"])
        assert user.account_id is None
        passwords = app.extensions["authserver.passwords"]
        assert passwords.verify(user.password_hash, "a long enough secret")


def test_users_create_with_a_second_factor(app, invoke, account):
    """`--auth-method tfa_sms --phone` stores the method and the E.164 phone."""
    result = invoke(
        "users",
        "create",
        "--account",
        account["id"],
        "--username",
        "bob",
        "--password",
        "another fine secret",
        "--role",
        "customer",
        "--phone",
        "+15551234567",
        "--auth-method",
        "tfa_sms",
        "--json",
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = db.session.get(User, json.loads(result.output)["id"])
        assert (user.auth_method, user.phone_number) == ("tfa_sms", "+15551234567")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["--username", "bad name!", "--password", "long enough pw", "--role", "customer"],
            "username",
        ),
        (["--username", "", "--password", "long enough pw", "--role", "customer"], "username"),
        (["--username", "carol", "--password", "short", "--role", "customer"], "password"),
        (["--username", "carol", "--password", "x" * 129, "--role", "customer"], "password"),
        (["--username", "carol", "--password", "carol", "--role", "customer"], "password"),
        (["--username", "carol", "--password", "password1", "--role", "customer"], "common"),
        (["--username", "carol", "--password", "Iloveyou ", "--role", "customer"], "common"),
        (
            [
                "--username",
                "carol",
                "--password",
                "long enough pw",
                "--role",
                "customer",
                "--email",
                "not-an-email",
            ],
            "email",
        ),
        (
            [
                "--username",
                "carol",
                "--password",
                "long enough pw",
                "--role",
                "customer",
                "--phone",
                "555-1234",
            ],
            "phoneNumber",
        ),
        (
            [
                "--username",
                "carol",
                "--password",
                "long enough pw",
                "--role",
                "customer",
                "--auth-method",
                "tfa_email",
            ],
            "email",
        ),
        (
            [
                "--username",
                "carol",
                "--password",
                "long enough pw",
                "--role",
                "customer",
                "--auth-method",
                "tfa_sms",
            ],
            "phoneNumber",
        ),
        (
            ["--username", "car\x00ol", "--password", "long enough pw", "--role", "customer"],
            "username",
        ),
        (
            [
                "--username",
                "carol",
                "--password",
                "long enough pw",
                "--role",
                "customer",
                "--auth-method",
                "tfa_totp",
            ],
            "authenticator app",
        ),
    ],
)
def test_users_create_rejects_bad_input_with_one_line(app, invoke, account, args, needle):
    """Each invalid field gives one line naming it, exit 1, and no user."""
    line = _one_line_error(invoke("users", "create", "--account", account["id"], *args))
    assert needle in line
    assert _count(app, User) == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--auth-method", "tfa_totp"],
            "authserver: error: The user sets up an authenticator app themselves (security "
            "page or /v1/totp_setups); create them with another method. (authMethod)",
        ),
        (
            ["--phone", "555-1234"],
            "authserver: error: Phone number must be in E.164 form, e.g. +15551234567. "
            "(phoneNumber)",
        ),
    ],
)
def test_users_create_error_line_word_for_word(invoke, account, args, expected):
    """The one-line error says where to go and names the field as it always has."""
    carol = ["--username", "carol", "--password", "long enough pw", "--role", "customer"]
    line = _one_line_error(invoke("users", "create", "--account", account["id"], *carol, *args))
    assert line == expected


def test_users_create_refuses_a_taken_username(app, invoke, account):
    """The same username twice in one account is refused the second time (one user remains)."""
    args = [
        "users",
        "create",
        "--account",
        account["id"],
        "--username",
        "dave",
        "--password",
        "long enough pw",
        "--role",
        "customer",
    ]
    assert invoke(*args).exit_code == 0
    line = _one_line_error(invoke(*args[:5], "DAVE", *args[6:]))
    assert "taken" in line
    assert _count(app, User) == 1


def test_same_username_in_two_accounts_is_allowed(app, invoke, account):
    """Usernames are unique per account, not across accounts."""
    other = json.loads(invoke("accounts", "create", "--name", "Other", "--json").output)
    for acc in (account["id"], other["id"]):
        result = invoke(
            "users",
            "create",
            "--account",
            acc,
            "--username",
            "erin",
            "--password",
            "long enough pw",
            "--role",
            "customer",
        )
        assert result.exit_code == 0, result.output
    assert _count(app, User) == 2


def test_users_create_needs_exactly_one_of_account_or_global(app, invoke, account):
    """Neither or both of --account/--global is a usage error (exit 2), nothing written."""
    base = ["--username", "frank", "--password", "long enough pw", "--role", "customer"]
    assert invoke("users", "create", *base).exit_code == 2
    assert invoke("users", "create", "--global", "--account", account["id"], *base).exit_code == 2
    assert _count(app, User) == 0


def test_users_create_unknown_account_and_role(app, invoke):
    """An unknown account id is a one-line error; an unknown role is refused by the parser."""
    line = _one_line_error(
        invoke(
            "users",
            "create",
            "--account",
            "nope",
            "--username",
            "g",
            "--password",
            "long enough pw",
            "--role",
            "customer",
        )
    )
    assert "account" in line.lower()
    result = invoke(
        "users",
        "create",
        "--global",
        "--username",
        "g",
        "--password",
        "long enough pw",
        "--role",
        "emperor",
    )
    assert result.exit_code == 2 and "emperor" in result.output


def test_clients_create_confidential_secret_shown_once_and_stored_hashed(app, invoke, account):
    """A confidential client gets a secret in the output; only its digest is stored."""
    result = invoke(
        "clients",
        "create",
        "--account",
        account["id"],
        "--name",
        "Web",
        "--redirect-uri",
        "https://app.example.com/cb",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len(data["clientSecret"]) >= 43  # 256 bits, base64url
    with app.app_context():
        client = db.session.scalar(select(OAuthClient).filter_by(client_id=data["clientId"]))
        assert client.client_secret_hash == digest(data["clientSecret"])
        assert data["clientSecret"] not in json.dumps(
            {c.name: str(getattr(client, c.name)) for c in OAuthClient.__table__.columns}
        )
        # Safe defaults: no password grant or client credentials unless asked for.
        assert client.grant_types == ["authorization_code", "refresh_token"]


def test_clients_create_without_redirect_uri_or_grants_is_refused(app, invoke, account):
    """With neither redirect URI nor grant types, the default browser flow has nowhere to go."""
    line = _one_line_error(
        invoke("clients", "create", "--account", account["id"], "--name", "Backend")
    )
    assert "redirectUris" in line
    assert _count(app, OAuthClient) == 0


def test_clients_create_backend_with_client_credentials_when_asked(invoke, account):
    """Client credentials only when asked for, and then without the browser flow."""
    result = invoke(
        "clients",
        "create",
        "--account",
        account["id"],
        "--name",
        "Backend",
        "--grant-type",
        "client_credentials",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["grantTypes"] == ["client_credentials"]


def test_clients_create_public_client(app, invoke, account):
    """`--public` registers a client without a secret, for PKCE and native apps."""
    result = invoke(
        "clients",
        "create",
        "--account",
        account["id"],
        "--name",
        "Mobile",
        "--public",
        "--redirect-uri",
        "com.example.app:/cb",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert "clientSecret" not in data and data["public"] is True
    assert data["grantTypes"] == ["authorization_code", "refresh_token"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--redirect-uri", "javascript:alert(1)"], "redirectUris"),
        (["--redirect-uri", "http://evil.example.com/cb"], "redirectUris"),
        (["--redirect-uri", "https://app.example.com/cb#frag"], "redirectUris"),
        (["--redirect-uri", "https://user@app.example.com/cb"], "redirectUris"),
        (["--redirect-uri", "myapp:/cb"], "redirectUris"),
        (["--grant-type", "authorization_code"], "redirectUris"),  # needs a redirect URI
        (["--public", "--grant-type", "client_credentials"], "grantTypes"),
        (["--redirect-uri", "https://a.example/cb", "--scope", "openid admin"], "scope"),
    ],
)
def test_clients_create_rejects_bad_input(app, invoke, account, extra, needle):
    """Unsafe redirect URIs, impossible grant combinations and unknown scopes are refused."""
    line = _one_line_error(
        invoke("clients", "create", "--account", account["id"], "--name", "Bad", *extra)
    )
    assert needle in line
    assert _count(app, OAuthClient) == 0


def test_clients_create_unknown_grant_type_is_refused(invoke, account):
    """An unknown grant type is refused by the parser (exit 2)."""
    result = invoke(
        "clients", "create", "--account", account["id"], "--name", "X", "--grant-type", "implicit"
    )
    assert result.exit_code == 2


def test_keys_rotate_publishes_first_and_keeps_the_old_keys_signing(app, invoke):
    """`keys rotate` adds keys that are published at once but sign only after the delay."""
    ring = app.extensions["authserver.keys"]
    old = [ring.signing_key("ES256").kid, ring.signing_key("RS256").kid]
    result = invoke("keys", "rotate", "--json")
    assert result.exit_code == 0, result.output
    new = json.loads(result.output)["keys"]
    assert [(k["alg"], k["state"], k["published"]) for k in new] == [
        ("ES256", "next", True),
        ("RS256", "next", True),
    ]
    assert not {k["kid"] for k in new} & set(old)
    published = {k["kid"] for k in ring.public_jwks()["keys"]}
    assert published == {*old, *(k["kid"] for k in new)}
    assert [ring.signing_key("ES256").kid, ring.signing_key("RS256").kid] == old


def _run(args, tmp_path, **env):
    return subprocess.run(
        [AUTHSERVER, *args],
        env={**os.environ, "AUTHSERVER_INSTANCE_PATH": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_needs_no_valid_configuration(tmp_path):
    """`authserver --help` lists the commands without building the app: no traceback even
    when the configuration is bad."""
    result = _run(["--help"], tmp_path, AUTHSERVER_OTP_LIFETIME="soon")
    assert result.returncode == 0
    assert "users" in result.stdout and "clients" in result.stdout
    assert result.stderr == ""


def test_console_script_reports_bad_config_in_one_line(tmp_path):
    """A malformed setting ends the real command with one stderr line naming it, exit 2."""
    result = _run(["accounts", "create", "--name", "x"], tmp_path, AUTHSERVER_OTP_LIFETIME="soon")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "authserver: error: configuration: AUTHSERVER_OTP_LIFETIME must be a whole number, "
        "got 'soon'"
    ]


def test_console_script_refuses_the_default_secret_outside_debug(tmp_path):
    """Without a secret key the real command refuses to start, naming AUTHSERVER_SECRET_KEY."""
    result = _run(["accounts", "create", "--name", "x"], tmp_path)
    assert result.returncode == 2
    assert "AUTHSERVER_SECRET_KEY" in result.stderr and len(result.stderr.splitlines()) == 1


def test_console_script_reports_an_unreachable_database_in_one_line(tmp_path):
    """A database that does not answer is one line naming AUTHSERVER_DATABASE_URL, exit 3."""
    result = _run(
        ["accounts", "create", "--name", "x"],
        tmp_path,
        AUTHSERVER_TESTING="true",
        AUTHSERVER_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/none",
    )
    assert result.returncode == 3, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "AUTHSERVER_DATABASE_URL" in result.stderr


def test_console_script_keys_rotate_before_db_upgrade_is_one_line(tmp_path):
    """`keys rotate` on a database without the schema ends in one line naming `db upgrade`."""
    result = _run(["keys", "rotate"], tmp_path, AUTHSERVER_SECRET_KEY="k" * 40)
    assert result.returncode == 3, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "authserver db upgrade" in result.stderr


def test_console_script_run_refuses_without_signing_keys(tmp_path):
    """`authserver run` with no key in the database refuses to serve and says how to make one."""
    env = {"AUTHSERVER_SECRET_KEY": "k" * 40, "AUTHSERVER_REDIS_URL": "memory://"}
    assert _run(["db", "upgrade"], tmp_path, **env).returncode == 0
    result = _run(["run", "--port", "5999"], tmp_path, **env)
    assert result.returncode == 2
    assert "authserver keys rotate" in result.stderr


def test_demo_creates_data_once_and_prints_it(tmp_path):
    """`authserver demo` makes keys, schema and demo data once; a second run reuses them."""
    env = {"AUTHSERVER_SECRET_KEY": "s" * 40}
    first = _run(["demo", "--json"], tmp_path, **env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert {u["username"] for u in summary["users"]} == {"admin", "demo"}
    assert any(u["authMethod"] != "simple" for u in summary["users"])
    assert [c.get("public", False) for c in summary["clients"]] == [False, True]
    assert summary["clients"][0]["clientSecret"]
    assert summary["urls"]["issuer"] == "http://127.0.0.1:5000"
    assert stat.S_IMODE(os.stat(tmp_path / "demo.json").st_mode) == 0o600
    assert not os.path.exists(tmp_path / "signing-keys.json")  # the keys are in the database
    listed = json.loads(_run(["keys", "list", "--json"], tmp_path, **env).stdout)["keys"]
    assert sorted((k["alg"], k["state"]) for k in listed) == [
        ("ES256", "current"),
        ("RS256", "current"),
    ]
    second = _run(["demo", "--json"], tmp_path, **env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["account"] == summary["account"]
    text = _run(["demo"], tmp_path, **env).stdout
    assert summary["users"][0]["password"] in text and summary["account"]["id"] in text


def test_demo_prints_the_login_url_of_the_demo_account(tmp_path):
    """The demo's login URL names the demo account (`?aid=`): its users are account users,
    whom the bare /login (global users only) cannot sign in."""
    env = {"AUTHSERVER_SECRET_KEY": "s" * 40}
    result = _run(["demo", "--json"], tmp_path, **env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    login_url = f"http://127.0.0.1:5000/login?aid={summary['account']['id']}"
    assert summary["urls"]["login"] == login_url
    assert login_url in _run(["demo"], tmp_path, **env).stdout


MAKEFILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Makefile")
FAKE_AUTHSERVER = '#!/bin/sh\necho "$1 issuer=${AUTHSERVER_ISSUER:-unset}"\n'


@pytest.mark.parametrize(
    ("make_args", "config", "env_issuer", "expected"),
    [
        (["PORT=5077"], "", None, "http://127.0.0.1:5077"),
        (["HOST=0.0.0.0"], "", None, "http://127.0.0.1:5000"),  # wildcard: served on loopback
        (["PORT=5077"], "", "http://127.0.0.1:6000", "http://127.0.0.1:6000"),
        (["PORT=5077"], "ISSUER = 'https://auth.example.com'\n", None, "unset"),
    ],
)
def test_make_run_issuer_follows_host_and_port_unless_set(
    tmp_path, make_args, config, env_issuer, expected
):
    """`make run PORT=...` gives the server an issuer on that port, unless the environment
    or instance/config.py names one (then theirs wins: the Makefile exports nothing)."""
    # A copy of the Makefile with an installed-looking .venv whose `authserver` only says
    # what issuer it was given, so `make run` runs its real recipe and nothing else.
    shutil.copy(MAKEFILE, tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text("")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    (bin_dir / "authserver").write_text(FAKE_AUTHSERVER)
    (bin_dir / "authserver").chmod(0o755)
    (tmp_path / ".venv" / ".installed").touch()
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "config.py").write_text("SECRET_KEY = 'x'\n" + config)
    env = {k: v for k, v in os.environ.items() if k != "AUTHSERVER_ISSUER" and k != "MAKEFLAGS"}
    if env_issuer:
        env["AUTHSERVER_ISSUER"] = env_issuer
    result = subprocess.run(
        ["make", "-s", "run", *make_args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if " issuer=" in line]
    assert lines == [f"demo issuer={expected}", f"run issuer={expected}"]


def test_demo_imports_an_old_key_file_instead_of_making_keys(tmp_path):
    """A checkout from before the keys moved into the database keeps its key: `demo` on an
    empty database imports instance/signing-keys.json, encrypted, and it signs."""
    now = datetime.now(UTC)
    old = [keys.generate(alg, now) for alg in keys.ALGORITHMS]
    keys.write_key_file(str(tmp_path / "signing-keys.json"), old, now)
    env = {"AUTHSERVER_SECRET_KEY": "s" * 40}
    assert _run(["demo", "--json"], tmp_path, **env).returncode == 0
    listed = json.loads(_run(["keys", "list", "--json"], tmp_path, **env).stdout)["keys"]
    assert sorted((k["kid"], k["state"]) for k in listed) == sorted(
        (str(k.kid), "current") for k in old
    )
    stored = (tmp_path / "authserver.sqlite3").read_bytes()
    assert old[0].as_dict(private=True)["d"].encode() not in stored
