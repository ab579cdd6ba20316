"""API resource: `/v1/apis` and `/v1/apis/{api_id}`, the token's account's own APIs
(resource servers) whose tokens this server issues (owner, administrator, developer).
On the wire `scopes` is an object {scope value: description}; the identifier is fixed
once made. Which scopes a client may get is the client's `apiScopes` (api/clients.py).
"""

from __future__ import annotations

from typing import Any

from flask import Response

from authserver.identity import apis
from authserver.platform.errors import ValidationFailed
from authserver.platform.models import ResourceApi

from . import bodies, jsonapi, names, openapi, query
from .auth import require_token
from .blueprint import bp
from .clients import MANAGERS, _account

SCOPES_DOC = {
    "description": "Scope value -> description (shown on the consent page); at most "
    f"{apis.SCOPES_MAX}; a value is 1-64 of A-Z a-z 0-9 _ . : / - and not aid:...; a "
    "description at most 255 characters. Replaces the old scopes (and clients' grants of "
    "removed ones).",
    "additionalProperties": {"type": "string", "maxLength": apis.DESCRIPTION_MAX},
    "maxProperties": apis.SCOPES_MAX,
    "propertyNames": {"pattern": apis.SCOPE_RE.pattern, "not": {"pattern": "^aid:"}},
}
ATTRIBUTES: dict[str, bodies.Attr] = {
    "identifier": bodies.text(
        apis.IDENTIFIER_MAX,
        description="The audience of its tokens: an https URI (http on loopback) without "
        "query or fragment, unique in the account; fixed once made",
    ),
    "name": bodies.text(255, pattern=bodies.NAME_PATTERN),
    "scopes": bodies.obj(**SCOPES_DOC),
    "tokenLifetime": bodies.integer(
        apis.LIFETIME_MIN,
        apis.LIFETIME_MAX,
        description=f"Seconds (default {apis.DEFAULT_LIFETIME})",
    ),
}
CREATE = bodies.Body("Api", ATTRIBUTES, required=frozenset({"identifier"}))
UPDATE = bodies.Body(
    "Api",
    {k: v for k, v in ATTRIBUTES.items() if k in names.attributes_of(apis.UPDATE_FIELDS)},
    update=True,
)
API_QUERY = query.QuerySpec(
    types={
        "Api": frozenset(
            {"identifier", "name", "scopes", "tokenLifetime", "createdAt", "updatedAt"}
        )
    }
)


def api_resource(api: ResourceApi) -> dict[str, Any]:
    """The wire shape of an API."""
    return jsonapi.resource(
        "Api",
        api.id,
        {
            "identifier": api.identifier,
            "name": api.name,
            "scopes": {s["value"]: s["description"] for s in api.scopes},
            "tokenLifetime": api.token_lifetime,
            "createdAt": api.created_at,
            "updatedAt": api.updated_at,
        },
    )


def _fields(attrs: dict[str, Any]) -> dict[str, Any]:
    fields = {names.field_of(name): value for name, value in attrs.items()}
    if "scopes" in fields:  # the wire's object -> the domain's list of pairs
        scopes = fields["scopes"]
        if not isinstance(scopes, dict):
            raise ValidationFailed("Give an object of scope -> description.", field="scopes")
        fields["scopes"] = [{"value": k, "description": v} for k, v in scopes.items()]
    return fields


@bp.get("/apis")
@query.takes(API_QUERY)
@require_token(*MANAGERS)
def list_apis() -> Response:
    """Every API of the token's account, oldest first."""
    found = apis.list_apis(_account().id)
    return jsonapi.document([api_resource(a) for a in found], meta={"totalCount": len(found)})


@bp.post("/apis")
@require_token(*MANAGERS)
def create_api() -> Response:
    """Register an API of the token's account."""
    account = _account()
    api = apis.create_api(account.id, **_fields(CREATE.read().attributes))
    return jsonapi.document(
        api_resource(api), status=201, headers={"Location": f"/v1/apis/{api.id}"}
    )


@bp.get("/apis/<api_id>")
@query.takes(API_QUERY)
@require_token(*MANAGERS)
def get_api(api_id: str) -> Response:
    """One API of the token's account (404 for any other's)."""
    return jsonapi.document(api_resource(apis.get_api(_account().id, api_id)))


@bp.patch("/apis/<api_id>")
@require_token(*MANAGERS)
def update_api(api_id: str) -> Response:
    """Change an API's name, scopes or token lifetime."""
    api = apis.get_api(_account().id, api_id)  # 404 before any body error
    attrs = UPDATE.read(require_id=api.id).attributes
    return jsonapi.document(api_resource(apis.update_api(api, _fields(attrs))))


@bp.delete("/apis/<api_id>")
@require_token(*MANAGERS)
def delete_api(api_id: str) -> Response:
    """Delete an API and every client's grant of it."""
    apis.delete_api(apis.get_api(_account().id, api_id))
    return jsonapi.no_content()


# --- OpenAPI --------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_STR = {"type": "string"}
_ID = {
    "name": "api_id",
    "in": "path",
    "required": True,
    "schema": {**_STR, "minLength": 1, "maxLength": 36},
}
_ERRORS = (400, 401, 403, 404, 409, 413, 415, 422, 503)

OPENAPI: dict[str, Any] = {
    "paths": {
        "/apis": {
            "get": {
                "summary": "List the account's APIs (resource servers)",
                "operationId": "listApis",
                "responses": {
                    "200": openapi.body(_ref("ApiList"), "Every API, meta.totalCount"),
                    **openapi.error_responses(401, 403, 404),
                },
            },
            "post": {
                "summary": "Register an API (resource server)",
                "description": "Tokens for it (token endpoint `resource=<identifier>`) carry "
                "aud = its identifier; clients get its scopes through their apiScopes.",
                "operationId": "createApi",
                "requestBody": bodies.request_body(CREATE),
                "responses": {
                    "201": openapi.body(_ref("ApiDocument"), "The created API"),
                    **openapi.error_responses(*_ERRORS),
                },
            },
        },
        "/apis/{api_id}": {
            "get": {
                "summary": "Retrieve an API",
                "operationId": "getApi",
                "parameters": [_ID],
                "responses": {
                    "200": openapi.body(_ref("ApiDocument"), "The API"),
                    **openapi.error_responses(401, 403, 404),
                },
            },
            "patch": {
                "summary": "Update an API",
                "description": "The identifier is fixed. scopes replaces the old ones; "
                "clients lose their grants of removed scopes.",
                "operationId": "updateApi",
                "parameters": [_ID],
                "requestBody": bodies.request_body(UPDATE),
                "responses": {
                    "200": openapi.body(_ref("ApiDocument"), "The updated API"),
                    **openapi.error_responses(*_ERRORS),
                },
            },
            "delete": {
                "summary": "Delete an API",
                "description": "Clients lose their grants of it; introspection stops calling "
                "its tokens active.",
                "operationId": "deleteApi",
                "parameters": [_ID],
                "responses": {
                    "204": {"description": "Deleted"},
                    **openapi.error_responses(401, 403, 404),
                },
            },
        },
    },
    "schemas": {
        "Api": {
            "type": "object",
            "required": ["type", "id"],
            "properties": {
                "type": {"const": "Api"},
                "id": _STR,
                "attributes": {
                    "type": "object",
                    "properties": {
                        "identifier": _STR,
                        "name": _STR,
                        "scopes": {"type": "object", "additionalProperties": _STR},
                        "tokenLifetime": {"type": "integer"},
                        "createdAt": {**_STR, "format": "date-time", "readOnly": True},
                        "updatedAt": {**_STR, "format": "date-time", "readOnly": True},
                    },
                },
            },
        },
        "ApiDocument": {
            "type": "object",
            "required": ["data"],
            "properties": {"data": _ref("Api")},
        },
        "ApiList": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "data": {"type": "array", "items": _ref("Api")},
                "meta": {"type": "object", "properties": {"totalCount": {"type": "integer"}}},
            },
        },
    },
}
