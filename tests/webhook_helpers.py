"""Helpers for the webhook and outbox tests: register an endpoint over the API, run the
delivery worker until the due rows are done, make retried rows due now, read the rows."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from oauth_helpers import bearer
from sqlalchemy import update

from authserver.platform.delivery import Worker
from authserver.platform.extensions import db
from authserver.platform.models import OutboxItem, WebhookEndpoint, utcnow

MEDIA = "application/vnd.api+json"


def send(client: FlaskClient, method: str, path: str, token: str, body: Any = None) -> Any:
    data = body if isinstance(body, str | bytes) else json.dumps(body) if body is not None else None
    return client.open(path, method=method, data=data, content_type=MEDIA, headers=bearer(token))


def register(
    client: FlaskClient, token: str, url: str, events: list[str] | None = None
) -> dict[str, Any]:
    """POST /v1/webhook_endpoints; asserts 201 and returns the resource (with its secret)."""
    attributes: dict[str, Any] = {"url": url}
    if events is not None:
        attributes["events"] = events
    body = {"data": {"type": "WebhookEndpoint", "attributes": attributes}}
    response = send(client, "POST", "/v1/webhook_endpoints", token, body)
    assert response.status_code == 201, response.get_data(as_text=True)
    return dict(response.get_json()["data"])


def run_worker(app: Flask, rounds: int = 20) -> int:
    """Deliver due rows until none is left (or `rounds` rounds): how many were tried."""
    worker, tried = Worker(app), 0
    for _ in range(rounds):
        done = worker.run_once()
        if not done:
            break
        tried += done
    return tried


def make_due(app: Flask) -> None:
    """Pending rows due now: the backoff schedule is the worker's, not the test's, to wait."""
    with app.app_context():
        db.session.execute(
            update(OutboxItem)
            .where(OutboxItem.status == "pending")
            .values(next_attempt_at=utcnow())
        )
        db.session.commit()


def rows(app: Flask, kind: str | None = None) -> list[dict[str, Any]]:
    with app.app_context():
        query = db.select(OutboxItem).order_by(OutboxItem.created_at)
        if kind:
            query = query.where(OutboxItem.kind == kind)
        return [
            {c.name: getattr(r, c.name) for c in OutboxItem.__table__.columns}
            for r in db.session.scalars(query)
        ]


def endpoints(app: Flask) -> list[dict[str, Any]]:
    with app.app_context():
        return [
            {c.name: getattr(r, c.name) for c in WebhookEndpoint.__table__.columns}
            for r in db.session.scalars(db.select(WebhookEndpoint).order_by(WebhookEndpoint.id))
        ]
