"""Client resource: `/v1/clients` and `/v1/clients/{client_id}`, the OAuth clients of the
token's account (owner, administrator, developer). The id is the OAuth client_id; the
secret is in the POST answer only (`clientSecret`), never again.
"""

from __future__ import annotations

from typing import Any

from flask import Response

from authserver.identity import apis, clients
from authserver.platform.errors import NotFound
from authserver.platform.extensions import db
from authserver.platform.models import Account, OAuthClient, Role

from . import bodies, jsonapi, names, openapi, query
from .auth import current_token, require_token
from .blueprint import bp

MANAGERS = (Role.OWNER, Role.ADMINISTRATOR, Role.DEVELOPER)  # who manages an account's apps

ATTRIBUTES: dict[str, bodies.Attr] = {
    "name": bodies.text(255, pattern=bodies.NAME_PATTERN),
    "redirectUris": bodies.strings(
        clients.URIS_MAX,
        clients.URI_MAX,
        description="Absolute, no fragment or user info; https, http on loopback, or a "
        "reverse-domain scheme (com.example.app:/cb). A list replaces the old one.",
    ),
    "postLogoutRedirectUris": bodies.strings(
        clients.URIS_MAX, clients.URI_MAX, description="Same rules as redirectUris"
    ),
    "grantTypes": bodies.strings(
        len(clients.GRANT_TYPES),
        64,
        item_doc={"enum": list(clients.GRANT_TYPES)},
        description="Default authorization_code and refresh_token; authorization_code "
        "needs a redirect URI; client_credentials is for confidential clients only",
    ),
    "scope": bodies.text(
        clients.SCOPE_MAX,
        description=f"Space-separated, of: {' '.join(clients.SCOPES)} (default all)",
    ),
    "public": bodies.flag(description="POST only: a client without a secret (SPA, mobile)"),
    "skipConsent": bodies.flag(description="A first-party app: users see no consent page"),
    "status": bodies.text(16, enum=list(clients.STATUSES)),
    "apiScopes": bodies.obj(
        description="PATCH only: the scopes of the account's own APIs (/v1/apis) this "
        "client may get, {API identifier: [scope, ...]}; replaces the old grants",
        additionalProperties={"type": "array", "items": {"type": "string"}},
    ),
}
_UPDATABLE = names.attributes_of(clients.UPDATE_FIELDS)

CREATE = bodies.Body(
    "Client",
    {k: v for k, v in ATTRIBUTES.items() if k not in ("status", "apiScopes")},
    required=frozenset({"name"}),
)
UPDATE = bodies.Body(
    "Client", {k: v for k, v in ATTRIBUTES.items() if k in _UPDATABLE}, update=True
)


CLIENT_FIELDS = frozenset(
    {
        "name",
        "status",
        "public",
        "redirectUris",
        "postLogoutRedirectUris",
        "grantTypes",
        "scope",
        "skipConsent",
        "apiScopes",
        "createdAt",
        "updatedAt",
    }
)
CLIENT_QUERY = query.QuerySpec(types={"Client": CLIENT_FIELDS})


def client_resource(client: OAuthClient, secret: str | None = None) -> dict[str, Any]:
    """The wire shape of a client; `secret` only in the answer that made it."""
    attributes: dict[str, Any] = {
        "name": client.name,
        "status": client.status,
        "public": client.is_public,
        "redirectUris": client.redirect_uris,
        "postLogoutRedirectUris": client.post_logout_redirect_uris,
        "grantTypes": client.grant_types,
        "scope": client.scope,
        "skipConsent": client.skip_consent,
        "apiScopes": apis.client_grants(client),
        "createdAt": client.created_at,
        "updatedAt": client.updated_at,
    }
    if secret is not None:
        attributes["clientSecret"] = secret
    return jsonapi.resource("Client", client.client_id, attributes)


def _account() -> Account:
    token = current_token()
    account = db.session.get(Account, token.account_id) if token.account_id else None
    if account is None:
        raise NotFound("This token is not for an account.")
    return account


def _fields(attrs: dict[str, Any]) -> dict[str, Any]:
    return {names.field_of(name): value for name, value in attrs.items()}


@bp.get("/clients")
@query.takes(CLIENT_QUERY)
@require_token(*MANAGERS)
def list_clients() -> Response:
    """Every client of the token's account, oldest first (deleted ones are gone)."""
    found = clients.list_clients(_account())
    return jsonapi.document([client_resource(c) for c in found], meta={"totalCount": len(found)})


@bp.post("/clients")
@require_token(*MANAGERS)
def create_client() -> Response:
    """Register a client for the token's account; the answer holds its secret, once."""
    account = _account()
    fields = _fields(CREATE.read().attributes)
    new = clients.create_client(account, fields.pop("name"), **fields)
    return jsonapi.document(
        client_resource(new.client, new.secret),
        status=201,
        headers={"Location": f"/v1/clients/{new.client.client_id}"},
    )


@bp.get("/clients/<client_id>")
@query.takes(CLIENT_QUERY)
@require_token(*MANAGERS)
def get_client(client_id: str) -> Response:
    """One client of the token's account (404 for any other's)."""
    return jsonapi.document(client_resource(clients.get_client(_account(), client_id)))


@bp.patch("/clients/<client_id>")
@require_token(*MANAGERS)
def update_client(client_id: str) -> Response:
    """Change a client's settings; status disabled ends its tokens at once."""
    client = clients.get_client(_account(), client_id)  # 404 before any body error
    attrs = UPDATE.read(require_id=client.client_id).attributes
    return jsonapi.document(client_resource(clients.update_client(client, _fields(attrs))))


@bp.delete("/clients/<client_id>")
@require_token(*MANAGERS)
def delete_client(client_id: str) -> Response:
    """Delete a client: its tokens and consents end at once."""
    clients.delete_client(clients.get_client(_account(), client_id))
    return jsonapi.no_content()


# --- OpenAPI --------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _one(description: str) -> dict[str, Any]:
    return openapi.body(_ref("ClientDocument"), description)


_STR = {"type": "string"}
_STRS = {"type": "array", "items": _STR}
_ID = {
    "name": "client_id",
    "in": "path",
    "required": True,
    "schema": {**_STR, "minLength": 1, "maxLength": 64},
}

OPENAPI: dict[str, Any] = {
    "paths": {
        "/clients": {
            "get": {
                "summary": "List the account's OAuth clients",
                "operationId": "listClients",
                "responses": {
                    "200": openapi.body(_ref("ClientList"), "Every client, meta.totalCount"),
                    **openapi.error_responses(401, 403, 404),
                },
            },
            "post": {
                "summary": "Register an OAuth client",
                "description": "A confidential client's secret is in attributes.clientSecret "
                "of this answer only; it is stored as a digest. Without grantTypes a client "
                "gets authorization_code and refresh_token (so it needs redirectUris); the "
                "password grant and client_credentials only when listed.",
                "operationId": "createClient",
                "requestBody": bodies.request_body(CREATE),
                "responses": {
                    "201": _one("The created client, with clientSecret if confidential"),
                    **openapi.error_responses(400, 401, 403, 404, 409, 413, 415, 422, 503),
                },
            },
        },
        "/clients/{client_id}": {
            "get": {
                "summary": "Retrieve an OAuth client",
                "operationId": "getClient",
                "parameters": [_ID],
                "responses": {
                    "200": _one("The client (never its secret)"),
                    **openapi.error_responses(401, 403, 404),
                },
            },
            "patch": {
                "summary": "Update an OAuth client",
                "description": "A list replaces the old one; the rules of registration "
                "apply to the result. status disabled refuses the client's access and "
                "refresh tokens at once; active again revives none of them.",
                "operationId": "updateClient",
                "parameters": [_ID],
                "requestBody": bodies.request_body(UPDATE),
                "responses": {
                    "200": _one("The updated client"),
                    **openapi.error_responses(400, 401, 403, 404, 409, 413, 415, 422, 503),
                },
            },
            "delete": {
                "summary": "Delete an OAuth client",
                "description": "Its tokens and consents end at once; its client_id is never "
                "reused.",
                "operationId": "deleteClient",
                "parameters": [_ID],
                "responses": {
                    "204": {"description": "Deleted"},
                    **openapi.error_responses(401, 403, 404),
                },
            },
        },
    },
    "schemas": {
        "Client": {
            "type": "object",
            "required": ["type", "id"],  # fields[Client]= may leave none
            "properties": {
                "type": {"const": "Client"},
                "id": {**_STR, "description": "The OAuth client_id"},
                "attributes": {
                    "type": "object",
                    "properties": {
                        "name": _STR,
                        "status": {"enum": list(clients.STATUSES)},
                        "public": {"type": "boolean"},
                        "redirectUris": _STRS,
                        "postLogoutRedirectUris": _STRS,
                        "grantTypes": _STRS,
                        "scope": _STR,
                        "skipConsent": {"type": "boolean"},
                        "apiScopes": {
                            "type": "object",
                            "additionalProperties": {"type": "array", "items": _STR},
                        },
                        "clientSecret": {
                            **_STR,
                            "readOnly": True,
                            "description": "In the POST answer only",
                        },
                        "createdAt": {**_STR, "format": "date-time", "readOnly": True},
                        "updatedAt": {**_STR, "format": "date-time", "readOnly": True},
                    },
                },
            },
        },
        "ClientDocument": {
            "type": "object",
            "required": ["data"],
            "properties": {"data": _ref("Client")},
        },
        "ClientList": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "data": {"type": "array", "items": _ref("Client")},
                "meta": {"type": "object", "properties": {"totalCount": {"type": "integer"}}},
            },
        },
    },
}
