"""Test data, made with the domain functions and committed: accounts, users of every auth
method, clients, and the two worlds (plain OAuth, and OIDC with browser clients) most tests
start from. HTTP helpers (login, bearer, ...) live in the *_helpers modules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pyotp
from flask import Flask
from sqlalchemy import Table

from authserver.identity import accounts, clients, twofactor, users
from authserver.platform.extensions import db
from authserver.platform.models import Account

PASSWORD = "correct-horse-battery"
TOKEN_GRANTS = ["password", "refresh_token"]
CODE_GRANTS = ["authorization_code", "refresh_token"]
WEB_CB = "https://app.example/cb"
SPA_CB = "https://spa.example/cb"
OTHER_CB = "https://spa.example/other"


# ---------------------------------------------------------------- accounts, clients, users


@dataclass(frozen=True)
class AccountPair:
    """A live account and its test twin: ids and publishable tokens."""

    live_id: str
    test_id: str
    live_prt: str
    test_prt: str


def make_account(app: Flask, name: str, **attributes: Any) -> AccountPair:
    """A live account named `name` and its paired test account."""
    with app.app_context():
        made = accounts.create_account(name, **attributes)
        return AccountPair(
            made.live.id, made.test.id, made.live.publishable_token, made.test.publishable_token
        )


@dataclass(frozen=True)
class Cred:
    """A client's id, and its secret when it is confidential."""

    client_id: str
    secret: str | None = None


def make_client(app: Flask, account_id: str, name: str, **options: Any) -> Cred:
    """A client of the account (confidential unless public=True); `options` go to
    clients.create_client (public, redirect_uris, grant_types, skip_consent, ...)."""
    with app.app_context():
        made = clients.create_client(db.session.get(Account, account_id), name, **options)
        return Cred(made.client.client_id, made.secret)


def make_user(
    app: Flask,
    account_id: str | None,
    username: str,
    *,
    password: str | None = PASSWORD,
    role: str = "customer",
    auth_method: str | None = None,
    email: str | None = None,
    phone_number: str | None = None,
    status: str = "active",
    member_of: dict[str, str] | None = None,
    **fields: Any,
) -> str:
    """A user of the account (a global user when `account_id` is None); returns the id.

    `auth_method` None takes the account's default. "tfa_totp" gets a new TOTP secret
    unless `totp_secret` is given (see make_totp_user); "tfa_email" needs `email` (taken
    as verified unless `email_verified=False`),
    "tfa_sms" `phone_number`. `password` None is for pending (invited) users.
    `member_of` {account id: role} makes a global user a member of those accounts. Other
    `fields` (name, locale, email_verified, ...) go to users.create_user.
    """
    if auth_method == "tfa_totp":
        fields.setdefault("totp_secret", twofactor.new_totp_secret())
    if auth_method == "tfa_email":
        fields.setdefault("email_verified", True)  # codes are only mailed to a proven address
    with app.app_context():
        account = db.session.get(Account, account_id) if account_id else None
        user = users.create_user(
            account=account,
            username=username,
            password=password,
            role=role,
            auth_method=auth_method,
            email=email,
            phone_number=phone_number,
            status=status,
            **fields,
        )
        for member_account, member_role in (member_of or {}).items():
            users.add_member(db.session.get(Account, member_account), user, member_role)
        return user.id


def make_totp_user(
    app: Flask, account_id: str | None, username: str, **fields: Any
) -> tuple[str, pyotp.TOTP]:
    """A user whose second factor is an authenticator app: (id, that app's TOTP)."""
    secret = twofactor.new_totp_secret()
    user_id = make_user(
        app, account_id, username, auth_method="tfa_totp", totp_secret=secret, **fields
    )
    return user_id, pyotp.TOTP(secret)


def make_email_otp_user(app: Flask, account_id: str | None, username: str, **fields: Any) -> str:
    """A user whose second factor is a code emailed to <username>@example.com."""
    fields.setdefault("email", f"{username}@example.com")
    return make_user(app, account_id, username, auth_method="tfa_email", **fields)


# ---------------------------------------------------------------- the worlds


@dataclass(frozen=True)
class World:
    """Ids and secrets of the fixtures every OAuth test starts from."""

    live_id: str
    test_id: str
    other_id: str
    live_prt: str
    test_prt: str
    other_prt: str
    alice_id: str  # simple user of the live account (owner)
    tess_id: str  # simple user of the test account (owner)
    public_id: str  # public client of the live account (password, refresh_token)
    conf_id: str  # confidential client of the live account (all three grants)
    conf_secret: str
    test_public_id: str  # public client of the test account
    other_id_client: str  # confidential client of another account
    other_secret: str
    other_public_id: str  # public client of another account


def make_world(app: Flask) -> World:
    """Two account pairs, two simple users, and public and confidential clients."""
    return replayed(app, "world", _build_world)


def _build_world(app: Flask) -> World:
    acme = make_account(app, "Acme")
    other = make_account(app, "Other")
    alice = make_user(app, acme.live_id, "alice", role="owner")
    tess = make_user(app, acme.test_id, "tess", role="owner")
    public = make_client(app, acme.live_id, "Native", public=True, grant_types=TOKEN_GRANTS)
    all_grants = [*TOKEN_GRANTS, "client_credentials"]
    conf = make_client(app, acme.live_id, "Backend", grant_types=all_grants)
    test_public = make_client(
        app, acme.test_id, "Native test", public=True, grant_types=TOKEN_GRANTS
    )
    other_conf = make_client(app, other.live_id, "Other backend", grant_types=all_grants)
    other_public = make_client(
        app, other.live_id, "Other native", public=True, grant_types=TOKEN_GRANTS
    )
    assert conf.secret and other_conf.secret
    return World(
        live_id=acme.live_id,
        test_id=acme.test_id,
        other_id=other.live_id,
        live_prt=acme.live_prt,
        test_prt=acme.test_prt,
        other_prt=other.live_prt,
        alice_id=alice,
        tess_id=tess,
        public_id=public.client_id,
        conf_id=conf.client_id,
        conf_secret=conf.secret,
        test_public_id=test_public.client_id,
        other_id_client=other_conf.client_id,
        other_secret=other_conf.secret,
        other_public_id=other_public.client_id,
    )


@dataclass(frozen=True)
class OidcWorld:
    base: World
    web_id: str  # confidential client, one redirect URI
    web_secret: str
    spa_id: str  # public client, two redirect URIs
    first_party_id: str  # public client with skip_consent
    other_spa_id: str  # public client of another account


def make_oidc_world(app: Flask, base: World | None = None) -> OidcWorld:
    """`base` (else a new make_world) plus browser-flow clients of the live account and of
    another account."""
    base = base or make_world(app)
    return replayed(app, f"oidc:{base.live_id}", lambda app: _build_oidc_world(app, base))


def _build_oidc_world(app: Flask, base: World) -> OidcWorld:
    live, other = base.live_id, base.other_id
    web = make_client(app, live, "Acme Web", redirect_uris=[WEB_CB], grant_types=CODE_GRANTS)
    spa = make_client(
        app,
        live,
        "Acme SPA",
        public=True,
        redirect_uris=[SPA_CB, OTHER_CB],
        grant_types=CODE_GRANTS,
    )
    first = make_client(
        app,
        live,
        "Acme Home",
        public=True,
        redirect_uris=[SPA_CB],
        grant_types=CODE_GRANTS,
        skip_consent=True,
    )
    other_spa = make_client(
        app, other, "Other SPA", public=True, redirect_uris=[SPA_CB], grant_types=CODE_GRANTS
    )
    assert web.secret
    return OidcWorld(
        base, web.client_id, web.secret, spa.client_id, first.client_id, other_spa.client_id
    )


# ---------------------------------------------------------------- built once, replayed
# Most tests start from a world: nine use cases with a commit each (~0.1 s). The first
# build in a test process goes through the domain functions; its rows are kept, and later
# tests get the same rows copied back into their empty tables (same ids and secrets).

T = TypeVar("T")
Rows = list[tuple[Table, list[dict[str, Any]]]]
_REPLAYS: dict[str, tuple[Any, Rows]] = {}


def replayed(app: Flask, key: str, build: Callable[[Flask], T]) -> T:
    """`build(app)`, or a copy of the rows the first such build wrote in this process.

    A build is kept only when what it did is all in those new rows: it changed no row
    that was there before, wrote no Redis key, sent no message and used no autoincrement
    id (a copied id would not move the sequence). Otherwise every call builds for real.
    """
    with app.app_context():
        engine = db.engine
        kept = _REPLAYS.get(key)
        if kept is not None:
            result, rows = kept
            with engine.begin() as conn:
                for table, table_rows in rows:
                    conn.execute(table.insert(), table_rows)
            return result  # type: ignore[no-any-return]
        before, keys_before = _all_rows(), _redis_keys(app)
    outbox = app.extensions["authserver.outbox"]
    sent_before = len(outbox)
    result = build(app)
    with app.app_context():
        after, keys_after = _all_rows(), _redis_keys(app)
    if len(outbox) != sent_before:
        return result  # it sent mail or SMS, which a copy of rows would not
    new: Rows = []
    for table in db.metadata.sorted_tables:
        old = before[table.name]
        if any(row not in after[table.name] for row in old):
            return result  # an existing row changed
        added = [row for row in after[table.name] if row not in old]
        if added and table.autoincrement_column is not None:
            return result
        if added:
            new.append((table, added))
    if keys_after == keys_before:
        _REPLAYS[key] = (result, new)
    return result


def _all_rows() -> dict[str, list[dict[str, Any]]]:
    with db.engine.connect() as conn:
        return {
            table.name: [dict(row) for row in conn.execute(table.select()).mappings()]
            for table in db.metadata.sorted_tables
        }


def _redis_keys(app: Flask) -> set[Any]:
    store = app.extensions["authserver.store"]
    with store._redis() as client:  # the test's own prefix: what this app wrote
        return set(client.scan_iter(match=app.config["REDIS_PREFIX"] + "*"))
