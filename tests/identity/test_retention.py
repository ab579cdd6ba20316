"""`authserver prune`: expired refresh tokens, spent recovery codes and login history past
its retention go; everything still able to matter stays (a rotated refresh token until it
expires, so its reuse still ends the login); concurrent prunes share the work and never
wait on rows another transaction holds."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from oauth_helpers import login, refresh
from sqlalchemy import func, select

from authserver.cli import cli
from authserver.identity import retention
from authserver.platform.config import ConfigError
from authserver.platform.extensions import db
from authserver.platform.models import (
    AuditEvent,
    LoginRecord,
    OAuthClient,
    RecoveryCode,
    RefreshToken,
    RevokedToken,
    SpentAuthorizationCode,
    utcnow,
)

DAY = timedelta(days=1)


def _client_pk(world: Any) -> str:
    pk = db.session.scalar(select(OAuthClient.id).where(OAuthClient.client_id == world.public_id))
    assert pk is not None
    return pk


def add_refresh_tokens(app: Flask, world: Any, count: int, expires_in: timedelta, **state: Any):
    """`count` refresh tokens of alice expiring `expires_in` from now (negative: expired)."""
    now = utcnow()
    with app.app_context():
        pk = _client_pk(world)
        db.session.add_all(
            RefreshToken(
                token_hash=uuid.uuid4().hex + uuid.uuid4().hex,
                family_id=uuid.uuid4().hex,
                client_id=pk,
                user_id=world.alice_id,
                account_id=world.live_id,
                auth_time=now - 2 * DAY,
                issued_at=now - 2 * DAY,
                expires_at=now + expires_in,
                **state,
            )
            for _ in range(count)
        )
        db.session.commit()


def add_login_records(app: Flask, world: Any, count: int, age: timedelta) -> None:
    with app.app_context():
        db.session.add_all(
            LoginRecord(
                created_at=utcnow() - age,
                account_id=world.live_id,
                user_id=world.alice_id,
                method="password",
                success=True,
            )
            for _ in range(count)
        )
        db.session.commit()


def add_recovery_codes(app: Flask, world: Any, used: int, unused: int) -> None:
    now = utcnow()
    with app.app_context():
        db.session.add_all(
            RecoveryCode(
                user_id=world.alice_id,
                code_hash=uuid.uuid4().hex,
                used_at=now - timedelta(minutes=5) if i < used else None,
            )
            for i in range(used + unused)
        )
        db.session.commit()


def count(app: Flask, model: Any, *where: Any) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def prune_cli(app: Flask, *options: str) -> dict[str, int]:
    result = app.test_cli_runner().invoke(cli, ["prune", "--json", *options])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["deleted"]


def test_prune_deletes_exactly_the_old_rows(app, world):
    """Expired refresh tokens (fresh, rotated or revoked), used recovery codes, expired
    deny-list and spent-code rows and login records older than the retention go; live
    tokens (even rotated or revoked ones), unused codes, live deny-list and spent-code
    rows and recent history stay; the JSON gives the counts."""
    now = utcnow()
    add_refresh_tokens(app, world, 3, -DAY)
    add_refresh_tokens(app, world, 2, -DAY, rotated_at=now - 3 * DAY)
    add_refresh_tokens(app, world, 1, -timedelta(seconds=5), revoked_at=now - DAY)
    add_refresh_tokens(app, world, 4, DAY)
    add_refresh_tokens(app, world, 2, DAY, rotated_at=now - DAY)
    add_refresh_tokens(app, world, 1, DAY, revoked_at=now - DAY)
    add_recovery_codes(app, world, used=3, unused=7)
    retention_days = app.config["LOGIN_HISTORY_RETENTION_DAYS"]
    add_login_records(app, world, 5, timedelta(days=retention_days + 1))
    add_login_records(app, world, 4, timedelta(days=retention_days - 1))
    with app.app_context():
        for i, offset in enumerate([-DAY, -DAY, DAY]):
            db.session.add(RevokedToken(key=f"jti:{i}", expires_at=now + offset))
            db.session.add(
                SpentAuthorizationCode(code_hash=f"{i:064}", data={}, expires_at=now + offset)
            )
        db.session.commit()
    assert prune_cli(app) == {
        "refresh_tokens": 6,
        "recovery_codes": 3,
        "revoked_tokens": 2,
        "spent_authorization_codes": 2,
        "login_records": 5,
        "audit_events": 0,
        "known_devices": 0,
        "outbox": 0,
    }
    assert count(app, RevokedToken) == count(app, SpentAuthorizationCode) == 1
    assert count(app, RefreshToken) == 7
    assert count(app, RefreshToken, RefreshToken.expires_at < utcnow()) == 0
    assert count(app, RecoveryCode) == 7
    assert count(app, RecoveryCode, RecoveryCode.used_at.is_not(None)) == 0
    assert count(app, LoginRecord) == 4
    assert set(prune_cli(app).values()) == {0}


def test_login_history_retention_setting(app, world, make_app):
    """LOGIN_HISTORY_RETENTION_DAYS decides which login records are old."""
    add_login_records(app, world, 2, timedelta(days=40))
    add_login_records(app, world, 3, timedelta(days=20))
    assert prune_cli(make_app(LOGIN_HISTORY_RETENTION_DAYS=60))["login_records"] == 0
    assert prune_cli(make_app(LOGIN_HISTORY_RETENTION_DAYS=30))["login_records"] == 2
    assert prune_cli(make_app(LOGIN_HISTORY_RETENTION_DAYS=10))["login_records"] == 3
    assert count(app, LoginRecord) == 0


def test_audit_retention_setting(app, world, make_app):
    """AUDIT_RETENTION_DAYS decides which audit events are old; younger ones stay."""
    now = utcnow()
    with app.app_context():
        for age in (400, 200, 100, 1):
            db.session.add(
                AuditEvent(
                    created_at=now - timedelta(days=age),
                    account_id=world.live_id,
                    action="user.update",
                    actor_type="cli",
                    actor_id="ops",
                    target_type="User",
                    target_id=str(age),
                    changed=[],
                )
            )
        db.session.commit()
    assert prune_cli(app)["audit_events"] == 0  # the default keeps two years
    assert prune_cli(make_app(AUDIT_RETENTION_DAYS=300))["audit_events"] == 1
    assert prune_cli(make_app(AUDIT_RETENTION_DAYS=50))["audit_events"] == 2
    with app.app_context():
        mine = select(AuditEvent.target_id).where(AuditEvent.actor_id == "ops")
        assert db.session.scalars(mine).all() == ["1"]


def test_prune_in_small_batches_deletes_everything(app, world):
    """With --batch-size smaller than the work, prune keeps going until all old rows are
    gone (the count is exact, a final short batch ends it)."""
    add_refresh_tokens(app, world, 23, -DAY)
    add_refresh_tokens(app, world, 2, DAY)
    assert prune_cli(app, "--batch-size", "5")["refresh_tokens"] == 23
    assert count(app, RefreshToken) == 2


def test_human_output_and_bad_batch_size(app):
    """Without --json one `kind: N deleted` line per kind; a batch size of 0 is a usage error."""
    runner = app.test_cli_runner()
    result = runner.invoke(cli, ["prune"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "refresh_tokens: 0 deleted",
        "recovery_codes: 0 deleted",
        "revoked_tokens: 0 deleted",
        "spent_authorization_codes: 0 deleted",
        "login_records: 0 deleted",
        "audit_events: 0 deleted",
        "known_devices: 0 deleted",
        "outbox: 0 deleted",
    ]
    assert runner.invoke(cli, ["prune", "--batch-size", "0"]).exit_code == 2


def test_a_rotated_token_outlives_prune_so_its_reuse_still_ends_the_login(app, client, world):
    """Prune keeps a rotated, unexpired refresh token: replaying it afterwards (once its
    successor was used, so no retry grace applies) is still seen as reuse and revokes the
    family, so the newest token stops working too."""
    first = login(client, world)
    second = refresh(client, first["refresh_token"], world.public_id)
    assert second.status_code == 200
    third = refresh(client, second.get_json()["refresh_token"], world.public_id)
    assert third.status_code == 200
    add_refresh_tokens(app, world, 2, -DAY)
    assert prune_cli(app)["refresh_tokens"] == 2
    replay = refresh(client, first["refresh_token"], world.public_id)
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant"
    newest = refresh(client, third.get_json()["refresh_token"], world.public_id)
    assert newest.status_code == 400


def _postgres_only(app: Flask) -> None:
    if app.config["DATABASE_URL"].startswith("sqlite"):
        pytest.skip("row locks and SKIP LOCKED are PostgreSQL's; SQLite has one writer")


def test_two_prunes_at_once_share_the_work(app, world, make_app):
    """Two prunes racing on one database (two hosts' cron) both succeed, never delete a row
    twice, and together delete every old row exactly once."""
    _postgres_only(app)
    add_login_records(app, world, 600, timedelta(days=400))
    apps = [make_app(), make_app()]
    start = threading.Barrier(2)
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def run(other: Flask) -> None:
        try:
            with other.app_context():
                start.wait()
                results.append(retention.prune(batch_size=7))
        except BaseException as exc:  # reported below; a thread's exception is lost otherwise
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(results) == 2
    assert sum(r["login_records"] for r in results) == 600
    assert count(app, LoginRecord) == 0


def test_prune_skips_rows_another_transaction_holds(app, world):
    """An expired token locked by a transaction in flight (a refresh using it) is skipped,
    not waited for: prune finishes at once, and the next run deletes it."""
    _postgres_only(app)
    add_refresh_tokens(app, world, 3, -DAY)
    with app.app_context():
        locked_id = db.session.scalar(select(RefreshToken.id).limit(1))
    engine = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    holder = engine.connect()
    try:
        holder.execute(
            sa.text("SELECT id FROM refresh_tokens WHERE id = :id FOR UPDATE"), {"id": locked_id}
        )
        done: list[dict[str, int]] = []

        def run() -> None:
            with app.app_context():
                done.append(retention.prune())

        pruner = threading.Thread(target=run)
        pruner.start()
        pruner.join(timeout=15)
        waited = pruner.is_alive()
        holder.rollback()  # lets a waiting prune go on, whatever happened
        pruner.join(timeout=30)
        assert not waited, "prune waited on a locked row"
        assert done[0]["refresh_tokens"] == 2
    finally:
        holder.close()
        engine.dispose()
    assert count(app, RefreshToken) == 1
    assert prune_cli(app)["refresh_tokens"] == 1
    assert count(app, RefreshToken) == 0


def test_retention_below_one_day_stops_start_up(make_app):
    """LOGIN_HISTORY_RETENTION_DAYS=0 would let prune wipe today's history: refused."""
    with pytest.raises(ConfigError, match="LOGIN_HISTORY_RETENTION_DAYS"):
        make_app(LOGIN_HISTORY_RETENTION_DAYS=0)
