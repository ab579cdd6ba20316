"""Use cases for webhook endpoints (register, list, show, change, rotate the secret, delete,
send a test event) and their delivery log (list, retry). An endpoint belongs to one
account: a test account's endpoints hear only that test account's events.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import func, select

from authserver.identity import audit, rules
from authserver.platform import outbox
from authserver.platform import webhooks as delivery
from authserver.platform.database import commit
from authserver.platform.errors import NotFound, ValidationFailed
from authserver.platform.events import EVENTS, emit
from authserver.platform.extensions import db
from authserver.platform.models import Account, OutboxItem, WebhookEndpoint, new_id, utcnow

URL_MAX = 2048
EVENTS_MAX = len(EVENTS) + 1
DESCRIPTION_MAX = 255
ENDPOINTS_MAX = 20  # per account: each event fans out to every one of them
ROTATION_OVERLAP = timedelta(hours=24)  # the old secret keeps signing beside the new one
SUBSCRIBABLE = tuple(e for e in EVENTS if e != delivery.TEST_EVENT)
UPDATE_FIELDS = ("url", "events", "description", "enabled")


@dataclass(frozen=True)
class WithSecret:
    endpoint: WebhookEndpoint
    secret: str  # plaintext, returned once


def _allow_private() -> bool:
    return bool(current_app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"])


def check_url(value: object, field: str = "url") -> str:
    """An absolute https URL (any http(s) one when private targets are allowed), no user
    info or fragment, not an IP literal that is private. Names are checked at send time."""
    if not isinstance(value, str) or not value:
        raise ValidationFailed("Give the URL to POST events to.", field=field)
    if len(value) > URL_MAX:
        raise ValidationFailed(f"At most {URL_MAX} characters.", field=field, code="too_long")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValidationFailed("A URL has no spaces or control characters.", field=field)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - evaluated only to validate
    except ValueError:
        raise ValidationFailed("Not a valid URL.", field=field) from None
    schemes = ("https", "http") if _allow_private() else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValidationFailed("Give an absolute https:// URL.", field=field, code="https_required")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise ValidationFailed("A URL without user info or fragment.", field=field)
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return value
    if not _allow_private() and delivery.refused_address(address):
        raise ValidationFailed(
            "Private, loopback and link-local targets are refused.",
            field=field,
            code="private_target",
        )
    return value


def check_events(value: object, field: str = "events") -> list[str]:
    if not isinstance(value, list | tuple) or not value:
        raise ValidationFailed('Give a list of event names, or ["*"].', field=field)
    if len(value) > EVENTS_MAX:
        raise ValidationFailed(f"At most {EVENTS_MAX} events.", field=field, code="too_many")
    for name in value:
        if name != "*" and name not in SUBSCRIBABLE:
            raise ValidationFailed(
                "Unknown event; see the list in the API description.",
                field=field,
                code="unknown_event",
            )
    return list(dict.fromkeys(value))


def _check(fields: Mapping[str, Any]) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    if "url" in fields:
        checked["url"] = check_url(fields["url"])
    if "events" in fields:
        checked["events"] = check_events(fields["events"])
    if "description" in fields:
        description = fields["description"]
        checked["description"] = (
            None if description is None else rules.check_name(description, "description")
        )
    if "enabled" in fields:
        if not isinstance(fields["enabled"], bool):
            raise ValidationFailed("true or false.", field="enabled")
        checked["enabled"] = fields["enabled"]
    return checked


def create_endpoint(account: Account, fields: Mapping[str, Any]) -> WithSecret:
    """Register an endpoint; the answer holds its signing secret, once."""
    checked = _check({"events": ["*"], "enabled": True, **fields})
    if "url" not in checked:
        raise ValidationFailed("Give the URL to POST events to.", field="url")
    count = db.session.scalar(
        select(func.count())
        .select_from(WebhookEndpoint)
        .where(WebhookEndpoint.account_id == account.id)
    )
    if (count or 0) >= ENDPOINTS_MAX:
        raise ValidationFailed(
            f"At most {ENDPOINTS_MAX} endpoints an account.", field="url", code="too_many"
        )
    endpoint_id, secret = new_id(), delivery.new_secret()
    endpoint = WebhookEndpoint(
        id=endpoint_id, account_id=account.id, secret=delivery.seal(endpoint_id, secret), **checked
    )
    db.session.add(endpoint)
    audit.record(
        "webhook_endpoint.create", "WebhookEndpoint", endpoint_id, checked, account_id=account.id
    )
    commit()
    return WithSecret(endpoint, secret)


def list_endpoints(account: Account) -> list[WebhookEndpoint]:
    return list(
        db.session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.account_id == account.id)
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
    )


def get_endpoint(account: Account, endpoint_id: str) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id) if len(endpoint_id) <= 36 else None
    if endpoint is None or endpoint.account_id != account.id:
        raise NotFound("No such webhook endpoint.")
    return endpoint


def update_endpoint(endpoint: WebhookEndpoint, fields: Mapping[str, Any]) -> WebhookEndpoint:
    """Change an endpoint; enabling it again starts its failure clock afresh."""
    checked = _check(fields)
    for name, value in checked.items():
        setattr(endpoint, name, value)
    if checked.get("enabled"):
        endpoint.failing_since = None
        endpoint.disabled_reason = None
    audit.record(
        "webhook_endpoint.update",
        "WebhookEndpoint",
        endpoint.id,
        checked,
        account_id=endpoint.account_id,
    )
    commit()
    return endpoint


def rotate_secret(endpoint: WebhookEndpoint) -> WithSecret:
    """A new secret; the old one signs beside it for 24 hours (two signatures a delivery)."""
    secret = delivery.new_secret()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_until = utcnow() + ROTATION_OVERLAP
    endpoint.secret = delivery.seal(endpoint.id, secret)
    audit.record(
        "webhook_endpoint.secret.rotate",
        "WebhookEndpoint",
        endpoint.id,
        account_id=endpoint.account_id,
    )
    commit()
    return WithSecret(endpoint, secret)


def delete_endpoint(endpoint: WebhookEndpoint) -> None:
    """Delete an endpoint and its delivery log (pending deliveries are not sent)."""
    audit.record(
        "webhook_endpoint.delete", "WebhookEndpoint", endpoint.id, account_id=endpoint.account_id
    )
    db.session.execute(db.delete(OutboxItem).where(OutboxItem.endpoint_id == endpoint.id))
    db.session.delete(endpoint)
    commit()


def send_test(account: Account, endpoint: WebhookEndpoint) -> OutboxItem:
    """Queue a signed `identity.webhook.test.success` to this endpoint only."""
    emit(delivery.TEST_EVENT, account=account, endpoint=endpoint)
    item = db.session.scalar(
        select(OutboxItem)
        .where(OutboxItem.endpoint_id == endpoint.id, OutboxItem.event == delivery.TEST_EVENT)
        .order_by(OutboxItem.created_at.desc())
        .limit(1)
    )
    assert item is not None  # staged and committed just now
    return item


def deliveries(
    account: Account,
    *,
    endpoint_id: str | None = None,
    event: str | None = None,
    status: str | None = None,
    page: int = 1,
    size: int = 25,
) -> tuple[list[OutboxItem], int]:
    """The account's webhook deliveries, newest first: (one page, total count)."""
    where = [OutboxItem.account_id == account.id, OutboxItem.kind == "webhook"]
    if endpoint_id is not None:
        where.append(OutboxItem.endpoint_id == endpoint_id)
    if event is not None:
        where.append(OutboxItem.event == event)
    if status is not None:
        where.append(OutboxItem.status == status)
    total = db.session.scalar(select(func.count()).select_from(OutboxItem).where(*where))
    rows = db.session.scalars(
        select(OutboxItem)
        .where(*where)
        .order_by(OutboxItem.created_at.desc(), OutboxItem.id.desc())
        .limit(size)
        .offset((page - 1) * size)
    ).all()
    return list(rows), int(total or 0)


def get_delivery(account: Account, delivery_id: str) -> OutboxItem:
    item = db.session.get(OutboxItem, delivery_id) if len(delivery_id) <= 36 else None
    if item is None or item.kind != "webhook" or item.account_id != account.id:
        raise NotFound("No such webhook delivery.")
    return item


def retry_delivery(account: Account, delivery_id: str) -> OutboxItem:
    """Make a delivery due now (same webhook-id), whatever its state; the workers send it."""
    item = get_delivery(account, delivery_id)
    outbox.retry_now(item)
    commit()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    delivery.nudge(app)
    return item
