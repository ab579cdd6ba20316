"""The OpenAPI document at /v1/openapi.json: valid OpenAPI 3.1, and true to the routes."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from jsonschema import Draft202012Validator
from oauth_helpers import login
from openapi_spec_validator import validate
from verification_helpers import guest_token

from authserver.api import bodies
from authserver.api.openapi import METHODS, openapi_path
from authserver.identity import rules
from authserver.platform.errors import ValidationFailed

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


# --- the document tells the truth: statuses and request schemas (issue 14, finding 7) ------

MEDIA = "application/vnd.api+json"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def _owner_token(client: Any, world: Any) -> str:
    return str(login(client, world, username="alice", client_id=world.public_id)["access_token"])


def _url(path: str, query: str = "") -> str:
    return API_PREFIX + re.sub(r"\{[^}]+\}", UNKNOWN_ID, path) + (f"?{query}" if query else "")


def _provocations(path: str, method: str, operation: dict[str, Any]) -> list[dict[str, Any]]:
    """Requests each operation refuses before its use case runs: (kwargs for client.open)."""
    cases: list[dict[str, Any]] = [
        {"headers": {"Accept": f"{MEDIA}; charset=utf-8"}},  # 406
        {"data": b"x=1", "content_type": "text/plain"},  # 415
        {"data": b"{" * 70_000, "content_type": MEDIA},  # 413 (over MAX_CONTENT_LENGTH)
    ]
    if operation.get("security"):
        cases.append({"auth": False})  # 401
    for parameter in operation.get("parameters", []):
        if "$ref" in parameter or parameter.get("in") == "query":
            name = parameter.get("name") or parameter["$ref"].rsplit("/", 1)[1]
            name = {"pageNumber": "page[number]", "pageSize": "page[size]"}.get(name, name)
            cases.append({"query": urlencode({name: "AAA\x01"})})  # 400
    if "requestBody" in operation:
        cases += [
            {"data": b"{", "content_type": MEDIA},  # 400 malformed
            {"json": {"data": {"type": "Nope"}}},  # 409 type mismatch
            {"json": {"data": {"type": "X", "attributes": {"bogus": 1}}, "extra": 1}},  # 400
        ]
    return cases


def test_every_status_a_route_answers_is_documented(app, client, world):
    """Walks /v1/openapi.json: each operation, provoked with a bad Accept, a body that is
    too large or not JSON, no token, a bad query value and a bad document, answers only
    statuses its operation documents (?locale=AAA on /v1/user was an undocumented 400)."""
    app.config["MAX_CONTENT_LENGTH"] = 65_536
    document = _document(client)
    token = _owner_token(client, world)
    undocumented = []
    seen = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for case in _provocations(path, method, operation):
                headers = dict(case.pop("headers", {}))
                if case.pop("auth", True):
                    headers["Authorization"] = f"Bearer {token}"
                json_body = case.pop("json", None)
                if json_body is not None:
                    case |= {"data": json.dumps(json_body), "content_type": MEDIA}
                url = _url(path, case.pop("query", ""))
                response = client.open(url, method=method.upper(), headers=headers, **case)
                seen += 1
                assert response.status_code < 500, (method, url, response.get_data())
                if str(response.status_code) not in operation["responses"]:
                    undocumented.append((method.upper(), path, response.status_code))
    assert seen > 100
    assert undocumented == []


def test_the_statuses_the_fuzzer_found_undocumented_are_documented(client):
    """?locale=AAA on /v1/user and /v1/users/{id} (400) and a malformed or mistyped
    AccountReset (400, 409) are answered and documented; every guarded route documents 503
    (its token check needs PostgreSQL and Redis) and the throttled ones 429."""
    paths = _document(client)["paths"]
    for path in ("/user", "/users/{user_id}"):
        assert "400" in paths[path]["get"]["responses"], path
    assert {"400", "409", "422"} <= set(paths["/account_resets"]["post"]["responses"])
    for path, item in paths.items():
        for method, operation in item.items():
            if operation.get("security"):
                assert "503" in operation["responses"], (method, path)
    for path, method in [("/users", "post"), ("/user", "patch"), ("/password", "patch")]:
        assert "429" in paths[path][method]["responses"], (method, path)


def _request_validator(document: dict[str, Any], path: str, method: str) -> Any:
    """A JSON Schema validator of the operation's request body, refs resolved in `document`."""
    body = document["paths"][path][method]["requestBody"]
    schema = body["content"][MEDIA]["schema"]
    return Draft202012Validator({**document, **schema})


# (path, method, body the server refuses, status it answers): each must fail the schema.
REFUSED: list[tuple[str, str, Any, int]] = [
    # unknown attribute: additionalProperties false on attributes
    ("/account", "patch", {"data": {"type": "Account", "id": "ID", "attributes": {"x": 1}}}, 422),
    # unknown top-level and resource members: additionalProperties false on the document
    ("/account", "patch", {"data": {"type": "Account", "id": "ID"}, "x": 1}, 400),
    ("/account", "patch", {"data": {"type": "Account", "id": "ID", "x": {}}}, 400),
    ("/account", "patch", {"data": {"type": "Account"}}, 400),  # no id on an update
    ("/account", "patch", {"data": {"type": "Account", "id": "ID", "attributes": []}}, 400),
    ("/account", "patch", {"data": {"type": "Account", "id": "ID", "meta": 1}}, 400),
    (
        "/account",
        "patch",
        {"data": {"type": "Account", "id": "ID", "attributes": {"name": "n" * 256}}},
        422,
    ),
    (
        "/account",
        "patch",
        {"data": {"type": "Account", "id": "ID", "attributes": {"name": None}}},
        422,
    ),
    (
        "/account",
        "patch",
        {"data": {"type": "Account", "id": "ID", "attributes": {"defaultAuthMethod": None}}},
        422,
    ),
    ("/account_resets", "post", {"data": {"type": "AccountReset", "attributes": [None]}}, 400),
    ("/account_resets", "post", {"data": {"type": "AccountReset", "attributes": {"a": 1}}}, 422),
    # missing required / minLength
    ("/password_reset_tokens", "post", {"data": {"type": "PasswordResetToken"}}, 422),
    (
        "/password_reset_tokens",
        "post",
        {"data": {"type": "PasswordResetToken", "attributes": {"username": ""}}},
        422,
    ),
    # PATCH /v1/password takes exactly one of resetToken and currentPassword (oneOf)
    ("/password", "patch", {"data": {"type": "Password", "attributes": {"value": "x" * 12}}}, 422),
    (
        "/password",
        "patch",
        {
            "data": {
                "type": "Password",
                "attributes": {"value": "x" * 12, "resetToken": "a", "currentPassword": "b"},
            }
        },
        422,
    ),
    (
        "/password",
        "patch",
        {"data": {"type": "Password", "attributes": {"value": "x" * 12, "resetToken": None}}},
        422,
    ),
    (
        "/email_verification_tokens",
        "post",
        {
            "data": {
                "type": "EmailVerificationToken",
                "relationships": {"user": {"data": {"type": "User", "id": ""}}},
            }
        },
        400,
    ),
    ("/totp_setups", "post", {"data": {"type": "TotpSetup", "attributes": {"otp": 1}}}, 422),
    ("/users", "post", {"data": {"type": "User", "id": "x", "attributes": {}}}, 403),
]


@pytest.mark.parametrize(("path", "method", "body", "status"), REFUSED)
def test_request_schemas_refuse_what_the_server_refuses(
    app, client, world, path, method, body, status
):
    """The server refuses the body with `status`, and so does the operation's published
    request schema (additionalProperties, required, minLength, oneOf, maxLength, types)."""
    document = _document(client)
    guest = path == "/password_reset_tokens"  # a guest's route
    token = guest_token(client, world.live_prt) if guest else _owner_token(client, world)
    if body["data"].get("id") == "ID":
        body["data"]["id"] = world.live_id
    response = client.open(
        API_PREFIX + path,
        method=method.upper(),
        data=json.dumps(body),
        content_type=MEDIA,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == status, response.get_data(as_text=True)
    assert not _request_validator(document, path, method).is_valid(body)


def test_request_bodies_are_required_where_the_server_needs_one(app, client, world):
    """Every operation with a request body marks it required, but POST /v1/account_resets
    and POST /v1/email_verification_codes, whose bodies are optional; the server answers
    415 to a required body left out."""
    document = _document(client)
    token = _owner_token(client, world)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if "requestBody" not in operation:
                continue
            optional = (path, method) in (
                ("/account_resets", "post"),
                ("/email_verification_codes", "post"),
            )
            assert operation["requestBody"]["required"] is not optional, (method, path)
    response = client.patch("/v1/account", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 415


def test_request_schemas_take_what_the_server_takes(app, client, world):
    """A body the server accepts passes its published schema (the schema is not stricter)."""
    document = _document(client)
    token = _owner_token(client, world)
    body = {
        "data": {
            "type": "Account",
            "id": world.live_id,
            "attributes": {"name": "Acme 2", "companyName": None, "customData": {"a": [1]}},
            "meta": {},
        },
        "jsonapi": {"version": "1.1"},
    }
    response = client.patch(
        "/v1/account",
        data=json.dumps(body),
        content_type=MEDIA,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert _request_validator(document, "/account", "patch").is_valid(body)


@pytest.mark.parametrize("path", ["/users", "/user/logins", "/logins"])
def test_page_parameters_refuse_what_the_server_refuses(app, client, world, path):
    """page[number] past its maximum is a 400, and the document's parameter says maximum."""
    document = _document(client)
    token = _owner_token(client, world)
    limit = document["components"]["parameters"]["pageNumber"]["schema"]["maximum"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/v1{path}?page[number]={limit}", headers=headers).status_code == 200
    response = client.get(f"/v1{path}?page[number]={limit + 1}", headers=headers)
    assert response.status_code == 400
    assert "400" in document["paths"][path]["get"]["responses"]


@pytest.mark.parametrize("down", ["database", "redis"])
def test_every_guarded_route_answers_and_documents_503_with_a_dependency_down(
    app, client, world, make_app, unused_port, down
):
    """With PostgreSQL unreachable each guarded operation answers 503 (the token check
    reads the user and account rows), never 500, and documents it; with Redis unreachable
    none answers 500 (most need no Redis at all: the token check reads only PostgreSQL)
    and any 503 is documented."""
    document = _document(client)
    token = _owner_token(client, world)
    dead = f"127.0.0.1:{unused_port}"
    if down == "database":
        settings = {"DATABASE_URL": f"postgresql+psycopg://{dead}/gone"}
        if not app.config["DATABASE_URL"].startswith("postgresql"):
            pytest.skip("an unreachable database server needs the PostgreSQL suite")
    else:
        settings = {"REDIS_URL": f"redis://{dead}/0"}
    broken = make_app(**settings).test_client()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if not operation.get("security"):
                continue
            response = broken.open(
                _url(path), method=method.upper(), headers={"Authorization": f"Bearer {token}"}
            )
            if down == "database":
                assert response.status_code == 503, (method, path, response.status_code)
            assert response.status_code < 500 or response.status_code == 503, (method, path)
            assert str(response.status_code) in operation["responses"], (method, path)


TEXTS = ["abc", " a b ", "\tabc\n", "a\nb", "a\x7fb", "  ", "", "\x1f", "é", "ABC", "\u212a"]
TEXTS += ["a@b.c+d_e-f", "a b", "a/b", "\u0130", " x\u3000", "\u3000"]


@pytest.mark.parametrize("value", TEXTS)
def test_text_patterns_match_the_domain_rules(value):
    """The name and username patterns in the schema take exactly what identity's rules take
    (a stricter pattern would make the fuzzer's invalid data pass the server)."""
    for pattern, check in [
        (bodies.NAME_PATTERN, lambda v: rules.check_name(v, "name")),
        (bodies.USERNAME_PATTERN, rules.check_username),
    ]:
        try:
            check(value)
            taken = True
        except ValidationFailed:
            taken = False
        assert (re.search(pattern, value) is not None) == taken, (pattern, value)
