"""Webhook deliveries per Standard Webhooks: the outbox rows an event causes (one per
listening endpoint of its account), the signing secrets at rest, and the signed POST.

The body is `{"type", "timestamp", "data"}`, `data` being the resource as /v1 renders it
(the API registers its renderer under RENDERER: the platform does not know the wire
format). Headers `webhook-id` (the row's, stable across retries), `webhook-timestamp`
and `webhook-signature` (`v1,<base64 HMAC-SHA256>` per live secret, space-separated).
Targets that resolve to loopback, private, link-local or other special addresses are
refused at send time unless WEBHOOK_ALLOW_PRIVATE_TARGETS; the connection goes to the
address that was checked (no second lookup to rebind), and redirects are not followed.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import secrets
import socket
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Flask, current_app
from sqlalchemy import select
from standardwebhooks import Webhook

from authserver.platform import events, outbox
from authserver.platform.extensions import db
from authserver.platform.keys import decrypt_jwk, derive_cipher, encrypt_jwk
from authserver.platform.models import WebhookEndpoint, utcnow

RENDERER = "authserver.webhook_renderer"
CIPHER = "authserver.webhook_cipher"
TEST_EVENT = "identity.webhook.test.success"
SECRET_BYTES = 24
RESPONSE_READ_MAX = 4096  # bytes of an answer read (and then ignored) before closing
# The API's renderer of a delivery body: (event, payload, RFC 3339 timestamp) -> JSON text.
Renderer = Callable[[str, dict[str, Any], str], str]


def new_secret() -> str:
    """`whsec_` + base64 of 24 random bytes (Standard Webhooks' secret format)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _cipher(app: Flask) -> AESGCM:
    cipher = app.extensions.get(CIPHER)
    if cipher is None:
        config = app.config
        cipher = derive_cipher(config["KEY_ENCRYPTION_SECRET"] or config["SECRET_KEY"])
        app.extensions[CIPHER] = cipher
    return cipher


def seal(endpoint_id: str, secret: str) -> str:
    """The secret encrypted for the endpoint's row (bound to its id)."""
    return encrypt_jwk(_cipher(current_app), f"webhook:{endpoint_id}", {"s": secret})


def unseal(endpoint_id: str, sealed: str) -> str:
    return str(decrypt_jwk(_cipher(current_app), f"webhook:{endpoint_id}", sealed)["s"])


def live_secrets(endpoint: WebhookEndpoint) -> list[str]:
    """The current secret, and the previous one while its overlap after a rotation lasts."""
    found = [unseal(endpoint.id, endpoint.secret)]
    if endpoint.previous_secret and endpoint.previous_until and endpoint.previous_until > utcnow():
        found.append(unseal(endpoint.id, endpoint.previous_secret))
    return found


def hears(endpoint: WebhookEndpoint, event: str) -> bool:
    return "*" in endpoint.events or event in endpoint.events


def _account_id(payload: dict[str, Any]) -> str | None:
    account = payload.get("account")
    if account is None:
        account = getattr(payload.get("user"), "account", None)
    return getattr(account, "id", None)


def body_for(event: str, payload: dict[str, Any]) -> str:
    """The JSON body of the event's deliveries (the same for every endpoint)."""
    stamp = utcnow().isoformat(timespec="milliseconds").replace("+00:00", "Z")
    renderer: Renderer | None = current_app.extensions.get(RENDERER)
    if renderer is not None:
        return renderer(event, payload, stamp)
    # An app without the API (none today) still tells the event and its time.
    return json.dumps({"type": event, "timestamp": stamp, "data": None})


def stage_deliveries(event: str, payload: dict[str, Any]) -> None:
    """Add a delivery row for every enabled endpoint of the event's account that hears it
    (the test event: only its own endpoint)."""
    account_id = _account_id(payload)
    if account_id is None:
        return  # a global user's or an anonymous event: no account's endpoints hear it
    if event == TEST_EVENT:
        endpoints = [payload["endpoint"]]
    else:
        endpoints = [e for e in enabled_endpoints(account_id) if hears(e, event)]
    if not endpoints:
        return
    body = body_for(event, payload)
    for endpoint in endpoints:
        outbox.add("webhook", event, body, account_id=account_id, endpoint_id=endpoint.id)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    events.on_commit(lambda: nudge(app))


def enabled_endpoints(account_id: str) -> list[WebhookEndpoint]:
    """The account's enabled endpoints (one indexed query per event of an account)."""
    return list(
        db.session.scalars(
            select(WebhookEndpoint).where(
                WebhookEndpoint.account_id == account_id, WebhookEndpoint.enabled.is_(True)
            )
        )
    )


def nudge(app: Flask) -> None:
    """Wake the app's in-process delivery thread, if it delivers in-process."""
    wake = app.extensions.get("authserver.delivery_wake")
    if wake is not None:
        wake()


# ------------------------------------------------------------------------ sending


class TargetRefused(Exception):
    """The URL resolves to an address webhooks may not reach."""


def refused_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    address = mapped or address
    return not address.is_global or address.is_multicast


def resolve(host: str, port: int, allow_private: bool) -> str:
    """The address to connect to: the first one `host` resolves to, all of them checked."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"cannot resolve host: {type(exc).__name__}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise TargetRefused("host has no address")
    if not allow_private and any(refused_address(a) for a in addresses):
        raise TargetRefused("target resolves to a private, loopback or link-local address")
    return str(addresses[0])


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever DNS says a moment later."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def signature(endpoint_secrets: list[str], message_id: str, when: datetime, body: str) -> str:
    return " ".join(Webhook(s).sign(message_id, when, body) for s in endpoint_secrets)


def post(
    url: str,
    body: str,
    message_id: str,
    endpoint_secrets: list[str],
    timeout: float,
    allow_private: bool,
) -> outbox.Outcome:
    """POST one signed delivery; a 2xx answer within `timeout` is success."""
    parts = urlsplit(url)
    host, https = parts.hostname or "", parts.scheme == "https"
    try:
        port = parts.port or (443 if https else 80)
        address = resolve(host, port, allow_private)
    except (TargetRefused, ValueError) as exc:
        return outbox.Outcome(False, None, str(exc))
    when = datetime.now(UTC)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "authserver-webhooks",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature(endpoint_secrets, message_id, when, body),
    }
    cls = _PinnedHTTPSConnection if https else _PinnedHTTPConnection
    conn = cls(host, port, address, timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path, body=body.encode(), headers=headers)
        response = conn.getresponse()
        response.read(RESPONSE_READ_MAX)
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        return outbox.Outcome(False, None, f"{type(exc).__name__}: {exc}"[:200])
    finally:
        conn.close()
    if 200 <= status < 300:
        return outbox.Outcome(True, status)
    # A redirect is not followed (it would turn the POST into a GET elsewhere): a failure.
    return outbox.Outcome(False, status, f"HTTP {status}")


def init_app(app: Flask) -> None:
    """Stage webhook deliveries for every event this app stages."""
    events.add_stager(app, stage_deliveries)
