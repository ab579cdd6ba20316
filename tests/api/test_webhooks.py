"""Webhooks end to end: /v1/webhook_endpoints and /v1/webhook_deliveries, signed deliveries
to a real local HTTP sink verified with `standardwebhooks`, retries with one webhook-id,
secret rotation, private-target refusal, test/live separation and bad input.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from factories import World
from oauth_helpers import login
from standardwebhooks import Webhook
from webhook_helpers import endpoints, make_due, register, rows, run_worker, send

from authserver.platform.extensions import db
from authserver.platform.models import User, WebhookEndpoint, utcnow

ENDPOINTS = "/v1/webhook_endpoints"


@pytest.fixture
def hooks(make_app: Any, app: Any) -> Any:
    """An app (on `app`'s tables) that may deliver to the loopback sink."""
    return make_app(WEBHOOK_ALLOW_PRIVATE_TARGETS=True)


@pytest.fixture
def owner(client: Any, world: World) -> str:
    """alice's access token (owner of the live account)."""
    return str(login(client, world)["access_token"])


def test_signed_delivery_verifies_with_standardwebhooks(hooks, client, world, owner, event_sink):
    """alice's login reaches the endpoint signed (standardwebhooks verifies it), data her User."""
    hc = hooks.test_client()
    endpoint = register(hc, owner, event_sink.url, ["identity.login.success"])
    secret = endpoint["attributes"]["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) >= 24
    login(client, world)
    assert run_worker(hooks) == 1
    (got,) = event_sink.received
    payload = Webhook(secret).verify(got["body"], got["headers"])
    assert payload["type"] == "identity.login.success"
    assert payload["data"]["type"] == "User" and payload["data"]["id"] == world.alice_id
    assert payload["data"]["meta"]["method"] == "password"
    assert payload["timestamp"].endswith("Z")
    (row,) = rows(hooks, "webhook")
    assert got["headers"]["webhook-id"] == row["message_id"] and row["status"] == "delivered"
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + base64.b64encode(b"x" * 24).decode()).verify(got["body"], got["headers"])


def test_secret_is_shown_once_and_encrypted_at_rest(hooks, owner, event_sink):
    """GET never shows the secret, and the row does not hold it in the clear."""
    hc = hooks.test_client()
    endpoint = register(hc, owner, event_sink.url)
    secret = endpoint["attributes"]["secret"]
    shown = send(hc, "GET", f"{ENDPOINTS}/{endpoint['id']}", owner).get_json()["data"]
    assert "secret" not in shown["attributes"]
    listed = send(hc, "GET", ENDPOINTS, owner).get_json()
    assert secret not in json.dumps(listed)
    (row,) = endpoints(hooks)
    assert secret not in row["secret"] and secret[6:] not in row["secret"]


def test_500_twice_then_delivered_with_the_same_webhook_id(hooks, client, world, owner, event_sink):
    """The sink fails twice; the third try gets the event, all three with one webhook-id."""
    hc = hooks.test_client()
    secret = register(hc, owner, event_sink.url)["attributes"]["secret"]
    event_sink.statuses = [500, 500]
    login(client, world)
    run_worker(hooks)
    (row,) = rows(hooks, "webhook")
    assert row["status"] == "pending" and row["attempts"] == 1 and row["last_status"] == 500
    assert row["next_attempt_at"] > utcnow()  # backoff: not due again at once
    assert run_worker(hooks) == 0
    make_due(hooks)
    run_worker(hooks)
    make_due(hooks)
    run_worker(hooks)
    assert len(event_sink.received) == 3
    assert len(set(event_sink.ids())) == 1
    for got in event_sink.received:
        Webhook(secret).verify(got["body"], got["headers"])
    (row,) = rows(hooks, "webhook")
    assert row["status"] == "delivered" and row["attempts"] == 3 and row["last_status"] == 200


def test_rotation_signs_with_both_secrets(hooks, client, world, owner, event_sink):
    """After rotate_secret a delivery carries two signatures: old and new secret both verify."""
    hc = hooks.test_client()
    endpoint = register(hc, owner, event_sink.url)
    old = endpoint["attributes"]["secret"]
    rotated = send(hc, "POST", f"{ENDPOINTS}/{endpoint['id']}/rotate_secret", owner)
    assert rotated.status_code == 200
    new = rotated.get_json()["data"]["attributes"]["secret"]
    assert new != old and new.startswith("whsec_")
    login(client, world)
    run_worker(hooks)
    (got,) = event_sink.received
    assert len(got["headers"]["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(got["body"], got["headers"])
    Webhook(new).verify(got["body"], got["headers"])
    # Once the overlap is over, only the new secret signs.
    with hooks.app_context():
        row = db.session.get(WebhookEndpoint, endpoint["id"])
        row.previous_until = utcnow()
        db.session.commit()
    login(client, world)
    run_worker(hooks)
    last = event_sink.received[-1]
    assert len(last["headers"]["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(last["body"], last["headers"])
    with pytest.raises(Exception, match="signature"):
        Webhook(old).verify(last["body"], last["headers"])


def test_private_target_refused_at_send_time(app, client, world, owner, event_sink):
    """Without WEBHOOK_ALLOW_PRIVATE_TARGETS a name resolving to loopback gets nothing."""
    url = event_sink.url.replace("http://127.0.0.1", "https://localhost")
    register(client, owner, url)
    login(client, world)
    run_worker(app)
    assert event_sink.received == []
    (row,) = rows(app, "webhook")
    assert "private" in row["last_error"] and row["status"] == "pending"


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",  # not https
        "https://127.0.0.1/x",
        "https://10.0.0.8/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/x",
        "https://[fe80::1]/x",
        "https://0.0.0.0/x",
        "javascript:alert(1)",
        "https://user:pw@hooks.example.com/x",
        "https://hooks.example.com/x#frag",
        "https://hooks.example.com/a b",
        "https://hooks.example.com:99999/x",
        "//hooks.example.com/x",
        "https://" + "a" * 2050 + ".example.com/",
        "",
    ],
)
def test_hostile_urls_are_refused_and_nothing_is_stored(app, client, owner, url):
    """Each bad or private URL is a 4xx and no endpoint row appears."""
    body = {"data": {"type": "WebhookEndpoint", "attributes": {"url": url}}}
    response = send(client, "POST", ENDPOINTS, owner, body)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert endpoints(app) == []


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        {"data": {"type": "Client", "attributes": {"url": "https://h.example.com/"}}},
        {"data": {"type": "WebhookEndpoint", "attributes": {}}},
        {"data": {"type": "WebhookEndpoint", "attributes": {"url": 5}}},
        {
            "data": {
                "type": "WebhookEndpoint",
                "attributes": {"url": "https://h.example.com/", "events": "*"},
            }
        },
        {
            "data": {
                "type": "WebhookEndpoint",
                "attributes": {"url": "https://h.example.com/", "events": []},
            }
        },
        {
            "data": {
                "type": "WebhookEndpoint",
                "attributes": {"url": "https://h.example.com/", "events": ["nope"]},
            }
        },
        {
            "data": {
                "type": "WebhookEndpoint",
                "attributes": {"url": "https://h.example.com/", "events": ["*"] * 200},
            }
        },
        {
            "data": {
                "type": "WebhookEndpoint",
                "attributes": {"url": "https://h.example.com/", "description": "x" * 300},
            }
        },
        {
            "data": {
                "type": "WebhookEndpoint",
                "attributes": {"url": "https://h.example.com/", "enabled": "yes"},
            }
        },
        {
            "data": {
                "type": "WebhookEndpoint",
                "attributes": {"url": "https://h.example.com/", "secret": "whsec_mine"},
            }
        },
        {
            "data": {
                "type": "WebhookEndpoint",
                "attributes": {"url": "https://h.example.com/" + "a" * 70000},
            }
        },
    ],
)
def test_malformed_bodies_are_refused_and_nothing_is_stored(app, client, owner, body):
    """Malformed, mistyped, unknown, oversized: a 4xx and no endpoint row."""
    response = send(client, "POST", ENDPOINTS, owner, body)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert endpoints(app) == []


def test_patch_with_bad_input_changes_nothing(app, client, owner):
    """A PATCH to a private URL or unknown event is 422 and the endpoint stays as it was."""
    endpoint = register(client, owner, "https://hooks.example.com/in")
    before = endpoints(app)
    for attributes in ({"url": "https://127.0.0.1/"}, {"events": ["identity.nope"]}):
        body = {"data": {"type": "WebhookEndpoint", "id": endpoint["id"], "attributes": attributes}}
        response = send(client, "PATCH", f"{ENDPOINTS}/{endpoint['id']}", owner, body)
        assert response.status_code == 422
    assert endpoints(app) == before


def test_crud_and_other_accounts_see_nothing(app, client, world, owner):
    """Create, list, patch, delete; another account's owner gets 404 for the endpoint."""
    endpoint = register(
        client, owner, "https://hooks.example.com/in", ["identity.user.create.success"]
    )
    path = f"{ENDPOINTS}/{endpoint['id']}"
    body = {
        "data": {
            "type": "WebhookEndpoint",
            "id": endpoint["id"],
            "attributes": {"enabled": False, "description": "CRM sync", "events": ["*"]},
        }
    }
    patched = send(client, "PATCH", path, owner, body).get_json()["data"]["attributes"]
    assert patched["enabled"] is False and patched["events"] == ["*"]
    assert patched["description"] == "CRM sync"
    listed = send(client, "GET", ENDPOINTS, owner).get_json()
    assert [e["id"] for e in listed["data"]] == [endpoint["id"]]
    tess = login(client, world, username="tess", aid=world.test_id, client_id=world.test_public_id)
    assert send(client, "GET", path, tess["access_token"]).status_code == 404
    assert send(client, "DELETE", path, tess["access_token"]).status_code == 404
    assert send(client, "DELETE", path, owner).status_code == 204
    assert endpoints(app) == []


def test_test_account_endpoints_hear_only_test_events(hooks, client, world, event_sink):
    """tess's (test account) endpoint hears tess's login, not alice's (live) one."""
    hc = hooks.test_client()
    tess = login(client, world, username="tess", aid=world.test_id, client_id=world.test_public_id)
    register(hc, tess["access_token"], event_sink.url, ["identity.login.success"])
    event_sink.received.clear()
    login(client, world)  # alice, live
    run_worker(hooks)
    assert event_sink.received == []
    login(client, world, username="tess", aid=world.test_id, client_id=world.test_public_id)
    run_worker(hooks)
    (got,) = event_sink.received
    assert json.loads(got["body"])["data"]["id"] == world.tess_id


def test_deliveries_list_filter_retry_and_test_event(hooks, client, world, owner, event_sink):
    """The log shows attempts and status, filters by event/status, retries a failed one."""
    hc = hooks.test_client()
    endpoint = register(hc, owner, event_sink.url)
    queued = send(hc, "POST", f"{ENDPOINTS}/{endpoint['id']}/test", owner)
    assert queued.status_code == 202
    delivery = queued.get_json()["data"]
    assert delivery["attributes"]["event"] == "identity.webhook.test.success"
    event_sink.statuses = [503]
    run_worker(hooks)
    log = send(hc, "GET", "/v1/webhook_deliveries?filter[status]=pending", owner).get_json()
    (shown,) = log["data"]
    assert shown["id"] == delivery["id"]
    assert shown["attributes"]["attempts"] == 1 and shown["attributes"]["lastStatus"] == 503
    assert shown["attributes"]["nextAttemptAt"] is not None
    retried = send(hc, "POST", f"/v1/webhook_deliveries/{delivery['id']}/retry", owner)
    assert retried.status_code == 202
    run_worker(hooks)
    assert len(event_sink.received) == 2 and len(set(event_sink.ids())) == 1
    query = "filter[event]=identity.webhook.test.success&filter[status]=delivered"
    done = send(hc, "GET", f"/v1/webhook_deliveries?{query}", owner).get_json()
    assert done["meta"]["totalCount"] == 1
    assert send(hc, "GET", "/v1/webhook_deliveries?filter[status]=bogus", owner).status_code == 400
    assert send(hc, "GET", "/v1/webhook_deliveries?filter[event]=x", owner).status_code == 400
    bad = "/v1/webhook_deliveries?filter[endpoint]=%C3%97%C3%B8"  # not ASCII
    assert send(hc, "GET", bad, owner).status_code == 400
    assert send(hc, "POST", "/v1/webhook_deliveries/nope/retry", owner).status_code == 404


def test_failing_for_days_disables_the_endpoint_and_mails_owners(
    make_app, client, world, owner, event_sink
):
    """A failure after WEBHOOK_DISABLE_AFTER of failures disables it; the owner gets an email."""
    hooks = make_app(WEBHOOK_ALLOW_PRIVATE_TARGETS=True, WEBHOOK_DISABLE_AFTER=60)
    hc = hooks.test_client()
    with hooks.app_context():
        alice = db.session.get(User, world.alice_id)
        alice.email, alice.email_verified = "alice@example.com", True
        db.session.commit()
    endpoint = register(hc, owner, event_sink.url)
    event_sink.statuses = [500, 500]
    login(client, world)
    run_worker(hooks)
    assert endpoints(hooks)[0]["failing_since"] is not None
    with hooks.app_context():
        row = db.session.get(WebhookEndpoint, endpoint["id"])
        row.failing_since = utcnow().replace(year=utcnow().year - 1)
        db.session.commit()
    make_due(hooks)
    run_worker(hooks)
    (row,) = endpoints(hooks)
    assert row["enabled"] is False and row["disabled_reason"] == "failing"
    mails = [m for m in hooks.extensions["authserver.outbox"].of("email")]
    assert [m.to for m in mails] == ["alice@example.com"]
    assert endpoint["attributes"]["url"] in mails[0].text


def test_metrics_show_queue_depth(hooks, client, world, owner, event_sink):
    """/metrics reports the pending webhook rows."""
    register(hooks.test_client(), owner, event_sink.url)
    login(client, world)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'authserver_outbox_pending{kind="webhook"} 1.0' in text
    run_worker(hooks)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'authserver_outbox_pending{kind="webhook"} 0.0' in text
