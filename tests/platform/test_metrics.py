"""GET /metrics: who may read it, and that the counters move with real requests on
PostgreSQL and Redis (logins, OTP sends, throttles, store and database outages)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from factories import PASSWORD, make_user
from flask import Flask
from flask.testing import FlaskClient
from oauth_helpers import password_grant
from prometheus_client.parser import text_string_to_metric_families

from authserver import ConfigError
from authserver.identity.login import FAILURES_PER_IP

EMAIL = "jane.doe@example.com"


def scrape(client: FlaskClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics (read from loopback), by name and labels."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.status_code
    assert response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_refused_to_a_non_allowed_address(client):
    """/metrics answers 403 to an address that is neither loopback nor allowed, and no
    sample leaks in the body."""
    response = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == 403
    assert b"authserver_http_requests_total" not in response.data


def test_metrics_answer_loopback_and_the_allow_list(make_app):
    """IPv4 and IPv6 loopback may read /metrics; METRICS_ALLOW adds networks, nothing more."""
    http = make_app(METRICS_ALLOW="203.0.113.0/24, 198.51.100.7").test_client()
    for address, status in [
        ("127.0.0.1", 200),
        ("::1", 200),
        ("203.0.113.9", 200),
        ("198.51.100.7", 200),
        ("198.51.100.8", 403),
        ("10.0.0.1", 403),
    ]:
        response = http.get("/metrics", environ_base={"REMOTE_ADDR": address})
        assert response.status_code == status, address


def test_metrics_refused_through_an_untrusted_proxy(client):
    """With PROXY_FIX 0, a loopback request that carries X-Forwarded-For came through the
    local reverse proxy from anywhere: refused."""
    response = client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
    assert response.status_code == 403


def test_metrics_allow_list_must_parse(make_app):
    """A METRICS_ALLOW entry that is no address or network stops the app with its name."""
    with pytest.raises(ConfigError, match=r"METRICS_ALLOW.*not-an-ip"):
        make_app(METRICS_ALLOW="10.0.0.0/8 not-an-ip")


def test_requests_are_counted_by_endpoint_never_by_path(client):
    """Requests count by Flask endpoint, method and status; an unknown path is `unmatched`
    and an unknown method `other`, so a scanner cannot grow the label sets."""
    before = scrape(client)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get("/no-such-path-4711").status_code == 404
    assert client.open("/healthz", method="BREW").status_code == 405
    after = scrape(client)
    count = "authserver_http_requests_total"
    assert (
        value(after, count, endpoint="web.healthz", method="GET", status="200")
        - value(before, count, endpoint="web.healthz", method="GET", status="200")
        == 3
    )
    assert (
        value(after, count, endpoint="unmatched", method="GET", status="404")
        - value(before, count, endpoint="unmatched", method="GET", status="404")
        == 1
    )
    assert not any("no-such-path" in str(labels) for _, labels in after)
    assert not any(("method", "BREW") in labels for _, labels in after)
    from authserver.platform import metrics

    assert not any("BREW" in key for key in metrics._children)  # nor the label cache
    duration = "authserver_http_request_duration_seconds_count"
    assert (
        value(after, duration, endpoint="web.healthz")
        - value(before, duration, endpoint="web.healthz")
        == 3
    )


def test_logins_are_counted_by_front_door_method_and_outcome(client, world):
    """A login, a failed login and a throttled one move authserver_logins_total for the
    token endpoint, and the throttled one authserver_throttle_hits_total too."""
    name = "authserver_logins_total"
    ok = {"front_door": "token", "method": "password", "outcome": "success"}
    bad = {**ok, "outcome": "failure"}
    throttled = {**ok, "outcome": "throttled"}
    hits = ("authserver_throttle_hits_total", {"endpoint": "oauth.token"})
    before = scrape(client)
    assert password_grant(client, world, "alice").status_code == 200
    assert password_grant(client, world, "alice", "wrong password").status_code == 400
    after_two = scrape(client)
    assert value(after_two, name, **ok) - value(before, name, **ok) == 1
    assert value(after_two, name, **bad) - value(before, name, **bad) == 1
    assert value(after_two, name, **throttled) == value(before, name, **throttled)

    for _ in range(FAILURES_PER_IP):
        assert password_grant(client, world, "alice", "wrong", ip="192.0.2.5").status_code == 400
    assert password_grant(client, world, "alice", "wrong", ip="192.0.2.5").status_code == 429
    after = scrape(client)
    assert value(after, name, **throttled) - value(before, name, **throttled) == 1
    assert value(after, hits[0], **hits[1]) - value(before, hits[0], **hits[1]) == 1


def test_otp_sends_are_counted_by_channel_and_outcome(app, world, make_app):
    """An emailed login code that the sender takes counts as sent; one whose SMTP server
    refuses the connection counts as failed."""
    make_user(app, world.live_id, "erin", password=PASSWORD, auth_method="tfa_email", email=EMAIL)
    name = "authserver_otp_sends_total"
    http = app.test_client()
    before = scrape(http)
    response = password_grant(http, world, "erin")
    assert response.status_code == 400 and response.json["error"] == "otp_required"
    middle = scrape(http)
    assert (
        value(middle, name, channel="email", outcome="sent")
        - value(before, name, channel="email", outcome="sent")
        == 1
    )

    # An SMTP port nothing listens on: the send fails (and the use case stands).
    broken = make_app(MAIL_URL="smtp://127.0.0.1:9", OTP_RESEND_COOLDOWN=0).test_client()
    response = password_grant(broken, world, "erin")
    assert response.status_code == 400 and response.json["error"] == "otp_required"
    after = scrape(http)
    assert (
        value(after, name, channel="email", outcome="failed")
        - value(middle, name, channel="email", outcome="failed")
        == 1
    )


def test_store_outage_is_counted(make_app, world, own_redis):
    """With Redis dead, a login answers 503 and authserver_store_errors_total moves."""
    http = make_app(REDIS_URL=own_redis.url).test_client()
    before = scrape(http)
    own_redis.kill()
    assert password_grant(http, world, "alice").status_code == 503
    after = scrape(http)
    name = "authserver_store_errors_total"
    assert value(after, name) > value(before, name)


def test_database_outage_is_counted(db_fault_app, world, pg_proxy):
    """With PostgreSQL cut, a login answers 503 and authserver_database_errors_total moves."""
    http = db_fault_app.test_client()
    before = scrape(http)
    pg_proxy.cut()
    assert password_grant(http, world, "alice").status_code == 503
    after = scrape(http)
    name = "authserver_database_errors_total"
    assert value(after, name) > value(before, name)


def test_signing_key_age_is_read_at_scrape_time(app: Flask, client):
    """authserver_signing_key_age_seconds is the age of the newest key in the keyring."""
    created = app.extensions["authserver.keys"].newest_created_at()
    age = value(scrape(client), "authserver_signing_key_age_seconds")
    expected = (datetime.now(UTC) - created).total_seconds()
    assert 0 <= age <= expected + 1
    assert age >= expected - 5


def test_hosted_page_logins_count_as_pages(web, world):
    """A login and a failed login on the hosted login page count under front_door=pages."""
    from pages_helpers import submit

    http = web.test_client()
    name = "authserver_logins_total"
    ok = {"front_door": "pages", "method": "password", "outcome": "success"}
    bad = {**ok, "outcome": "failure"}
    before = scrape(http)
    path = f"/login?aid={world.live_id}"
    assert submit(http, path, {"username": "alice", "password": "wrong"}).status_code == 401
    assert submit(http, path, {"username": "alice", "password": PASSWORD}).status_code == 303
    after = scrape(http)
    assert value(after, name, **ok) - value(before, name, **ok) == 1
    assert value(after, name, **bad) - value(before, name, **bad) == 1
