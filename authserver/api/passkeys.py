"""Passkey resource: `GET /v1/passkeys` (one's own; an owner or administrator also a
user's with `filter[userId]`), `PATCH /v1/passkeys/{id}` (the name) and `DELETE
/v1/passkeys/{id}`. Passkeys are made on the hosted security page only: the WebAuthn
ceremony needs a browser.
"""

from __future__ import annotations

from typing import Any

from flask import Response, request

from authserver.identity import passkeys, tokens
from authserver.platform.extensions import db
from authserver.platform.models import ROLES, Account, Passkey

from . import bodies, jsonapi, openapi, query
from .auth import current_token, require_token
from .blueprint import bp

UPDATE = bodies.Body(
    "Passkey",
    {"name": bodies.text(passkeys.NAME_MAX, min_len=1, pattern=bodies.NAME_PATTERN)},
    required=frozenset({"name"}),
    update=True,
)


PASSKEY_QUERY = query.QuerySpec(
    types={
        "Passkey": frozenset({"name", "createdAt", "lastUsedAt", "transports", "aaguid", "userId"})
    },
    params=frozenset({"filter[userId]"}),
)


def passkey_resource(passkey: Passkey) -> dict[str, Any]:
    return jsonapi.resource(
        "Passkey",
        passkey.id,
        {
            "name": passkey.name,
            "createdAt": passkey.created_at,
            "lastUsedAt": passkey.last_used_at,
            "transports": list(passkey.transports or []),
            "aaguid": passkey.aaguid,
            "userId": passkey.user_id,
        },
    )


def _caller() -> tuple[Account | None, str, str | None]:
    token = current_token()
    account = db.session.get(Account, token.account_id) if token.account_id else None
    return account, token.role, token.user_id


@bp.get("/passkeys")
@query.takes(PASSKEY_QUERY)
@require_token(*ROLES)
def list_passkeys() -> Response:
    """The caller's passkeys, or (owner, administrator) those of `filter[userId]`."""
    user_id = request.args.get("filter[userId]")
    if user_id is not None and (not user_id or len(user_id) > 36):
        jsonapi.fail_parameter("filter[userId]", "filter[userId] must be a user id.")
    whose = passkeys.user_to_list(*_caller(), user_id)
    found = passkeys.list_passkeys(whose)
    return jsonapi.document([passkey_resource(p) for p in found], meta={"totalCount": len(found)})


@bp.patch("/passkeys/<passkey_id>")
@require_token(*ROLES)
def rename_passkey(passkey_id: str) -> Response:
    """Give a passkey another name (its owner is emailed)."""
    passkey, _ = passkeys.passkey_to_change(*_caller(), passkey_id)  # 404 before body errors
    name = UPDATE.read(require_id=passkey.id).attributes["name"]
    return jsonapi.document(passkey_resource(passkeys.rename(passkey, name)))


@bp.delete("/passkeys/<passkey_id>")
@require_token(*ROLES)
def delete_passkey(passkey_id: str) -> Response:
    """Remove a passkey; it is refused at once. A user's own last second factor is
    removed on the security page (it asks for the password), not here."""
    passkey, own = passkeys.passkey_to_change(*_caller(), passkey_id)
    keep = tokens.Survivor.of(current_token()) if own else None
    passkeys.remove(passkey, keep=keep, refuse_last=own)
    return jsonapi.no_content()


# --- OpenAPI --------------------------------------------------------------------------


_STR = {"type": "string"}
_ID = {
    "name": "passkey_id",
    "in": "path",
    "required": True,
    "schema": {**_STR, "minLength": 1, "maxLength": 36},
}
_ATTRIBUTES = {
    "name": _STR,
    "createdAt": {**_STR, "format": "date-time"},
    "lastUsedAt": {"type": ["string", "null"], "format": "date-time"},
    "transports": {"type": "array", "items": _STR},
    "aaguid": {"type": ["string", "null"], "description": "The authenticator model, if told"},
    "userId": _STR,
}

OPENAPI: dict[str, Any] = {
    "paths": {
        "/passkeys": {
            "get": {
                "summary": "List passkeys",
                "description": "The current user's passkeys, oldest first; an owner or "
                "administrator may name one of the account's own users in filter[userId] "
                "(only an owner an owner's; never a global user's).",
                "operationId": "listPasskeys",
                "parameters": [
                    {
                        "name": "filter[userId]",
                        "in": "query",
                        "required": False,
                        "schema": {**_STR, "minLength": 1, "maxLength": 36},
                    }
                ],
                "responses": {
                    "200": openapi.body(
                        openapi.resource_list("Passkey", _ATTRIBUTES), "Passkeys, oldest first"
                    ),
                    **openapi.error_responses(400, 401, 403, 404),
                },
            },
        },
        "/passkeys/{passkey_id}": {
            "patch": {
                "summary": "Rename a passkey",
                "operationId": "renamePasskey",
                "parameters": [_ID],
                "requestBody": bodies.request_body(UPDATE),
                "responses": {
                    "200": openapi.body(
                        openapi.resource_document("Passkey", _ATTRIBUTES, with_id=True),
                        "The renamed passkey",
                    ),
                    **openapi.error_responses(400, 401, 403, 404, 409, 413, 415, 422, 503),
                },
            },
            "delete": {
                "summary": "Remove a passkey",
                "description": "Refused from this moment on. Removing someone's last second "
                "factor turns two-step login off and ends their other logins; a user's own "
                "last one is refused here (422 last_second_factor): the security page asks "
                "for the password.",
                "operationId": "deletePasskey",
                "parameters": [_ID],
                "responses": {
                    "204": {"description": "Removed"},
                    **openapi.error_responses(401, 403, 404, 422, 503),
                },
            },
        },
    },
}
