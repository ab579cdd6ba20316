"""Audit log: `GET /v1/audit_events` (owner and administrators): the administrative
changes of the token's account, newest first, filtered by `filter[action]`,
`filter[targetType]` and `filter[targetId]`, paginated as the login history is.
"""

from __future__ import annotations

from typing import Any

from flask import Response, request

from authserver.identity import audit
from authserver.platform.errors import NotFound
from authserver.platform.models import AuditEvent, Role

from . import jsonapi, openapi, query
from .auth import current_token, require_token
from .blueprint import bp

TARGET_TYPE_MAX = 32  # the column's width: a longer filter matches nothing anyway
TARGET_ID_MAX = 255


EVENT_FIELDS = frozenset(
    {"time", "action", "actorType", "actorId", "ip", "targetType", "targetId", "changed"}
)
LIST_QUERY = query.QuerySpec(
    types={"AuditEvent": EVENT_FIELDS},
    sort=("time",),
    sort_description="Default -time (newest first).",
    params=frozenset(
        {
            "filter[action]",
            "filter[targetType]",
            "filter[targetId]",
            "page[number]",
            "page[size]",
        }
    ),
)


def _event_resource(event: AuditEvent) -> dict[str, Any]:
    return jsonapi.resource(
        "AuditEvent",
        event.id,
        {
            "time": event.created_at,
            "action": event.action,
            "actorType": event.actor_type,
            "actorId": event.actor_id,
            "ip": event.ip,
            "targetType": event.target_type,
            "targetId": event.target_id,
            "changed": list(event.changed or []),
        },
    )


def _text_filter(name: str, max_len: int) -> str | None:
    key = f"filter[{name}]"
    value = request.args.get(key)
    if value is not None and (
        not value or len(value) > max_len or any(ord(c) < 32 or c == "\x7f" for c in value)
    ):
        jsonapi.fail_parameter(key, f"{key} must be 1 to {max_len} printable characters.")
    return value


@bp.get("/audit_events")
@query.takes(LIST_QUERY)
@require_token(Role.OWNER, Role.ADMINISTRATOR)
def list_audit_events() -> Response:
    """The token's account's audit events, newest first (its test account has its own)."""
    account_id = current_token().account_id
    if account_id is None:
        raise NotFound("This token is not for an account.")
    action = request.args.get("filter[action]")
    if action is not None and action not in audit.ACTIONS:
        jsonapi.fail_parameter(
            "filter[action]", f"filter[action] must be one of: {', '.join(audit.ACTIONS)}."
        )
    target_type = _text_filter("targetType", TARGET_TYPE_MAX)
    target_id = _text_filter("targetId", TARGET_ID_MAX)
    number = jsonapi.page_param("number", 1, jsonapi.PAGE_NUMBER_MAX)
    size = jsonapi.page_param("size", jsonapi.PAGE_SIZE, jsonapi.PAGE_SIZE_MAX)
    rows, total = audit.events(
        account_id=account_id,
        action=action,
        target_type=target_type,
        target_id=target_id,
        page=number,
        size=size,
        oldest_first=any(not key.descending for key in query.current().sort[:1]),
    )
    return jsonapi.document(
        [_event_resource(r) for r in rows],
        meta={"totalCount": total},
        links=jsonapi.page_links(number, size, total),
    )


_PRINTABLE = "^[^\\x00-\\x1f\\x7f]+$"
_EVENT_LIST = openapi.resource_list(
    "AuditEvent",
    {
        "time": {"type": "string", "format": "date-time"},
        "action": {"type": "string", "enum": list(audit.ACTIONS)},
        "actorType": {"type": "string", "enum": list(audit.ACTOR_TYPES)},
        "actorId": {
            "type": ["string", "null"],
            "description": "a user id, a client id, or the operator's login name for cli",
        },
        "ip": {"type": ["string", "null"]},
        "targetType": {"type": "string"},
        "targetId": {"type": "string"},
        "changed": {
            "type": "array",
            "items": {"type": "string"},
            "description": "names of the fields the change set, never their values",
        },
    },
)

OPENAPI: dict[str, Any] = {
    "paths": {
        "/audit_events": {
            "get": {
                "summary": "The account's administrative changes, newest first",
                "operationId": "listAuditEvents",
                "parameters": [
                    {"$ref": "#/components/parameters/pageNumber"},
                    {"$ref": "#/components/parameters/pageSize"},
                    {
                        "name": "filter[action]",
                        "in": "query",
                        "schema": {"type": "string", "enum": list(audit.ACTIONS)},
                    },
                    {
                        "name": "filter[targetType]",
                        "in": "query",
                        "description": "Account, User, OAuthClient, ...",
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": TARGET_TYPE_MAX,
                            "pattern": _PRINTABLE,
                        },
                    },
                    {
                        "name": "filter[targetId]",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": TARGET_ID_MAX,
                            "pattern": _PRINTABLE,
                        },
                    },
                ],
                "responses": {
                    "200": openapi.body(_EVENT_LIST, "Audit events, newest first"),
                    **openapi.error_responses(400, 404),
                },
            }
        }
    }
}
