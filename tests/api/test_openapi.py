"""The OpenAPI document at /v1/openapi.json: valid OpenAPI 3.1, and true to the routes."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate

from authserver.api.openapi import METHODS, openapi_path

API_PREFIX = "/v1"


def _document(client: Any) -> dict[str, Any]:
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return dict(response.get_json())


def _routes(app: Any) -> set[tuple[str, str]]:
    """Every (OpenAPI path, method) the app serves under /v1."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(API_PREFIX + "/") and rule.endpoint.startswith("api."):
            for method in rule.methods or ():
                if method.lower() in METHODS:
                    found.add((openapi_path(rule.rule), method.lower()))
    return found


def test_document_is_valid_openapi_3_1(client):
    """The served document passes the OpenAPI 3.1 schema validator (refs resolve)."""
    document = _document(client)
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_route_is_described_and_nothing_else(app, client):
    """Each /v1 route and method has an operation, and each operation is a real route."""
    document = _document(client)
    described = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }
    routes = _routes(app)
    assert routes, "no /v1 routes found"
    assert routes - described == set(), "routes missing from the OpenAPI document"
    assert described - routes == set(), "operations without a route"


def test_operations_are_complete_and_roles_come_from_the_code(app, client):
    """Every operation has a summary, a unique operationId and responses; a guarded one
    lists the roles its view admits and documents 401."""
    document = _document(client)
    ids = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation.get("summary"), (path, method)
            assert operation.get("responses"), (path, method)
            ids.append(operation["operationId"])
            view = app.view_functions[
                app.url_map.bind("localhost").match(
                    API_PREFIX + path.replace("{", "").replace("}", ""), method=method.upper()
                )[0]
            ]
            roles = getattr(view, "required_roles", None)
            if roles is None:
                assert "x-roles" not in operation, (path, method)
                continue
            assert "401" in operation["responses"], (path, method)
            if roles:
                assert operation["x-roles"] == list(roles), (path, method)
    assert len(ids) == len(set(ids)), "duplicate operationId"


def test_servers_url_is_the_configured_issuer(app, client):
    """The server URL comes from ISSUER, not from the request's Host header."""
    response = client.get("/v1/openapi.json", headers={"Host": "evil.example"})
    assert response.status_code == 200
    assert response.get_json()["servers"] == [{"url": app.config["ISSUER"].rstrip("/") + "/v1"}]
