"""The JSON:API plumbing under /v1: negotiation, strict documents, error rendering.

There are no real resources yet, so the tests add routes under /v1/_test to the app they
build (never to the package). Each endpoint is named `api.<name>`, which makes Flask treat
the view as part of the `api` blueprint, hooks and error handlers included, exactly like
a resource route.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask, Response, current_app
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from authserver.api import documents, jsonapi, names
from authserver.api.jsonapi import MEDIA_TYPE
from authserver.platform.errors import (
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Throttled,
    Unauthenticated,
    ValidationFailed,
)
from authserver.platform.store import StoreUnavailable

WIDGETS = "/v1/_test/widgets"
BADGES = "/v1/_test/badges"
ALLOWED = {"name", "nickname", "enabled", "count", "settings"}
CAP = 64 * 1024

# --- test-only routes ---------------------------------------------------------------------


def _calls() -> list[str]:
    calls: list[str] = current_app.extensions.setdefault("test_calls", [])
    return calls


def create_widget() -> Response:
    _calls().append("create")
    attrs = documents.parse_document(type_="Widget", allowed=ALLOWED, required={"name"})
    name = documents.expect_str(attrs, "name", max_len=20, min_len=1)
    nickname = documents.expect_str(attrs, "nickname", max_len=20, nullable=True)
    enabled = documents.expect_bool(attrs, "enabled")
    count = documents.expect_int(attrs, "count", min_value=0, max_value=100)
    settings = documents.expect_object(attrs, "settings")
    data = {"display_name": name, "nick_name": nickname, "is_enabled": enabled, "count": count}
    return jsonapi.document(
        jsonapi.resource("Widget", "w1", {**data, "settings": settings}), status=201
    )


def update_widget(widget_id: str) -> Response:
    attrs = documents.parse_document(type_="Widget", require_id=widget_id, allowed=ALLOWED)
    return jsonapi.document(jsonapi.resource("Widget", widget_id, attrs))


def create_badge() -> Response:
    """A create with a required `owner` (User) and an optional `issuer` (Account) to-one."""
    parsed = documents.parse_resource(
        type_="Badge",
        allowed={"label"},
        relationships={"owner": "User", "issuer": "Account"},
        required_relationships={"owner"},
    )
    return jsonapi.document(
        jsonapi.resource("Badge", "b1", parsed.attributes, meta=parsed.relationships),
        status=201,
    )


def list_widgets() -> Response:
    _calls().append("list")
    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    item = jsonapi.resource("Widget", "w1", {"created_at": stamp, "owner_id": uuid.UUID(int=1)})
    return jsonapi.document([item], meta={"total": 1}, links={"self": WIDGETS})


def delete_widget(widget_id: str) -> Response:
    return jsonapi.no_content()


DOMAIN_ERRORS: dict[str, Callable[[], DomainError]] = {
    "validation": lambda: ValidationFailed("Too weak.", field="newPassword"),
    "custom-code": lambda: ValidationFailed("Too weak.", field="password", code="weak_password"),
    "not-found": lambda: NotFound(),
    "conflict": lambda: Conflict("Username taken.", field="username"),
    "forbidden": lambda: Forbidden(),
    "unauthenticated": lambda: Unauthenticated(),
    "throttled": lambda: Throttled(42),
    "unavailable": lambda: ServiceUnavailable("Postgres at db.internal:5432 refused"),
    "store-unavailable": lambda: StoreUnavailable("Redis is unreachable: ConnectionError"),
    "other": lambda: DomainError("Something domain-specific."),
}


def raise_domain(kind: str) -> Response:
    raise DOMAIN_ERRORS[kind]()


def crash() -> Response:
    raise RuntimeError("db password is hunter2")


def add_test_routes(app: Flask) -> None:
    routes: list[tuple[str, str, Callable[..., Response], list[str]]] = [
        (WIDGETS, "create", create_widget, ["POST"]),
        (WIDGETS, "list", list_widgets, ["GET"]),
        (f"{WIDGETS}/<widget_id>", "update", update_widget, ["PATCH"]),
        (BADGES, "create_badge", create_badge, ["POST"]),
        (f"{WIDGETS}/<widget_id>", "delete", delete_widget, ["DELETE"]),
        ("/v1/_test/raise/<kind>", "raise", raise_domain, ["GET"]),
        ("/v1/_test/crash", "crash", crash, ["GET"]),
    ]
    for rule, name, view, methods in routes:
        app.add_url_rule(rule, endpoint=f"api._test_{name}", view_func=view, methods=methods)


@pytest.fixture
def api(app: Flask) -> FlaskClient:
    add_test_routes(app)
    return app.test_client()


@pytest.fixture
def make_api(make_app: Callable[..., Flask]) -> Callable[..., Flask]:
    """Builds an app with config overrides and the test routes (no tables needed)."""

    def make(**overrides: Any) -> Flask:
        app = make_app(**overrides)
        add_test_routes(app)
        return app

    return make


# --- helpers ------------------------------------------------------------------------------


def widget(**attributes: Any) -> dict[str, Any]:
    return {"data": {"type": "Widget", "attributes": {"name": "gizmo", **attributes}}}


def post(client: FlaskClient, body: Any, content_type: str | None = MEDIA_TYPE, **kw: Any) -> Any:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    if content_type is not None:
        kw["content_type"] = content_type
    return client.post(kw.pop("path", WIDGETS), data=data, **kw)


def body_of(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(response.get_data(as_text=True))
    return body


def errors_of(response: Any, status: int) -> list[dict[str, Any]]:
    """Assert a JSON:API error document with `status`; return its errors."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, text
    assert response.headers["Content-Type"] == MEDIA_TYPE
    assert "Traceback" not in text and 'File "' not in text
    errors: list[dict[str, Any]] = json.loads(text)["errors"]
    assert errors
    for error in errors:
        assert isinstance(error["status"], str)
        assert set(error) <= {"status", "code", "title", "detail", "source"}
    return errors


def one_error(response: Any, status: int, code: str, pointer: str | None = None) -> dict[str, Any]:
    errors = errors_of(response, status)
    assert len(errors) == 1, errors
    error = errors[0]
    assert (error["status"], error["code"]) == (str(status), code)
    if pointer is None:
        assert "source" not in error
    else:
        assert error["source"] == {"pointer": pointer}
    return error


# --- a good request ------------------------------------------------------------------------


def test_valid_create_returns_camelcase_resource(api: FlaskClient) -> None:
    """A well-formed create answers 201 with the JSON:API media type and camelCase names."""
    response = post(api, widget(enabled=True, count=3, settings={"a": [1]}, nickname=None))
    assert response.status_code == 201
    assert response.headers["Content-Type"] == MEDIA_TYPE
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json == {
        "data": {
            "type": "Widget",
            "id": "w1",
            "attributes": {
                "displayName": "gizmo",
                "nickName": None,
                "isEnabled": True,
                "count": 3,
                "settings": {"a": [1]},
            },
        }
    }


@pytest.mark.parametrize(
    "content_type",
    [
        MEDIA_TYPE,
        f'{MEDIA_TYPE}; profile="https://example.com/profiles/x"',
        "APPLICATION/VND.API+JSON",
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=UTF-8",
    ],
)
def test_accepted_content_types(api: FlaskClient, content_type: str) -> None:
    """JSON:API (with profile only) and plain UTF-8 application/json bodies are accepted."""
    assert post(api, widget(), content_type=content_type).status_code == 201


def test_list_document_with_meta_links_and_dates(api: FlaskClient) -> None:
    """Collections render as a list with meta and links; datetimes/UUIDs as ISO strings."""
    response = api.get(WIDGETS)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == MEDIA_TYPE
    assert response.json == {
        "data": [
            {
                "type": "Widget",
                "id": "w1",
                "attributes": {
                    "createdAt": "2026-01-02T03:04:05+00:00",
                    "ownerId": "00000000-0000-0000-0000-000000000001",
                },
            }
        ],
        "meta": {"total": 1},
        "links": {"self": WIDGETS},
    }


def test_no_content_has_no_body_or_type(api: FlaskClient) -> None:
    """no_content() answers 204 with an empty body and no Content-Type."""
    response = api.delete(f"{WIDGETS}/w1")
    assert response.status_code == 204
    assert response.data == b""
    assert "Content-Type" not in response.headers


# --- malformed bodies ---------------------------------------------------------------------

MALFORMED: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("whitespace", b"  \n"),
    ("open brace", b"{"),
    ("close brace", b"}"),
    ("trailing comma", b'{"data": {"type": "Widget"},}'),
    ("single quotes", b"{'data': 1}"),
    ("comment", b'{"data": 1 /* hi */}'),
    ("unquoted key", b"{data: 1}"),
    ("NaN", b'{"data": NaN}'),
    ("Infinity", b'{"data": Infinity}'),
    ("-Infinity", b'{"data": -Infinity}'),
    ("huge float", b'{"data": 1e400}'),
    ("duplicate keys", b'{"data": {"type": "Widget", "type": "Widget"}}'),
    (
        "duplicate attribute",
        b'{"data": {"type": "Widget", "attributes": {"name": "a", "name": "b"}}}',
    ),
    ("5000-digit int", b'{"data": ' + b"9" * 5000 + b"}"),
    ("40-digit int", b'{"data": ' + b"9" * 40 + b"}"),
    ("invalid utf-8", b'{"data": "\xc3\x28"}'),
    ("overlong utf-8", b'{"data": "\xc0\xaf"}'),
    ("utf-8 bom", b'\xef\xbb\xbf{"data": {}}'),
    ("utf-16", json.dumps(widget()).encode("utf-16")),
    ("lone surrogate", b'{"data": {"type": "Widget", "attributes": {"name": "\\ud800"}}}'),
    ("deep arrays", b"[" * 60_000),
    ("deep objects", b'{"a":' * 10_000),
    ("33 levels", b"[" * 33 + b"]" * 33),
]


@pytest.mark.parametrize("body", [b for _, b in MALFORMED], ids=[n for n, _ in MALFORMED])
def test_malformed_json_is_400(api: FlaskClient, body: bytes) -> None:
    """Every malformed or ambiguous JSON body answers 400 malformed_json, never a 500."""
    errors = errors_of(post(api, body), 400)
    assert [e["code"] for e in errors] == ["malformed_json"]


def test_100k_deep_nesting_is_400_not_recursion_error(make_api: Callable[..., Flask]) -> None:
    """A 100 000-deep `[[[...` (under a raised cap) is refused with 400, not RecursionError."""
    client = make_api(MAX_CONTENT_LENGTH=1_000_000).test_client()
    one_error(post(client, b"[" * 100_000), 400, "malformed_json")
    one_error(post(client, b'{"a":[' * 50_000), 400, "malformed_json")


def test_duplicate_detail_names_the_member(api: FlaskClient) -> None:
    """The duplicate-key error says which member was repeated, so clients can fix it."""
    body = b'{"data": {"type": "Widget", "attributes": {"name": "a", "name": "b"}}}'
    error = one_error(post(api, body), 400, "malformed_json")
    assert '"name"' in error["detail"]


def test_syntax_error_detail_gives_position_not_input(api: FlaskClient) -> None:
    """A syntax error reports line and column and does not echo the body back."""
    error = one_error(post(api, b'{"data": secret-token-123}'), 400, "malformed_json")
    assert "line 1 column 10" in error["detail"]
    assert "secret" not in error["detail"]


@pytest.mark.parametrize("body", [b"[]", b'"Widget"', b"1", b"null", b"true"])
def test_top_level_non_object_is_400(api: FlaskClient, body: bytes) -> None:
    """A document that is not a JSON object is 400 invalid_document at the root pointer."""
    one_error(post(api, body), 400, "invalid_document", "")


def test_nul_character_is_422_with_pointer(api: FlaskClient) -> None:
    """A NUL in any string is refused with its pointer (databases cannot store it)."""
    body = widget(settings={"tags": ["ok", "a\u0000b"]})
    one_error(post(api, body), 422, "invalid_character", "/data/attributes/settings/tags/1")


# --- document structure -------------------------------------------------------------------

STRUCTURE: list[tuple[str, Any, int, str, str]] = [
    ("no data", {"meta": {}}, 400, "invalid_document", "/data"),
    ("data null", {"data": None}, 400, "invalid_document", "/data"),
    ("data array", {"data": [widget()["data"]]}, 400, "invalid_document", "/data"),
    ("data string", {"data": "Widget"}, 400, "invalid_document", "/data"),
    ("no type", {"data": {"attributes": {"name": "x"}}}, 400, "invalid_document", "/data/type"),
    ("type number", {"data": {"type": 1}}, 400, "invalid_document", "/data/type"),
    ("type empty", {"data": {"type": ""}}, 400, "invalid_document", "/data/type"),
    ("wrong type", {"data": {"type": "User"}}, 409, "type_mismatch", "/data/type"),
    ("type case", {"data": {"type": "widget"}}, 409, "type_mismatch", "/data/type"),
    (
        "id on create",
        {"data": {"type": "Widget", "id": "x"}},
        403,
        "client_generated_id",
        "/data/id",
    ),
    (
        "attributes list",
        {"data": {"type": "Widget", "attributes": []}},
        400,
        "invalid_document",
        "/data/attributes",
    ),
    (
        "attributes str",
        {"data": {"type": "Widget", "attributes": "x"}},
        400,
        "invalid_document",
        "/data/attributes",
    ),
    (
        "relationships list",
        {"data": {"type": "Widget", "relationships": []}},
        400,
        "invalid_document",
        "/data/relationships",
    ),
    ("included", {**widget(), "included": []}, 400, "invalid_document", "/included"),
    ("unknown top member", {**widget(), "isAdmin": True}, 400, "invalid_document", "/isAdmin"),
    ("meta not object", {**widget(), "meta": 1}, 400, "invalid_document", "/meta"),
    (
        "lid member",
        {"data": {**widget()["data"], "lid": "1"}},
        400,
        "invalid_document",
        "/data/lid",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "code", "pointer"),
    [s[1:] for s in STRUCTURE],
    ids=[s[0] for s in STRUCTURE],
)
def test_document_structure_errors(
    api: FlaskClient, body: Any, status: int, code: str, pointer: str
) -> None:
    """Structural mistakes get the JSON:API status and a pointer to the offending member."""
    one_error(post(api, body), status, code, pointer)


def test_unknown_attributes_are_refused_not_assigned(api: FlaskClient) -> None:
    """Privileged or unknown attributes each get 422 unknown_attribute (no mass assignment)."""
    body = widget(isAdmin=True, emailVerified=True, mfaEnabled=True, createdAt="2020", id="1")
    errors = errors_of(post(api, body), 422)
    assert {e["code"] for e in errors} == {"unknown_attribute"}
    assert sorted(e["source"]["pointer"] for e in errors) == [
        "/data/attributes/createdAt",
        "/data/attributes/emailVerified",
        "/data/attributes/id",
        "/data/attributes/isAdmin",
        "/data/attributes/mfaEnabled",
    ]


def test_snake_case_attribute_is_unknown(api: FlaskClient) -> None:
    """Attribute names are matched exactly as camelCase: `is_admin` is not quietly mapped."""
    one_error(
        post(api, widget(is_admin=True)), 422, "unknown_attribute", "/data/attributes/is_admin"
    )


def test_pointer_escapes_slash_and_tilde(api: FlaskClient) -> None:
    """Attribute names with / and ~ are escaped per RFC 6901 in the pointer."""
    body = widget(**{"a/b~c": 1})
    one_error(post(api, body), 422, "unknown_attribute", "/data/attributes/a~1b~0c")


def test_relationships_are_refused(api: FlaskClient) -> None:
    """Relationships the endpoint does not take are 422 with their pointer."""
    body = {"data": {**widget()["data"], "relationships": {"owner": {"data": None}}}}
    one_error(post(api, body), 422, "unknown_relationship", "/data/relationships/owner")


# --- declared to-one relationships ---------------------------------------------------------

OWNER_ID = "e407d0dc-58d4-48ff-a70f-c6e022e028f1"


def badge(owner: Any = None, **relationships: Any) -> dict[str, Any]:
    rels = {"owner": {"data": {"type": "User", "id": OWNER_ID}}} if owner is None else owner
    return {"data": {"type": "Badge", "relationships": {**rels, **relationships}}}


def test_declared_relationship_gives_the_linked_id(api: FlaskClient) -> None:
    """A declared to-one linkage comes back as its id; an optional null one as None."""
    body = badge(issuer={"data": None})
    body["data"]["attributes"] = {"label": "gold"}
    response = post(api, body, path=BADGES)
    assert response.status_code == 201, response.get_data(as_text=True)
    data = response.json["data"]
    assert data["attributes"] == {"label": "gold"}
    assert data["meta"] == {"owner": OWNER_ID, "issuer": None}


def test_relationship_links_and_meta_members_are_accepted(api: FlaskClient) -> None:
    """`links` and `meta` beside `data` (and `meta` in the identifier) are allowed."""
    owner = {"data": {"type": "User", "id": OWNER_ID, "meta": {}}, "links": {}, "meta": {}}
    response = post(api, badge({"owner": owner}), path=BADGES)
    assert response.status_code == 201
    assert response.json["data"]["meta"] == {"owner": OWNER_ID}


OWNER = "/data/relationships/owner"
RELATIONSHIP_ERRORS: list[tuple[str, Any, int, str, str]] = [
    ("not an object", {"owner": []}, 400, "invalid_document", OWNER),
    ("no data", {"owner": {"links": {}}}, 400, "invalid_document", f"{OWNER}/data"),
    ("data array", {"owner": {"data": []}}, 400, "invalid_document", f"{OWNER}/data"),
    ("data string", {"owner": {"data": OWNER_ID}}, 400, "invalid_document", f"{OWNER}/data"),
    (
        "unknown member",
        {"owner": {"data": {"type": "User", "id": "x"}, "self": "x"}},
        400,
        "invalid_document",
        f"{OWNER}/self",
    ),
    (
        "lid",
        {"owner": {"data": {"type": "User", "lid": "x"}}},
        400,
        "invalid_document",
        f"{OWNER}/data/lid",
    ),
    ("no type", {"owner": {"data": {"id": "x"}}}, 400, "invalid_document", f"{OWNER}/data/type"),
    (
        "wrong type",
        {"owner": {"data": {"type": "Account", "id": "x"}}},
        409,
        "type_mismatch",
        f"{OWNER}/data/type",
    ),
    (
        "no id",
        {"owner": {"data": {"type": "User"}}},
        400,
        "invalid_document",
        f"{OWNER}/data/id",
    ),
    (
        "id number",
        {"owner": {"data": {"type": "User", "id": 7}}},
        400,
        "invalid_document",
        f"{OWNER}/data/id",
    ),
    (
        "id empty",
        {"owner": {"data": {"type": "User", "id": ""}}},
        400,
        "invalid_document",
        f"{OWNER}/data/id",
    ),
    ("required null", {"owner": {"data": None}}, 422, "required", OWNER),
]


@pytest.mark.parametrize(
    ("relationships", "status", "code", "pointer"),
    [e[1:] for e in RELATIONSHIP_ERRORS],
    ids=[e[0] for e in RELATIONSHIP_ERRORS],
)
def test_relationship_shape_errors(
    api: FlaskClient, relationships: Any, status: int, code: str, pointer: str
) -> None:
    """A malformed linkage is 400, a wrong type 409, a null required one 422, each pointed at."""
    one_error(post(api, badge(relationships), path=BADGES), status, code, pointer)


def test_missing_required_relationship_is_422(api: FlaskClient) -> None:
    """Leaving out a required relationship is 422 `required` at its pointer."""
    response = post(api, {"data": {"type": "Badge"}}, path=BADGES)
    one_error(response, 422, "required", OWNER)


def test_undeclared_relationship_stays_422(api: FlaskClient) -> None:
    """A relationship the endpoint does not declare is 422 unknown_relationship, together
    with an unknown attribute."""
    body = badge(editor={"data": {"type": "User", "id": OWNER_ID}})
    body["data"]["attributes"] = {"colour": "red"}
    errors = errors_of(post(api, body, path=BADGES), 422)
    assert [(e["code"], e["source"]["pointer"]) for e in errors] == [
        ("unknown_attribute", "/data/attributes/colour"),
        ("unknown_relationship", "/data/relationships/editor"),
    ]


def test_parse_document_still_refuses_every_relationship(api: FlaskClient) -> None:
    """parse_document callers (no declared relationships) refuse even a well-formed one."""
    body = {"data": {**widget()["data"], "relationships": badge()["data"]["relationships"]}}
    one_error(post(api, body), 422, "unknown_relationship", "/data/relationships/owner")


def test_missing_required_attribute_is_422(api: FlaskClient) -> None:
    """A missing required attribute is 422 `required` pointing at it."""
    body = {"data": {"type": "Widget", "attributes": {"enabled": True}}}
    one_error(post(api, body), 422, "required", "/data/attributes/name")


def test_several_errors_in_one_document(api: FlaskClient) -> None:
    """Unknown and missing attributes are reported together in one 422 document."""
    body = {"data": {"type": "Widget", "attributes": {"colour": "red"}}}
    errors = errors_of(post(api, body), 422)
    assert [(e["code"], e["source"]["pointer"]) for e in errors] == [
        ("unknown_attribute", "/data/attributes/colour"),
        ("required", "/data/attributes/name"),
    ]


def test_patch_with_matching_id_succeeds(api: FlaskClient) -> None:
    """PATCH with data.id equal to the URL id and allowed attributes is accepted."""
    body = {"data": {"type": "Widget", "id": "w7", "attributes": {"enabled": False}}}
    response = api.patch(f"{WIDGETS}/w7", data=json.dumps(body), content_type=MEDIA_TYPE)
    assert response.status_code == 200
    assert body_of(response)["data"] == {
        "type": "Widget",
        "id": "w7",
        "attributes": {"enabled": False},
    }


@pytest.mark.parametrize(
    ("data_id", "status", "code"),
    [("w8", 409, "id_mismatch"), (None, 400, "invalid_document"), (7, 400, "invalid_document")],
)
def test_patch_id_rules(api: FlaskClient, data_id: Any, status: int, code: str) -> None:
    """PATCH needs data.id as a string equal to the URL id: mismatch 409, missing/non-string 400."""
    data: dict[str, Any] = {"type": "Widget", "attributes": {}}
    if data_id is not None:
        data["id"] = data_id
    response = api.patch(f"{WIDGETS}/7", data=json.dumps({"data": data}), content_type=MEDIA_TYPE)
    one_error(response, status, code, "/data/id")


# --- typed attributes ---------------------------------------------------------------------

TYPES: list[tuple[str, Any, str]] = [
    ("name", True, "invalid_type"),
    ("name", 12, "invalid_type"),
    ("name", None, "invalid_type"),
    ("name", ["x"], "invalid_type"),
    ("name", {"x": 1}, "invalid_type"),
    ("name", "", "too_short"),
    ("name", "x" * 21, "too_long"),
    ("nickname", 1.5, "invalid_type"),
    ("enabled", "true", "invalid_type"),
    ("enabled", 1, "invalid_type"),
    ("enabled", None, "invalid_type"),
    ("count", "1", "invalid_type"),
    ("count", 1.0, "invalid_type"),
    ("count", True, "invalid_type"),
    ("count", 101, "out_of_range"),
    ("count", -1, "out_of_range"),
    ("settings", [], "invalid_type"),
    ("settings", "{}", "invalid_type"),
    ("settings", None, "invalid_type"),
]


@pytest.mark.parametrize(("name", "value", "code"), TYPES)
def test_wrong_attribute_types_are_422(api: FlaskClient, name: str, value: Any, code: str) -> None:
    """Strict types: booleans/numbers are not strings, "1" is not 1, null only where allowed."""
    one_error(post(api, widget(**{name: value})), 422, code, f"/data/attributes/{name}")


# --- content negotiation ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        f"{MEDIA_TYPE}; charset=utf-8",
        f"{MEDIA_TYPE}; foo=bar",
        f'{MEDIA_TYPE}; ext="https://jsonapi.org/ext/atomic"',
        "application/json; charset=utf-16",
        "application/json; foo=bar",
        "application/jsonx",
        "",
    ],
)
def test_wrong_content_type_is_415(api: FlaskClient, content_type: str) -> None:
    """Bodies not declared as JSON:API or UTF-8 JSON are refused with 415 before the view."""
    response = post(api, widget(), content_type=content_type)
    one_error(response, 415, "unsupported_media_type")
    assert api.application.extensions.get("test_calls") is None


def test_missing_content_type_with_body_is_415(api: FlaskClient) -> None:
    """A body with no Content-Type at all is 415."""
    response = post(api, widget(), content_type=None)
    assert "CONTENT_TYPE" not in response.request.environ
    one_error(response, 415, "unsupported_media_type")


def test_body_on_other_methods_is_checked_too(api: FlaskClient) -> None:
    """Negotiation covers any request with a body, not only those that parse a document."""
    response = api.delete(f"{WIDGETS}/w1", data="x", content_type="text/plain")
    one_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "accept",
    [
        f"{MEDIA_TYPE}; foo=bar",
        f"{MEDIA_TYPE}; charset=utf-8",
        f"{MEDIA_TYPE}; foo=bar, {MEDIA_TYPE}; charset=utf-8",
        f'{MEDIA_TYPE}; ext="https://example.com/ext"',
        f"{MEDIA_TYPE}; q=0",
        f"{MEDIA_TYPE}; foo=bar, application/json",
    ],
)
def test_unusable_accept_is_406(api: FlaskClient, accept: str) -> None:
    """Accept naming JSON:API only with parameters we cannot honour is 406."""
    one_error(api.get(WIDGETS, headers={"Accept": accept}), 406, "not_acceptable")
    assert api.application.extensions.get("test_calls") is None


@pytest.mark.parametrize(
    "accept",
    [
        MEDIA_TYPE,
        f"{MEDIA_TYPE}; foo=bar, {MEDIA_TYPE}",
        f'{MEDIA_TYPE}; profile="https://example.com/p"',
        f"{MEDIA_TYPE}; q=0.5",
        f'text/html; x="a,b", {MEDIA_TYPE}',
        "application/json",
        "*/*",
        "text/html",
    ],
)
def test_usable_accept_is_served(api: FlaskClient, accept: str) -> None:
    """Accept headers with one plain JSON:API instance, or none at all, are served."""
    assert api.get(WIDGETS, headers={"Accept": accept}).status_code == 200


# --- size limits --------------------------------------------------------------------------


def test_oversize_body_is_413_before_the_view(api: FlaskClient) -> None:
    """A body over MAX_CONTENT_LENGTH is 413 and the view never runs."""
    response = post(api, b"x" * (CAP + 1))
    error = one_error(response, 413, "payload_too_large")
    assert str(CAP) in error["detail"]
    response = api.get(WIDGETS, data=b" " * (CAP + 1), content_type=MEDIA_TYPE)
    one_error(response, 413, "payload_too_large")
    assert api.application.extensions.get("test_calls") is None


def test_body_at_cap_is_parsed(api: FlaskClient) -> None:
    """A body of exactly MAX_CONTENT_LENGTH bytes is parsed normally."""
    body = json.dumps(widget()).encode()
    body += b" " * (CAP - len(body))
    assert post(api, body).status_code == 201


def _chunked(client: FlaskClient, body: bytes) -> Any:
    # What a real server (gunicorn, Werkzeug) hands over for Transfer-Encoding: chunked.
    return client.post(
        WIDGETS,
        input_stream=io.BytesIO(body),
        headers={"Transfer-Encoding": "chunked", "Content-Type": MEDIA_TYPE},
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_chunked_body_over_cap_is_413(api: FlaskClient) -> None:
    """A chunked body with no Content-Length is cut off at the cap with 413."""
    one_error(_chunked(api, b"x" * (CAP + 1)), 413, "payload_too_large")
    assert api.application.extensions.get("test_calls") is None


def test_chunked_body_under_cap_is_read(api: FlaskClient) -> None:
    """A chunked body under the cap is read and parsed like any other."""
    assert _chunked(api, json.dumps(widget()).encode()).status_code == 201


def test_chunked_413_over_a_real_socket(app: Flask) -> None:
    """Over a real HTTP connection, an oversize chunked upload gets a JSON:API 413."""
    add_test_routes(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        chunk = b"x" * 8192
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(10)) + b"0\r\n\r\n"
        head = (
            f"POST {WIDGETS} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {MEDIA_TYPE}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(head + chunks)
            reply = sock.makefile("rb")
            status_line = reply.readline()
            headers = {}
            while (line := reply.readline().strip()) != b"":
                name, _, value = line.decode().partition(":")
                headers[name.lower()] = value.strip()
            body = reply.read(int(headers["content-length"]))
            reply.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert status_line.split()[1] == b"413"
    assert headers["content-type"] == MEDIA_TYPE
    assert json.loads(body)["errors"][0]["code"] == "payload_too_large"


# --- routing errors and crashes -----------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/nope", "/v1", "/v1/", "/v1/_test/widgets/a/b", "/v1/%0d%0a"])
def test_unknown_v1_route_is_json_404(api: FlaskClient, path: str) -> None:
    """Unknown URLs under /v1 answer a JSON:API 404, even with a body of the wrong type."""
    one_error(api.get(path), 404, "not_found")
    one_error(api.post(path, data="x", content_type="text/plain"), 404, "not_found")


def test_test_routes_do_not_exist_in_the_app(client: FlaskClient) -> None:
    """The /v1/_test routes live only in this test module: a plain app answers 404."""
    one_error(client.get(WIDGETS), 404, "not_found")


@pytest.mark.parametrize("method", ["PUT", "GET", "TRACE"])
def test_wrong_method_is_json_405_with_allow(api: FlaskClient, method: str) -> None:
    """A method the URL does not take answers JSON:API 405 with an Allow header."""
    response = api.open(f"{WIDGETS}/w1", method=method)
    one_error(response, 405, "method_not_allowed")
    assert {m.strip() for m in response.headers["Allow"].split(",")} >= {"PATCH", "DELETE"}


def test_outside_v1_errors_are_left_alone(api: FlaskClient) -> None:
    """Outside /v1 the JSON:API renderer stays out of the way (the pages layer owns it)."""
    response = api.get("/nope")
    assert response.status_code == 404
    assert response.mimetype == "text/html"


def test_crash_is_json_500_without_internals(
    make_api: Callable[..., Flask], log_stream: io.StringIO
) -> None:
    """An unexpected exception answers a bare JSON:API 500 with the request id; the log has it."""
    client = make_api(PROPAGATE_EXCEPTIONS=False).test_client()
    response = client.get("/v1/_test/crash", headers={"X-Request-Id": "crash-req-0001"})
    error = one_error(response, 500, "internal_error")
    assert body_of(response)["meta"] == {"requestId": "crash-req-0001"}
    text = response.get_data(as_text=True)
    assert "hunter2" not in text and "RuntimeError" not in text
    assert error["detail"] and "requestId" in error["detail"]
    lines = log_stream.getvalue().splitlines()
    crash_lines = [line for line in lines if "RuntimeError" in line]
    assert len(crash_lines) == 1  # the traceback stays on one escaped line
    assert "request_id=crash-req-0001" in crash_lines[0]


def test_no_html_anywhere_under_v1(make_api: Callable[..., Flask]) -> None:
    """No answer under /v1 is HTML: errors, redirects, OPTIONS and crashes alike."""
    client = make_api(PROPAGATE_EXCEPTIONS=False).test_client()
    responses = [
        client.get("/v1/nope"),
        client.put(WIDGETS),
        client.get("/v1/_test/crash"),
        client.options(WIDGETS),
        client.get("/v1//_test/widgets"),  # Werkzeug's slash-merging redirect
        post(client, b"{"),
        post(client, widget(), content_type="text/plain"),
        client.get(WIDGETS, headers={"Accept": f"{MEDIA_TYPE}; a=b"}),
        post(client, b"x" * (CAP + 1)),
    ]
    for response in responses:
        text = response.get_data(as_text=True).lower()
        assert response.mimetype != "text/html", (response.status, text)
        assert "<html" not in text and "<!doctype" not in text and "<p>" not in text
        assert "traceback" not in text
    assert responses[4].status_code in (301, 308)


def test_csrf_is_exempt_under_v1_only(make_api: Callable[..., Flask]) -> None:
    """With CSRF on, /v1 accepts a token-less JSON write while a non-API form POST is refused."""
    app = make_api(WTF_CSRF_ENABLED=True)
    app.add_url_rule("/_test/form", endpoint="_test_form", view_func=lambda: "ok", methods=["POST"])
    client = app.test_client()
    assert post(client, widget()).status_code == 201
    assert client.post("/_test/form", data={"a": "b"}).status_code == 400


# --- domain errors ------------------------------------------------------------------------

DOMAIN_TABLE: list[tuple[str, int, str, str | None]] = [
    ("validation", 422, "validation_failed", "/data/attributes/newPassword"),
    ("custom-code", 422, "weak_password", "/data/attributes/password"),
    ("not-found", 404, "not_found", None),
    ("conflict", 409, "conflict", "/data/attributes/username"),
    ("forbidden", 403, "forbidden", None),
    ("unauthenticated", 401, "unauthenticated", None),
    ("throttled", 429, "throttled", None),
    ("unavailable", 503, "service_unavailable", None),
    ("store-unavailable", 503, "store_unavailable", None),
    ("other", 400, "domain_error", None),
]


@pytest.mark.parametrize(("kind", "status", "code", "pointer"), DOMAIN_TABLE)
def test_domain_error_table(
    api: FlaskClient, kind: str, status: int, code: str, pointer: str | None
) -> None:
    """Each domain error maps to its status and code; `field` becomes the attribute pointer."""
    error = one_error(api.get(f"/v1/_test/raise/{kind}"), status, code, pointer)
    assert error["title"] == type(DOMAIN_ERRORS[kind]()).title


def test_unauthenticated_sends_bearer_challenge(api: FlaskClient) -> None:
    """401 carries a Bearer challenge (RFC 6750 3), without error= when no token was refused."""
    response = api.get("/v1/_test/raise/unauthenticated")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="authserver"'


def test_throttled_sends_retry_after(api: FlaskClient) -> None:
    """429 carries Retry-After with the error's seconds."""
    assert api.get("/v1/_test/raise/throttled").headers["Retry-After"] == "42"


def test_domain_error_detail_is_passed_on(api: FlaskClient) -> None:
    """A 4xx domain error's detail reaches the client as written by the use case."""
    error = one_error(
        api.get("/v1/_test/raise/conflict"), 409, "conflict", "/data/attributes/username"
    )
    assert error["detail"] == "Username taken."


@pytest.mark.parametrize("kind", ["unavailable", "store-unavailable"])
def test_unavailable_hides_infrastructure(api: FlaskClient, kind: str) -> None:
    """503 details do not name our hosts or services, and meta carries the request id."""
    response = api.get(f"/v1/_test/raise/{kind}", headers={"X-Request-Id": "req-unavail-01"})
    text = response.get_data(as_text=True)
    errors_of(response, 503)
    assert "Redis" not in text and "db.internal" not in text
    assert body_of(response)["meta"] == {"requestId": "req-unavail-01"}


# --- builders and helpers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("snake", "camel"),
    [("mfa_enabled", "mfaEnabled"), ("id", "id"), ("id_token_lifetime", "idTokenLifetime")],
)
def test_name_conversion_round_trips(snake: str, camel: str) -> None:
    """to_camel and to_snake convert attribute names both ways."""
    assert names.to_camel(snake) == camel
    assert names.to_snake(camel) == snake
    assert names.to_camel(camel) == camel


def test_to_snake_handles_acronyms() -> None:
    """Runs of capitals stay one word: userID -> user_id, HTTPCode -> http_code."""
    assert names.to_snake("userID") == "user_id"
    assert names.to_snake("HTTPCode") == "http_code"


def test_error_response_shape(app: Flask) -> None:
    """error_response puts status as a string and adds `source` only when given a pointer."""
    with app.test_request_context("/v1/x"):
        bare = jsonapi.error_response(418, "teapot", "Teapot")
        pointed = jsonapi.error_response(422, "x", "X", "d", pointer="", headers={"X-A": "1"})
    assert bare.status_code == 418 and bare.headers["Content-Type"] == MEDIA_TYPE
    assert bare.json == {"errors": [{"status": "418", "code": "teapot", "title": "Teapot"}]}
    assert pointed.json == {
        "errors": [
            {"status": "422", "code": "x", "title": "X", "detail": "d", "source": {"pointer": ""}}
        ]
    }
    assert pointed.headers["X-A"] == "1"


@pytest.mark.parametrize(
    ("statuses", "overall"), [([422, 422], 422), ([422, 409], 400), ([422, 503], 500)]
)
def test_several_errors_overall_status(app: Flask, statuses: list[int], overall: int) -> None:
    """A mixed error document takes the shared status, else 400 (all 4xx) or 500."""
    errors = [jsonapi.ErrorObject(s, "c", "t") for s in statuses]
    with app.test_request_context("/v1/x"):
        response = jsonapi.errors_response(errors)
    assert response.status_code == overall
    assert [e["status"] for e in body_of(response)["errors"]] == [str(s) for s in statuses]


def test_status_for_unknown_subclass_uses_base() -> None:
    """A new DomainError subclass inherits its base's status; unrelated ones get 400."""

    class WeakPassword(ValidationFailed):
        code = "weak_password"

    class Odd(DomainError):
        code = "odd"

    assert jsonapi.status_for(WeakPassword()) == 422
    assert jsonapi.status_for(StoreUnavailable()) == 503
    assert jsonapi.status_for(Odd()) == 400
