"""Login history: `GET /v1/user/logins` (one's own) and `GET /v1/logins` (owner and
administrators: the whole account). Newest first, paginated with `page[number]` and
`page[size]` (at most 100).
"""

from __future__ import annotations

from typing import Any

from flask import Response

from authserver.identity import accounts
from authserver.platform.errors import NotFound
from authserver.platform.models import ROLES, LoginRecord, Role

from . import jsonapi, openapi, query
from .auth import current_token, require_token
from .blueprint import bp

PAGE_SIZE = jsonapi.PAGE_SIZE
PAGE_SIZE_MAX = jsonapi.PAGE_SIZE_MAX
PAGE_NUMBER_MAX = jsonapi.PAGE_NUMBER_MAX


def _login_resource(record: LoginRecord) -> dict[str, Any]:
    return jsonapi.resource(
        "Login",
        str(record.id),
        {
            "time": record.created_at,
            "ip": record.ip,
            "userAgent": record.user_agent,
            "method": record.method,
            "success": record.success,
            "reason": record.reason,
            "clientId": record.client_id,
            "userId": record.user_id,
            "actorId": record.actor_id,
        },
    )


LOGIN_FIELDS = frozenset(
    {"time", "ip", "userAgent", "method", "success", "reason", "clientId", "userId", "actorId"}
)
LIST_QUERY = query.QuerySpec(
    types={"Login": LOGIN_FIELDS},
    sort=("time",),
    sort_description="Default -time (newest first).",
    params=frozenset({"page[number]", "page[size]"}),
)


def _page(**who: str) -> Response:
    number = jsonapi.page_param("number", 1, PAGE_NUMBER_MAX)
    size = jsonapi.page_param("size", PAGE_SIZE, PAGE_SIZE_MAX)
    sort = query.current().sort
    oldest_first = bool(sort) and not sort[0].descending
    rows, total = accounts.login_history(page=number, size=size, oldest_first=oldest_first, **who)
    links = jsonapi.page_links(number, size, total)
    return jsonapi.document(
        [_login_resource(r) for r in rows], meta={"totalCount": total}, links=links
    )


@bp.get("/user/logins")
@query.takes(LIST_QUERY)
@require_token(*ROLES)
def my_logins() -> Response:
    """The current user's own logins, successful and not."""
    token = current_token()
    if token.user_id is None:
        raise NotFound("This token has no user.")
    return _page(user_id=token.user_id)


@bp.get("/logins")
@query.takes(LIST_QUERY)
@require_token(Role.OWNER, Role.ADMINISTRATOR)
def account_logins() -> Response:
    """Every login into the token's account (its test account has its own history)."""
    token = current_token()
    if token.account_id is None:
        raise NotFound("This token is not for an account.")
    return _page(account_id=token.account_id)


_LOGIN_LIST = openapi.resource_list(
    "Login",
    {
        "time": {"type": "string", "format": "date-time"},
        "ip": {"type": ["string", "null"]},
        "userAgent": {"type": ["string", "null"]},
        "method": {
            "type": "string",
            "description": "password, password+otp, password+sms, password+recovery_code, "
            "password+passkey, passkey, otp, refresh, support (a support specialist logged "
            "in as the user), ...",
        },
        "success": {"type": "boolean"},
        "reason": {"type": ["string", "null"]},
        "clientId": {"type": ["string", "null"]},
        "userId": {"type": ["string", "null"]},
        "actorId": {
            "type": ["string", "null"],
            "description": "A support login (method support): the support specialist's user id",
        },
    },
)
_PAGING = [
    {"$ref": "#/components/parameters/pageNumber"},
    {"$ref": "#/components/parameters/pageSize"},
]


def _logins_operation(summary: str, operation_id: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "operationId": operation_id,
            "parameters": _PAGING,
            "responses": {
                "200": openapi.body(_LOGIN_LIST, "Logins, newest first unless sort=time"),
                **openapi.error_responses(400, 404),
            },
        }
    }


OPENAPI: dict[str, Any] = {
    "paths": {
        "/user/logins": _logins_operation("The current user's logins", "listMyLogins"),
        "/logins": _logins_operation("Every login into the token's account", "listLogins"),
    }
}
