"""Delivery workers: claim due outbox rows, try each (webhook, email or SMS), settle it.

`Worker.run_once` is one round; `Worker.run` loops until `stop()` (the `authserver worker`
command, N processes on N hosts); `start_in_process` runs one in a daemon thread of a
serving process (`authserver run`, `make run`), started by the first commit that leaves
work for it. Stopping finishes the row in hand and hands back the rest of the claim.
A webhook endpoint failing for WEBHOOK_DISABLE_AFTER is disabled and its owners mailed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import timedelta

from flask import Flask
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import select

from authserver.platform import events, metrics, outbox, webhooks
from authserver.platform.config import CLAIM_BATCH
from authserver.platform.extensions import db
from authserver.platform.models import (
    Account,
    AccountStatus,
    OutboxItem,
    Role,
    User,
    UserStatus,
    WebhookEndpoint,
    utcnow,
)

log = logging.getLogger("authserver.delivery")
WAKE = "authserver.delivery_wake"
THREAD = "authserver.delivery_thread"
# Stop trying a claimed row this long before the claim runs out: another worker may take it.
CLAIM_MARGIN = 2


class Worker:
    """Delivers one app's outbox; several may run at once, in threads or processes."""

    def __init__(self, app: Flask, batch: int = CLAIM_BATCH):
        self.app = app
        self.batch = batch
        self.stopping = threading.Event()
        self.wake = threading.Event()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def run(self) -> None:
        """Deliver until stopped; idle, look again every OUTBOX_POLL_INTERVAL or when woken."""
        interval = self.app.config["OUTBOX_POLL_INTERVAL"]
        while not self.stopping.is_set():
            try:
                done = self.run_once()
            except Exception:  # database down, say: log, wait, try again
                log.warning("delivery round failed", exc_info=True)
                done = 0
            if not done:
                self.wake.wait(interval)
                self.wake.clear()

    def run_once(self) -> int:
        """Claim a batch of due rows and try them: how many were tried."""
        with self.app.app_context():
            try:
                return self._round()
            finally:
                db.session.remove()

    def _round(self) -> int:
        config = self.app.config
        seconds = config["OUTBOX_CLAIM_TIMEOUT"]
        claim, items = outbox.claim_due(self.batch, seconds)
        deadline = utcnow() + timedelta(seconds=seconds - CLAIM_MARGIN)
        tried = 0
        for index, item in enumerate(items):
            if self.stopping.is_set() or utcnow() >= deadline:
                outbox.release([i.id for i in items[index:]], claim)
                break
            self._try(item, claim)
            tried += 1
        return tried

    def _try(self, item: OutboxItem, claim: str) -> None:
        config = self.app.config
        endpoint = db.session.get(WebhookEndpoint, item.endpoint_id) if item.endpoint_id else None
        try:
            outcome = self.attempt(item, endpoint)
        except Exception as exc:  # a bug in one row must not stop the others
            log.error("delivery crashed", exc_info=True)
            outcome = outbox.Outcome(False, error=type(exc).__name__)
        status = outbox.settle(item, claim, outcome, config["WEBHOOK_RETRY_DELAYS"])
        metrics.counted_delivery(item.kind, "delivered" if outcome.ok else "failed")
        log.info(
            "delivery tried",
            extra={
                "fields": {
                    "kind": item.kind,
                    "event": item.event,
                    "id": item.message_id,
                    "status": status or "lost-claim",
                    "http": outcome.status or "-",
                    "error": outcome.error or "-",
                }
            },
        )
        if endpoint is not None and status is not None:
            self._track(endpoint, outcome.ok)

    def attempt(self, item: OutboxItem, endpoint: WebhookEndpoint | None) -> outbox.Outcome:
        if item.kind != "webhook":
            return self.app.extensions["authserver.notifications"].deliver(item)
        if endpoint is None or not endpoint.enabled:
            return outbox.Outcome(False, error="endpoint disabled or deleted", retry=False)
        config = self.app.config
        return webhooks.post(
            endpoint.url,
            item.body,
            item.message_id,
            webhooks.live_secrets(endpoint),
            config["WEBHOOK_TIMEOUT"],
            config["WEBHOOK_ALLOW_PRIVATE_TARGETS"],
        )

    def _track(self, endpoint: WebhookEndpoint, ok: bool) -> None:
        """Remember since when an endpoint fails; disable it when that is too long."""
        db.session.refresh(endpoint)
        now = utcnow()
        if ok:
            if endpoint.failing_since is not None:
                endpoint.failing_since = None
                db.session.commit()
            return
        if endpoint.failing_since is None:
            endpoint.failing_since = now
            db.session.commit()
            return
        limit = timedelta(seconds=self.app.config["WEBHOOK_DISABLE_AFTER"])
        if not endpoint.enabled or now - endpoint.failing_since < limit:
            return
        endpoint.enabled = False
        endpoint.disabled_reason = "failing"
        account = db.session.get(Account, endpoint.account_id)
        log.warning("webhook endpoint disabled", extra={"fields": {"endpoint": endpoint.id}})
        # One transaction: the endpoint is off and the owners' emails are in the outbox.
        events.emit(
            "identity.webhook_endpoint.disable.success",
            account=account,
            endpoint=endpoint,
            owners=owners(account),
        )


def owners(account: Account | None) -> list[User]:
    """The active owners of an account (of its live account, for a test account)."""
    if account is None:
        return []
    live: Account | None = account
    if account.mode == "test":
        live = db.session.scalar(select(Account).where(Account.test_account_id == account.id))
    if live is None or live.status != AccountStatus.ACTIVE:
        return []
    return list(
        db.session.scalars(
            select(User).where(
                User.account_id == live.id,
                User.role == Role.OWNER,
                User.status == UserStatus.ACTIVE,
            )
        )
    )


def start_in_process(app: Flask) -> None:
    """Deliver in a daemon thread of this process from now on (idempotent)."""
    if app.extensions.get(THREAD) is not None:
        return
    worker = Worker(app)
    thread = threading.Thread(target=worker.run, name="authserver-delivery", daemon=True)
    app.extensions[THREAD] = (worker, thread)
    thread.start()


def stop_in_process(app: Flask, timeout: float = 15.0) -> None:
    """Stop the in-process thread: it finishes the row in hand and hands back the rest."""
    found = app.extensions.pop(THREAD, None)
    if found is not None:
        worker, thread = found
        worker.stop()
        thread.join(timeout)


class OutboxDepthCollector:
    """authserver_outbox_pending by kind, counted in the database at scrape time (every
    process sees the same shared queue, so it is not summed across workers)."""

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "authserver_outbox_pending",
            "Outbox rows waiting for delivery (webhook, email, sms), due or retrying later.",
            labels=["kind"],
        )
        try:
            depth = outbox.depth()
        except Exception:  # database down: the scrape still answers, without this gauge
            return
        for kind in outbox.KINDS:
            gauge.add_metric([kind], depth.get(kind, 0))
        yield gauge


def init_app(app: Flask) -> None:
    """Publish the queue depth; with OUTBOX_IN_PROCESS, the first commit that leaves work
    starts the delivery thread."""
    app.extensions.setdefault(metrics.COLLECTORS, []).append(OutboxDepthCollector())
    if not app.config["OUTBOX_IN_PROCESS"]:
        return
    lock = threading.Lock()

    def wake() -> None:
        with lock:
            start_in_process(app)
        found = app.extensions.get(THREAD)
        if found is not None:
            found[0].wake.set()

    app.extensions[WAKE] = wake
