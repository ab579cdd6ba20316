"""The outbox and its delivery workers: rows written in the change's transaction (none for
a rollback), claims that two workers never share, a killed worker's rows retaken after
the claim timeout, mail that survives an SMTP outage, login codes dropped once expired.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from factories import World
from oauth_helpers import login
from verification_helpers import guest_token
from webhook_helpers import make_due, register, rows, run_worker

from authserver.cli import cli
from authserver.identity import accounts, webhooks
from authserver.platform import background, outbox
from authserver.platform.database import commit
from authserver.platform.delivery import Worker
from authserver.platform.errors import Conflict
from authserver.platform.events import emit, stage
from authserver.platform.events import signal as event_signal
from authserver.platform.extensions import db
from authserver.platform.models import Account, User, utcnow


class _Mailbox:
    """An aiosmtpd handler keeping what it accepted (started late: the outage is over)."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
def owner(client: Any, world: World) -> str:
    """alice's access token (owner of the live account)."""
    return str(login(client, world)["access_token"])


def test_rolled_back_change_sends_nothing(make_app, world, owner, event_sink):
    """An event staged in a transaction that fails at commit leaves no row and no signal."""
    hooks = make_app(WEBHOOK_ALLOW_PRIVATE_TARGETS=True)
    register(hooks.test_client(), owner, event_sink.url)
    heard: list[str] = []

    def receive(_sender: Any, **payload: Any) -> None:
        heard.append(payload["user"].username)

    created = event_signal("identity.user.create.success")
    with created.connected_to(receive, sender=hooks), hooks.test_request_context():
        account = db.session.get(Account, world.live_id)
        # A use case that fails after staging its event rolls back: row and signal go too.
        user = User(account_id=account.id, username="yan", role="customer", status="active")
        db.session.add(user)
        stage("identity.user.create.success", user=user, account=account)
        assert rows(hooks, "webhook") == []  # not visible before the commit either
        db.session.rollback()
        # A commit the database refuses ("alice" is taken) sends nothing either.
        user = User(account_id=account.id, username="xia", role="customer", status="active")
        db.session.add(user)
        stage("identity.user.create.success", user=user, account=account)
        db.session.add(
            User(account_id=account.id, username="alice", role="customer", status="active")
        )
        with pytest.raises(Conflict):
            commit()
        # The same again, committed: the row and the signal appear together.
        user = User(account_id=account.id, username="zoe", role="customer", status="active")
        db.session.add(user)
        stage("identity.user.create.success", user=user, account=account)
        commit()
    assert heard == ["zoe"]
    assert [r["event"] for r in rows(hooks, "webhook")] == ["identity.user.create.success"]
    run_worker(hooks)
    assert len(event_sink.received) == 1


def test_two_workers_never_deliver_one_row_twice(make_app, client, world, owner, event_sink):
    """Two workers (two apps, two pools) racing over 24 rows: each webhook-id arrives once."""
    first = make_app(WEBHOOK_ALLOW_PRIVATE_TARGETS=True)
    second = make_app(WEBHOOK_ALLOW_PRIVATE_TARGETS=True)
    register(first.test_client(), owner, event_sink.url)
    for _ in range(24):
        login(client, world)
    total = len(rows(first, "webhook"))
    assert total == 24
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def drain(app: Any) -> None:
        try:
            start.wait()
            worker = Worker(app, batch=2)  # small batches: many claim rounds interleave
            while worker.run_once():
                pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(a,)) for a in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    ids = event_sink.ids()
    assert len(ids) == total and len(set(ids)) == total
    assert {r["status"] for r in rows(first, "webhook")} == {"delivered"}


def test_killed_worker_rows_are_retaken_after_the_claim_timeout(
    make_app, make_config, client, world, owner, event_sink, instance_path
):
    """A worker process SIGKILLed mid-delivery holds its claim until the timeout; then
    another worker delivers the row (again: at least once, with the same webhook-id)."""
    fast = {
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": True,
        "OUTBOX_CLAIM_TIMEOUT": 10,
        "WEBHOOK_TIMEOUT": 1,
        "SMTP_TIMEOUT": 1,
        "SMS_TIMEOUT": 1,
    }
    hooks = make_app(**fast)
    register(hooks.test_client(), owner, event_sink.url, ["identity.login.success"])
    login(client, world)
    event_sink.hold.clear()  # the sink keeps the first request waiting
    config = make_config(**fast)
    env = {**os.environ, "AUTHSERVER_INSTANCE_PATH": instance_path}
    for key in ("DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "SECRET_KEY", "KEY_ENCRYPTION_SECRET"):
        env[f"AUTHSERVER_{key}"] = str(config[key])
    for key, value in fast.items():
        env[f"AUTHSERVER_{key}"] = "true" if value is True else str(value)
    env["AUTHSERVER_MAIL_URL"] = env["AUTHSERVER_SMS_URL"] = "memory:"
    env["AUTHSERVER_TESTING"] = "true"
    code = "from authserver.cli import main; main()"
    worker = subprocess.Popen(
        [sys.executable, "-c", code, "worker"],
        env=env,
        cwd=os.getcwd(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60  # a loaded machine takes seconds to import
        while not event_sink.received and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.poll() is None, worker.communicate()[1]
        assert event_sink.received, "the worker process never called the sink"
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate()  # reap it and close the pipe
    event_sink.hold.set()
    (row,) = rows(hooks, "webhook")
    assert row["status"] == "pending" and row["claim"] is not None and row["attempts"] == 0
    assert run_worker(hooks) == 0  # the dead worker's claim still holds
    time.sleep(max(0.0, (row["claimed_until"] - utcnow()).total_seconds()) + 0.2)
    assert run_worker(hooks) == 1
    ids = event_sink.ids()
    assert len(ids) == 2 and len(set(ids)) == 1
    assert rows(hooks, "webhook")[0]["status"] == "delivered"


def test_graceful_stop_hands_back_untried_rows(make_app, client, world, owner, event_sink):
    """A worker told to stop finishes the row in hand and releases the rest of its claim."""
    hooks = make_app(WEBHOOK_ALLOW_PRIVATE_TARGETS=True)
    register(hooks.test_client(), owner, event_sink.url, ["identity.login.success"])
    for _ in range(3):
        login(client, world)
    event_sink.hold.clear()
    worker = Worker(hooks, batch=3)
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    deadline = time.monotonic() + 10
    while not event_sink.received and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.stop()
    event_sink.hold.set()
    thread.join(10)
    statuses = sorted((r["status"], r["claim"] is None) for r in rows(hooks, "webhook"))
    assert statuses == [("delivered", True), ("pending", True), ("pending", True)]
    assert run_worker(hooks) == 2


def test_mail_survives_an_smtp_outage(make_app, client, world, unused_port):
    """SMTP down during a password-reset request, then up: the worker's retry delivers the mail."""
    app = make_app(MAIL_URL=f"smtp://127.0.0.1:{unused_port}", SMTP_TIMEOUT=2)
    with app.app_context():
        carol = User(
            account_id=world.live_id,
            username="carol",
            role="customer",
            status="active",
            email="carol@example.com",
        )
        db.session.add(carol)
        db.session.commit()
    http = app.test_client()
    guest = guest_token(http, world.live_prt)
    body = {"data": {"type": "PasswordResetToken", "attributes": {"username": "carol"}}}
    response = http.post(
        "/v1/password_reset_tokens",
        data=json.dumps(body),
        content_type="application/vnd.api+json",
        headers={"Authorization": f"Bearer {guest}"},
    )
    assert response.status_code == 204
    assert background.jobs(app).drain()
    (row,) = rows(app, "email")
    assert row["status"] == "pending" and row["attempts"] == 1
    assert "Connection" in row["last_error"]
    sink = _Mailbox()
    controller = Controller(sink, hostname="127.0.0.1", port=unused_port)
    controller.start()
    try:
        make_due(app)
        assert run_worker(app) == 1
    finally:
        controller.stop()
    (envelope,) = sink.envelopes
    mail = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert mail["To"] == "carol@example.com"
    assert "/reset-password?token=" in mail.get_body(("plain",)).get_content()
    (row,) = rows(app, "email")
    assert row["status"] == "delivered" and row["body"] == ""  # no link kept at rest


def test_login_code_is_dropped_once_expired(make_app, webhook):
    """An SMS login code that could not be sent is retried quickly, and dropped at expiry."""
    webhook.status = 500
    app = make_app(SMS_URL=webhook.url)
    with app.test_request_context():
        user = User(username="sam", role="customer", status="active", phone_number="+15555550123")
        emit(
            "identity.otp.create.success", user=user, account=None, code="123456", method="tfa_sms"
        )
    (row,) = rows(app, "sms")
    assert row["status"] == "pending" and row["attempts"] == 1
    assert (row["next_attempt_at"] - utcnow()).total_seconds() < 5  # urgent: seconds, not minutes
    make_due(app)
    run_worker(app)
    assert len(webhook.requests) == 2
    with app.app_context():
        db.session.execute(
            db.update(outbox.OutboxItem).values(expires_at=utcnow(), next_attempt_at=utcnow())
        )
        db.session.commit()
    run_worker(app)
    (row,) = rows(app, "sms")
    assert row["status"] == "expired" and row["body"] == ""
    assert len(webhook.requests) == 3  # the try that found it expired was the last


def test_in_process_thread_delivers_after_commit(make_app, client, world, owner, event_sink):
    """With OUTBOX_IN_PROCESS the serving app delivers by itself, soon after the commit."""
    hooks = make_app(WEBHOOK_ALLOW_PRIVATE_TARGETS=True, OUTBOX_IN_PROCESS=True)
    register(hooks.test_client(), owner, event_sink.url, ["identity.login.success"])
    login(hooks.test_client(), world)
    deadline = time.monotonic() + 10
    while not event_sink.received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert event_sink.received


def test_prune_keeps_pending_and_recent_deliveries(app):
    """`authserver prune` deletes settled outbox rows past 30 days, never pending ones."""
    old = utcnow() - timedelta(days=31)
    with app.app_context():
        for status, created in (
            ("delivered", old),
            ("failed", old),
            ("pending", old),
            ("delivered", utcnow()),
        ):
            item = outbox.add("webhook", "identity.login.success", "{}")
            item.status, item.created_at = status, created
        db.session.commit()
    result = app.test_cli_runner().invoke(cli, ["prune", "--json"])
    assert result.exit_code == 0, result.output
    assert '"outbox": 2' in result.output
    assert sorted(r["status"] for r in rows(app)) == ["delivered", "pending"]


def test_sqlite_claims_never_share_a_row(make_app, tmp_path, event_sink):
    """On SQLite (no SKIP LOCKED) two racing workers still deliver each row exactly once."""
    url = f"sqlite:///{tmp_path}/outbox.sqlite3"
    first = make_app(DATABASE_URL=url, WEBHOOK_ALLOW_PRIVATE_TARGETS=True)
    second = make_app(DATABASE_URL=url, WEBHOOK_ALLOW_PRIVATE_TARGETS=True)
    with first.test_request_context():
        db.create_all()
        pair = accounts.create_account("Lite")
        endpoint = webhooks.create_endpoint(pair.live, {"url": event_sink.url}).endpoint
        for _ in range(20):
            outbox.add("webhook", "identity.login.success", "{}", endpoint_id=endpoint.id)
        db.session.commit()
    start = threading.Barrier(2)

    def drain(app: Any) -> None:
        start.wait()
        worker = Worker(app, batch=2)
        while worker.run_once():
            pass

    threads = [threading.Thread(target=drain, args=(a,)) for a in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = event_sink.ids()
    assert len(ids) == 20 and len(set(ids)) == 20
    assert {r["status"] for r in rows(first)} == {"delivered"}


def test_rows_another_worker_holds_are_skipped_not_awaited(make_app, database_url, event_sink):
    """PostgreSQL: rows locked by another worker's claim are skipped at once (SKIP LOCKED)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's; SQLite has one writer at a time")
    hooks = make_app(WEBHOOK_ALLOW_PRIVATE_TARGETS=True)
    with hooks.test_request_context():
        pair = accounts.create_account("Locks")
        endpoint = webhooks.create_endpoint(pair.live, {"url": event_sink.url}).endpoint
        for _ in range(3):
            outbox.add("webhook", "identity.login.success", "{}", endpoint_id=endpoint.id)
        db.session.commit()
        engine = db.engine
    with engine.connect() as other:
        locked = other.execute(
            db.select(outbox.OutboxItem.id).with_for_update()  # another worker, mid-claim
        ).all()
        assert len(locked) == 3
        started = time.monotonic()
        assert run_worker(hooks) == 0
        assert time.monotonic() - started < 2  # skipped, not waited for
        other.rollback()
    assert run_worker(hooks) == 3
    assert len(set(event_sink.ids())) == 3
