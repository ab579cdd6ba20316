"""Webhooks: `/v1/webhook_endpoints` (owner, administrator, developer) with
`rotate_secret` and `test`, the delivery log `/v1/webhook_deliveries` with `retry`, and
the renderer of every event's `data` (the resource as /v1 shows it, never a secret).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request

from authserver.identity import webhooks
from authserver.platform import outbox
from authserver.platform.errors import NotFound
from authserver.platform.extensions import db
from authserver.platform.models import Account, OutboxItem, Role, User, WebhookEndpoint
from authserver.platform.webhooks import RENDERER

from . import bodies, jsonapi, openapi, query
from .accounts import account_resource
from .auth import current_token, require_token
from .blueprint import bp
from .users import user_resource

MANAGERS = (Role.OWNER, Role.ADMINISTRATOR, Role.DEVELOPER)
EVENT_NAMES = ["*", *webhooks.SUBSCRIBABLE]
DELIVERY_EVENTS = [*webhooks.SUBSCRIBABLE, webhooks.delivery.TEST_EVENT]

ATTRIBUTES: dict[str, bodies.Attr] = {
    "url": bodies.text(
        webhooks.URL_MAX,
        min_len=1,
        description="https:// (any http(s) URL when the server allows private targets)",
    ),
    "events": bodies.strings(
        webhooks.EVENTS_MAX,
        128,
        item_doc={"enum": EVENT_NAMES},
        description='Event names, or ["*"] for all (default)',
    ),
    "description": bodies.text(
        webhooks.DESCRIPTION_MAX, nullable=True, pattern=bodies.NAME_PATTERN
    ),
    "enabled": bodies.flag(description="false: nothing is sent (default true)"),
}
CREATE = bodies.Body("WebhookEndpoint", ATTRIBUTES, required=frozenset({"url"}))
UPDATE = bodies.Body("WebhookEndpoint", ATTRIBUTES, update=True)


ENDPOINT_FIELDS = frozenset(
    {
        "url",
        "events",
        "description",
        "enabled",
        "disabledReason",
        "failingSince",
        "createdAt",
        "updatedAt",
        "secret",
    }
)
DELIVERY_FIELDS = frozenset(
    {
        "event",
        "webhookId",
        "status",
        "attempts",
        "lastStatus",
        "lastError",
        "lastAttemptAt",
        "nextAttemptAt",
        "deliveredAt",
        "createdAt",
        "endpoint",
    }
)
ENDPOINT_QUERY = query.QuerySpec(types={"WebhookEndpoint": ENDPOINT_FIELDS})
DELIVERY_QUERY = query.QuerySpec(types={"WebhookDelivery": DELIVERY_FIELDS})
DELIVERIES_QUERY = query.QuerySpec(
    types={"WebhookDelivery": DELIVERY_FIELDS},
    params=frozenset(
        {"filter[endpoint]", "filter[event]", "filter[status]", "page[number]", "page[size]"}
    ),
)


def endpoint_resource(endpoint: WebhookEndpoint, secret: str | None = None) -> dict[str, Any]:
    """The wire shape of an endpoint; `secret` only in the answers that made it."""
    attributes: dict[str, Any] = {
        "url": endpoint.url,
        "events": list(endpoint.events),
        "description": endpoint.description,
        "enabled": endpoint.enabled,
        "disabledReason": endpoint.disabled_reason,
        "failingSince": endpoint.failing_since,
        "createdAt": endpoint.created_at,
        "updatedAt": endpoint.updated_at,
    }
    if secret is not None:
        attributes["secret"] = secret
    return jsonapi.resource("WebhookEndpoint", endpoint.id, attributes)


def delivery_resource(item: OutboxItem) -> dict[str, Any]:
    pending = item.status == outbox.PENDING
    return jsonapi.resource(
        "WebhookDelivery",
        item.id,
        {
            "event": item.event,
            "webhookId": item.message_id,
            "status": item.status,
            "attempts": item.attempts,
            "lastStatus": item.last_status,
            "lastError": item.last_error,
            "lastAttemptAt": item.last_attempt_at,
            "nextAttemptAt": item.next_attempt_at if pending else None,
            "deliveredAt": item.delivered_at,
            "createdAt": item.created_at,
        },
        relationships={"endpoint": {"data": {"type": "WebhookEndpoint", "id": item.endpoint_id}}},
    )


def event_data(event: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """An event's `data`: its user, else its account, as /v1 renders them. Codes, tokens
    and secrets in the payload are never copied; a few plain facts go into meta."""
    user, account = payload.get("user"), payload.get("account")
    if isinstance(user, User):
        data = user_resource(user)
    elif isinstance(account, Account):
        data = account_resource(account, account.default_locale)
    else:
        return None
    endpoint = payload.get("endpoint")
    meta = {
        "method": payload.get("method"),
        "reason": payload.get("reason"),
        "clientId": payload.get("client_id"),
        "count": payload.get("count"),
        "endpointId": endpoint.id if isinstance(endpoint, WebhookEndpoint) else None,
    }
    meta = {k: str(v) if k == "method" else v for k, v in meta.items() if v is not None}
    if meta:
        data = {**data, "meta": meta}
    return data


def _account() -> Account:
    token = current_token()
    account = db.session.get(Account, token.account_id) if token.account_id else None
    if account is None:
        raise NotFound("This token is not for an account.")
    return account


@bp.get("/webhook_endpoints")
@query.takes(ENDPOINT_QUERY)
@require_token(*MANAGERS)
def list_webhook_endpoints() -> Response:
    """Every webhook endpoint of the token's account, oldest first."""
    found = webhooks.list_endpoints(_account())
    return jsonapi.document([endpoint_resource(e) for e in found], meta={"totalCount": len(found)})


@bp.post("/webhook_endpoints")
@require_token(*MANAGERS)
def create_webhook_endpoint() -> Response:
    """Register an endpoint; the answer holds its signing secret, once."""
    account = _account()
    new = webhooks.create_endpoint(account, CREATE.read().attributes)
    return jsonapi.document(
        endpoint_resource(new.endpoint, new.secret),
        status=201,
        headers={"Location": f"/v1/webhook_endpoints/{new.endpoint.id}"},
    )


@bp.get("/webhook_endpoints/<endpoint_id>")
@query.takes(ENDPOINT_QUERY)
@require_token(*MANAGERS)
def get_webhook_endpoint(endpoint_id: str) -> Response:
    """One endpoint of the token's account (404 for any other's)."""
    return jsonapi.document(endpoint_resource(webhooks.get_endpoint(_account(), endpoint_id)))


@bp.patch("/webhook_endpoints/<endpoint_id>")
@require_token(*MANAGERS)
def update_webhook_endpoint(endpoint_id: str) -> Response:
    """Change an endpoint's URL, events, description or enabled flag."""
    endpoint = webhooks.get_endpoint(_account(), endpoint_id)  # 404 before any body error
    attrs = UPDATE.read(require_id=endpoint.id).attributes
    return jsonapi.document(endpoint_resource(webhooks.update_endpoint(endpoint, attrs)))


@bp.delete("/webhook_endpoints/<endpoint_id>")
@require_token(*MANAGERS)
def delete_webhook_endpoint(endpoint_id: str) -> Response:
    """Delete an endpoint and its delivery log."""
    webhooks.delete_endpoint(webhooks.get_endpoint(_account(), endpoint_id))
    return jsonapi.no_content()


@bp.post("/webhook_endpoints/<endpoint_id>/rotate_secret")
@require_token(*MANAGERS)
def rotate_webhook_secret(endpoint_id: str) -> Response:
    """A new signing secret (in this answer only); the old one signs beside it for 24 h."""
    new = webhooks.rotate_secret(webhooks.get_endpoint(_account(), endpoint_id))
    return jsonapi.document(endpoint_resource(new.endpoint, new.secret))


@bp.post("/webhook_endpoints/<endpoint_id>/test")
@require_token(*MANAGERS)
def test_webhook_endpoint(endpoint_id: str) -> Response:
    """Queue a signed test event to this endpoint; the answer is its delivery (202)."""
    account = _account()
    item = webhooks.send_test(account, webhooks.get_endpoint(account, endpoint_id))
    return jsonapi.document(delivery_resource(item), status=202)


def _filter(name: str, allowed: list[str] | None = None, max_len: int = 128) -> str | None:
    key = f"filter[{name}]"
    value = request.args.get(key)
    if value is None:
        return None
    if allowed is not None and value not in allowed:
        jsonapi.fail_parameter(key, f"{key} must be one of: {', '.join(allowed)}.")
    # Printable ASCII only, as the OpenAPI pattern says (ids and event names are ASCII).
    if not value or len(value) > max_len or any(not 33 <= ord(c) <= 126 for c in value):
        jsonapi.fail_parameter(key, f"{key} must be 1 to {max_len} printable ASCII characters.")
    return value


@bp.get("/webhook_deliveries")
@query.takes(DELIVERIES_QUERY)
@require_token(*MANAGERS)
def list_webhook_deliveries() -> Response:
    """The account's webhook deliveries, newest first, by endpoint, event and status."""
    account = _account()
    endpoint_id = _filter("endpoint", max_len=36)
    event = _filter("event", DELIVERY_EVENTS)
    status = _filter("status", list(outbox.STATUSES))
    number = jsonapi.page_param("number", 1, jsonapi.PAGE_NUMBER_MAX)
    size = jsonapi.page_param("size", jsonapi.PAGE_SIZE, jsonapi.PAGE_SIZE_MAX)
    rows, total = webhooks.deliveries(
        account, endpoint_id=endpoint_id, event=event, status=status, page=number, size=size
    )
    return jsonapi.document(
        [delivery_resource(r) for r in rows],
        meta={"totalCount": total},
        links=jsonapi.page_links(number, size, total),
    )


@bp.get("/webhook_deliveries/<delivery_id>")
@query.takes(DELIVERY_QUERY)
@require_token(*MANAGERS)
def get_webhook_delivery(delivery_id: str) -> Response:
    """One delivery of the token's account."""
    return jsonapi.document(delivery_resource(webhooks.get_delivery(_account(), delivery_id)))


@bp.post("/webhook_deliveries/<delivery_id>/retry")
@require_token(*MANAGERS)
def retry_webhook_delivery(delivery_id: str) -> Response:
    """Send a delivery again now, with the same webhook-id (202)."""
    item = webhooks.retry_delivery(_account(), delivery_id)
    return jsonapi.document(delivery_resource(item), status=202)


def webhook_body(event: str, payload: dict[str, Any], timestamp: str) -> str:
    """A delivery's JSON body: {type, timestamp, data}."""
    return jsonapi.encode(
        {"type": event, "timestamp": timestamp, "data": event_data(event, payload)}
    )


def init_app(app: Flask) -> None:
    """Hand the platform this module's renderer for webhook payloads."""
    app.extensions[RENDERER] = webhook_body


# --- OpenAPI --------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}


def _path_id(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {**_STR, "minLength": 1, "maxLength": 64},
    }


_EP = [_path_id("endpoint_id")]
_DL = [_path_id("delivery_id")]
_ENDPOINT_ATTRS = {
    "url": _STR,
    "events": {"type": "array", "items": _STR},
    "description": _NSTR,
    "enabled": {"type": "boolean"},
    "disabledReason": _NSTR,
    "failingSince": _TIME,
    "secret": {**_STR, "readOnly": True, "description": "In the POST and rotate answers only"},
    "createdAt": _TIME,
    "updatedAt": _TIME,
}
_DELIVERY_ATTRS = {
    "event": _STR,
    "webhookId": _STR,
    "status": {"enum": list(outbox.STATUSES)},
    "attempts": {"type": "integer"},
    "lastStatus": {"type": ["integer", "null"]},
    "lastError": _NSTR,
    "lastAttemptAt": _TIME,
    "nextAttemptAt": _TIME,
    "deliveredAt": _TIME,
    "createdAt": _TIME,
}
_ONE_ENDPOINT = openapi.resource_document("WebhookEndpoint", _ENDPOINT_ATTRS, with_id=True)
_ONE_DELIVERY = openapi.resource_document("WebhookDelivery", _DELIVERY_ATTRS, with_id=True)
_FILTERS = [
    {
        "name": "filter[endpoint]",
        "in": "query",
        "schema": {**_STR, "minLength": 1, "maxLength": 36, "pattern": "^[\\x21-\\x7e]+$"},
    },
    {
        "name": "filter[event]",
        "in": "query",
        "schema": {"enum": DELIVERY_EVENTS},
    },
    {"name": "filter[status]", "in": "query", "schema": {"enum": list(outbox.STATUSES)}},
]

OPENAPI: dict[str, Any] = {
    "paths": {
        "/webhook_endpoints": {
            "get": {
                "summary": "List the account's webhook endpoints",
                "operationId": "listWebhookEndpoints",
                "responses": {
                    "200": openapi.body(
                        openapi.resource_list("WebhookEndpoint", _ENDPOINT_ATTRS),
                        "Every endpoint, meta.totalCount",
                    ),
                    **openapi.error_responses(401, 403, 404),
                },
            },
            "post": {
                "summary": "Register a webhook endpoint",
                "description": "The signing secret (whsec_...) is in attributes.secret of "
                "this answer only. Deliveries follow Standard Webhooks: POST JSON "
                "{type, timestamp, data} with webhook-id, webhook-timestamp and "
                "webhook-signature headers.",
                "operationId": "createWebhookEndpoint",
                "requestBody": bodies.request_body(CREATE),
                "responses": {
                    "201": openapi.body(_ONE_ENDPOINT, "The endpoint, with its secret"),
                    **openapi.error_responses(400, 401, 403, 404, 413, 415, 422, 503),
                },
            },
        },
        "/webhook_endpoints/{endpoint_id}": {
            "get": {
                "summary": "Retrieve a webhook endpoint",
                "operationId": "getWebhookEndpoint",
                "parameters": _EP,
                "responses": {
                    "200": openapi.body(_ONE_ENDPOINT, "The endpoint (never its secret)"),
                    **openapi.error_responses(401, 403, 404),
                },
            },
            "patch": {
                "summary": "Update a webhook endpoint",
                "operationId": "updateWebhookEndpoint",
                "parameters": _EP,
                "requestBody": bodies.request_body(UPDATE),
                "responses": {
                    "200": openapi.body(_ONE_ENDPOINT, "The updated endpoint"),
                    **openapi.error_responses(400, 401, 403, 404, 409, 413, 415, 422, 503),
                },
            },
            "delete": {
                "summary": "Delete a webhook endpoint and its delivery log",
                "operationId": "deleteWebhookEndpoint",
                "parameters": _EP,
                "responses": {
                    "204": {"description": "Deleted"},
                    **openapi.error_responses(401, 403, 404),
                },
            },
        },
        "/webhook_endpoints/{endpoint_id}/rotate_secret": {
            "post": {
                "summary": "Rotate a webhook endpoint's signing secret",
                "description": "The new secret is in this answer only; for 24 hours the old "
                "one signs too (two signatures in webhook-signature).",
                "operationId": "rotateWebhookSecret",
                "parameters": _EP,
                "responses": {
                    "200": openapi.body(_ONE_ENDPOINT, "The endpoint, with its new secret"),
                    **openapi.error_responses(401, 403, 404),
                },
            },
        },
        "/webhook_endpoints/{endpoint_id}/test": {
            "post": {
                "summary": "Send a test event to a webhook endpoint",
                "operationId": "testWebhookEndpoint",
                "parameters": _EP,
                "responses": {
                    "202": openapi.body(_ONE_DELIVERY, "The queued delivery"),
                    **openapi.error_responses(401, 403, 404),
                },
            },
        },
        "/webhook_deliveries": {
            "get": {
                "summary": "The account's webhook deliveries, newest first",
                "operationId": "listWebhookDeliveries",
                "parameters": [
                    {"$ref": "#/components/parameters/pageNumber"},
                    {"$ref": "#/components/parameters/pageSize"},
                    *_FILTERS,
                ],
                "responses": {
                    "200": openapi.body(
                        openapi.resource_list("WebhookDelivery", _DELIVERY_ATTRS),
                        "Deliveries, newest first",
                    ),
                    **openapi.error_responses(400, 401, 403, 404),
                },
            },
        },
        "/webhook_deliveries/{delivery_id}": {
            "get": {
                "summary": "Retrieve a webhook delivery",
                "operationId": "getWebhookDelivery",
                "parameters": _DL,
                "responses": {
                    "200": openapi.body(_ONE_DELIVERY, "The delivery"),
                    **openapi.error_responses(401, 403, 404),
                },
            },
        },
        "/webhook_deliveries/{delivery_id}/retry": {
            "post": {
                "summary": "Send a webhook delivery again now (same webhook-id)",
                "operationId": "retryWebhookDelivery",
                "parameters": _DL,
                "responses": {
                    "202": openapi.body(_ONE_DELIVERY, "The delivery, due now"),
                    **openapi.error_responses(401, 403, 404),
                },
            },
        },
    },
}
