"""The OpenAPI 3.1 document of /v1, served at `/v1/openapi.json`.

Each resource module describes its own routes next to them, in a module-level `OPENAPI`
dict (`paths` relative to /v1, `schemas` it introduces). This module merges them with the
shared parts, and writes who may call each operation (`x-roles`, `security`) from the
`require_token` decorator of its view, so the document cannot disagree with the code on
roles. tests/test_openapi.py checks that every route is described and nothing else is.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from typing import Any

from flask import Flask, Response, current_app

from authserver.platform.config import SUPPORTED_LOCALES
from authserver.platform.models import ROLES

from . import jsonapi, query
from .blueprint import bp

EXTENSION = "authserver.openapi"
METHODS = ("get", "post", "patch", "put", "delete")
# What `require_token()` without roles admits, besides the user roles.
ANY_TOKEN = (*ROLES, "guest")

MEDIA = "application/vnd.api+json"
# Statuses every /v1 operation can answer, from the blueprint's negotiation before any
# view: an Accept it cannot honour, and any body that is too large or not JSON.
NEGOTIATION = (406, 413, 415)


def error_responses(*statuses: int) -> dict[str, Any]:
    """`responses` entries for error statuses, all answering the shared Error document."""
    return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in statuses}


def body(schema: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    """A JSON:API request or response body with `schema`."""
    content = {"content": {MEDIA: {"schema": schema}}}
    return {"description": description, **content} if description else content


def resource_document(type_: str, attributes: dict[str, Any], *, with_id: bool) -> dict[str, Any]:
    """The schema of a document holding one resource of `type_` with these attributes."""
    data: dict[str, Any] = {
        "type": "object",
        "required": ["type", *(["id"] if with_id else [])],
        "properties": {
            "type": {"const": type_},
            **({"id": {"type": "string"}} if with_id else {}),
            "attributes": {"type": "object", "properties": attributes},
        },
    }
    return {"type": "object", "required": ["data"], "properties": {"data": data}}


def resource_list(type_: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """The schema of a page of `type_` resources: data, meta.totalCount and links."""
    item = {
        "type": "object",
        "properties": {
            "type": {"const": type_},
            "id": {"type": "string"},
            "attributes": {"type": "object", "properties": attributes},
        },
    }
    return {
        "type": "object",
        "properties": {
            "data": {"type": "array", "items": item},
            "meta": {"type": "object", "properties": {"totalCount": {"type": "integer"}}},
            "links": {"type": "object"},
        },
    }


_STATUS_TEXT = {
    400: "Malformed request (JSON, parameters)",
    401: "No valid access token",
    403: "The token's role may not do this",
    406: "Accept names JSON:API only with parameters this server does not support",
    404: "Not found (also for what the caller may not know exists)",
    409: "Conflict (taken username, wrong data.type or data.id)",
    413: "Body too large",
    415: "Body is not JSON:API",
    422: "Validation failed; `source.pointer` names the attribute",
    429: "Too many attempts; see Retry-After",
    503: "A service the request needs is down",
}

SHARED: dict[str, Any] = {
    "securitySchemes": {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token from /oauth/token (user, guest or client).",
        }
    },
    "schemas": {
        "Error": {
            "type": "object",
            "required": ["errors"],
            "properties": {
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["status", "code", "title"],
                        "properties": {
                            "status": {"type": "string"},
                            "code": {"type": "string", "description": "Stable, snake_case"},
                            "title": {"type": "string"},
                            "detail": {"type": "string"},
                            "source": {
                                "type": "object",
                                "properties": {
                                    "pointer": {"type": "string"},
                                    "parameter": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "meta": {"type": "object", "properties": {"requestId": {"type": "string"}}},
            },
        },
    },
    "responses": {
        f"E{status}": {"description": text, **body({"$ref": "#/components/schemas/Error"})}
        for status, text in _STATUS_TEXT.items()
    },
    "parameters": {
        "locale": {
            "name": "locale",
            "in": "query",
            "required": False,
            "description": "Read/write localizable attributes in this locale (en, es, fr).",
            "schema": {"type": "string", "enum": list(SUPPORTED_LOCALES)},
        },
        "pageNumber": {
            "name": "page[number]",
            "in": "query",
            "required": False,
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": jsonapi.PAGE_NUMBER_MAX,
                "default": 1,
            },
        },
        "pageSize": {
            "name": "page[size]",
            "in": "query",
            "required": False,
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": jsonapi.PAGE_SIZE_MAX,
                "default": jsonapi.PAGE_SIZE,
            },
        },
    },
}

OPENAPI: dict[str, Any] = {
    "paths": {
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "getOpenApi",
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document of /v1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        }
    }
}


def openapi_path(rule: str) -> str:
    """`/v1/users/<id>` -> `/users/{id}` (converters dropped)."""
    path = rule.removeprefix(bp.url_prefix or "")
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", path) or "/"


def implied_statuses(operation: dict[str, Any], roles: tuple[str, ...] | None) -> list[int]:
    """The error statuses an operation answers by the way it is built, whatever its view
    does: negotiation; 401, 403 and 503 (the token check reads PostgreSQL and Redis) when
    it is guarded; 400 for its query parameters; 400, 409 and 422 for its request body."""
    statuses = set(NEGOTIATION)
    if roles is not None:
        statuses |= {401, 503} | ({403} if roles else set())
    parameters = operation.get("parameters", [])
    if any("$ref" in p or p.get("in") == "query" for p in parameters):
        statuses.add(400)  # every query parameter is checked: 400 invalid_parameter/locale
    if "requestBody" in operation:
        statuses |= {400, 409, 422}  # malformed document; type or id mismatch; attributes
    return sorted(statuses)


def _add_query_parameters(
    operation: dict[str, Any], spec: query.QuerySpec, components: dict[str, Any]
) -> None:
    """Add the view's sort/fields/include parameters; a documented query parameter the
    view's spec does not take would be refused with 400, so it stops the build."""
    parameters = operation.setdefault("parameters", [])
    for parameter in parameters:
        if "$ref" in parameter:
            parameter = components["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
        if parameter.get("in") == "query" and parameter["name"] not in spec.params:
            raise ValueError(f"{operation['operationId']}: {parameter['name']} not in its spec")
    parameters.extend(spec.parameters())


def build(app: Flask) -> dict[str, Any]:
    """Merge every /v1 module's description; add roles from each view's decorator."""
    paths: dict[str, dict[str, Any]] = {}
    components = copy.deepcopy(SHARED)
    seen: set[str] = set()
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith(f"{bp.name}."):
            continue
        view = app.view_functions[rule.endpoint]
        module = sys.modules[view.__module__]
        described: dict[str, Any] = getattr(module, "OPENAPI", {})
        if module.__name__ not in seen:
            seen.add(module.__name__)
            components["schemas"].update(copy.deepcopy(described.get("schemas", {})))
        path = openapi_path(rule.rule)
        item = described.get("paths", {}).get(path, {})
        for method in sorted(m.lower() for m in rule.methods or ()):
            if method not in METHODS or method not in item:
                continue
            operation = copy.deepcopy(item[method])
            if method == "get":
                _add_query_parameters(operation, query.spec_of(view), components)
            roles = getattr(view, "required_roles", None)
            if roles is not None:
                operation["security"] = [{"bearer": []}]
                operation["x-roles"] = list(roles or ANY_TOKEN)
            responses = operation.setdefault("responses", {})
            for status, ref in error_responses(*implied_statuses(operation, roles)).items():
                responses.setdefault(status, ref)
            operation["responses"] = dict(sorted(responses.items()))
            paths.setdefault(path, {})[method] = operation
    issuer = app.config["ISSUER"].rstrip("/")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "authserver identity API",
            "version": "1",
            "description": (
                "JSON:API (application/vnd.api+json) under /v1. `x-roles` on an operation "
                "lists the token roles that may call it; `guest` is a publishable-token "
                "token. Errors are JSON:API error documents with a stable `code`."
            ),
        },
        "servers": [{"url": f"{issuer}/v1"}],
        "components": components,
        "paths": dict(sorted(paths.items())),
    }


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI document, built once per app (routes do not change after start-up)."""
    cached = current_app.extensions.get(EXTENSION)
    if cached is None:
        cached = json.dumps(build(current_app), separators=(",", ":"))
        current_app.extensions[EXTENSION] = cached
    response = Response(cached, content_type="application/json")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
