"""Prometheus metrics: GET /metrics (loopback and METRICS_ALLOW only), request counts and
durations by Flask endpoint, login outcomes from the login events, and counters bumped at
the platform's one choke point for each fault (store, database, notification delivery).

Under gunicorn, PROMETHEUS_MULTIPROC_DIR (set before this module is imported) makes every
worker write its samples to files there, which any worker's /metrics adds up.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

from flask import Flask, Response, abort, current_app, g, has_request_context, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from authserver.platform.events import signal

COLLECTORS = "authserver.metrics_collectors"  # more collectors read at scrape time
# prometheus-client chose its value class at import by the same test (it also reads the
# old lower-case name, which we do not document).
MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ

REQUESTS = Counter(
    "authserver_http_requests",
    "HTTP requests answered, by Flask endpoint, method and status.",
    ["endpoint", "method", "status"],
)
DURATION = Histogram(
    "authserver_http_request_duration_seconds",
    "Time from the first request hook to the response, by Flask endpoint.",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
LOGINS = Counter(
    "authserver_logins",
    "Login attempts by front door (token, pages, cli), factors tried and outcome.",
    ["front_door", "method", "outcome"],
)
OTP_SENDS = Counter(
    "authserver_otp_sends",
    "Login codes handed to a sender, by channel (email, sms) and outcome (sent, failed).",
    ["channel", "outcome"],
)
THROTTLE_HITS = Counter(
    "authserver_throttle_hits",
    "Requests refused by a throttle (429), by Flask endpoint.",
    ["endpoint"],
)
STORE_ERRORS = Counter(
    "authserver_store_errors", "Redis operations that failed as unreachable (StoreUnavailable)."
)
DELIVERIES = Counter(
    "authserver_outbox_deliveries",
    "Delivery tries of outbox rows by kind (webhook, email, sms) and outcome.",
    ["kind", "outcome"],
)
DATABASE_ERRORS = Counter(
    "authserver_database_errors",
    "Database operations that failed as unavailable (DatabaseUnavailable, pool timeouts).",
)
PASSWORD_CHECKS_REFUSED = Counter(
    "authserver_password_checks_refused",
    "Password checks answered 503 because the line for a slot was too long (hashgate.py).",
)

# Labels an outsider controls are bounded: the endpoint is Flask's rule name (never the raw
# path), and a method outside this set is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # no route matched (404, or 405 before a rule was chosen)
FRONT_DOORS = {"oauth": "token", "authorize": "pages", "pages": "pages", "api": "api"}
# The children of the request metrics, looked up once per label set: the per-request work
# is then one dict lookup and the two updates (labels() would build and check strings).
_children: dict[tuple[str | None, str, int], tuple[Any, Any, Any]] = {}  # bounded keys only


class KeySource(Protocol):
    """What the key-age gauge needs of the keyring (keys.KeyRing)."""

    def newest_created_at(self) -> datetime: ...


def counted_store_error() -> None:
    STORE_ERRORS.inc()


def counted_database_error() -> None:
    DATABASE_ERRORS.inc()


def counted_password_check_refused() -> None:
    PASSWORD_CHECKS_REFUSED.inc()


def counted_otp_send(channel: str, sent: bool) -> None:
    OTP_SENDS.labels(channel, "sent" if sent else "failed").inc()


def counted_delivery(kind: str, outcome: str) -> None:
    DELIVERIES.labels(kind, outcome).inc()


def _start() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response: Response) -> Response:
    # The method is bounded before it keys the cache, or odd methods would grow it.
    method = request.method if request.method in METHODS else "other"
    key = (request.endpoint, method, response.status_code)
    children = _children.get(key)
    if children is None:
        endpoint = request.endpoint or UNMATCHED
        children = _children[key] = (
            REQUESTS.labels(endpoint, method, str(response.status_code)),
            DURATION.labels(endpoint),
            THROTTLE_HITS.labels(endpoint) if response.status_code == 429 else None,
        )
    requests, duration, throttled = children
    requests.inc()
    started = g.get("metrics_started")
    if started is not None:
        duration.observe(time.perf_counter() - started)
    if throttled is not None:
        throttled.inc()
    return response


def _front_door() -> str:
    if not has_request_context():
        return "cli"
    return FRONT_DOORS.get(request.blueprint or "", "other")


def _login_success(_sender: Flask, **payload: Any) -> None:
    LOGINS.labels(_front_door(), payload.get("method") or "-", "success").inc()


def _login_failure(_sender: Flask, **payload: Any) -> None:
    LOGINS.labels(_front_door(), payload.get("method") or "-", "failure").inc()


def _login_throttled(_sender: Flask, **payload: Any) -> None:
    LOGINS.labels(_front_door(), payload.get("method") or "-", "throttled").inc()


class KeyAgeCollector:
    """authserver_signing_key_age_seconds, read from the keyring at scrape time."""

    def __init__(self, keys: KeySource):
        self.keys = keys

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "authserver_signing_key_age_seconds",
            "Seconds since the newest signing key was made (rotate before it grows old).",
        )
        try:
            created = self.keys.newest_created_at()
        except Exception:  # no key yet (or unreadable): say nothing rather than fail the scrape
            return
        gauge.add_metric([], (datetime.now(UTC) - created).total_seconds())
        yield gauge


def allowed(remote_addr: str | None, networks: tuple[Any, ...]) -> bool:
    """Whether a client at `remote_addr` may read /metrics: loopback or an allowed network."""
    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    address = mapped or address
    return address.is_loopback or any(address in net for net in networks)


def parse_allow_list(value: str) -> tuple[Any, ...]:
    """METRICS_ALLOW: IP addresses or CIDR networks, separated by spaces or commas.
    Raises ValueError naming a bad entry."""
    networks = []
    for item in value.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {item!r}") from None
    return tuple(networks)


def metrics_view() -> Response:
    """The Prometheus text exposition; 403 unless the caller is loopback or allowed."""
    # Without a trusted proxy (PROXY_FIX 0) a request the local reverse proxy forwarded
    # comes from loopback too: refuse it, so /metrics never leaks through the proxy.
    forwarded = "X-Forwarded-For" in request.headers and not current_app.config["PROXY_FIX"]
    networks = current_app.extensions["authserver.metrics_allow"]
    if forwarded or not allowed(request.remote_addr, networks):
        abort(403)
    own = CollectorRegistry(auto_describe=False)
    own.register(KeyAgeCollector(current_app.extensions["authserver.keys"]))
    for collector in current_app.extensions.get(COLLECTORS, ()):
        own.register(collector)
    if MULTIPROCESS:
        MultiProcessCollector(own)
        body = generate_latest(own)
    else:
        body = generate_latest(REGISTRY) + generate_latest(own)
    response = Response(body, content_type=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    """Time and count every request, listen to the login events, serve /metrics."""
    app.extensions["authserver.metrics_allow"] = parse_allow_list(app.config["METRICS_ALLOW"])
    # First before every other hook, and (registered early) its after_request runs last,
    # so it sees the final status and times the whole request.
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_observe)
    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])
    signal("identity.login.success").connect(_login_success, sender=app)
    signal("identity.login.failure").connect(_login_failure, sender=app)
    signal("identity.login.throttled").connect(_login_throttled, sender=app)
