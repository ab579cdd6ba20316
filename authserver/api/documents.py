"""Request documents of /v1: the body read strictly as JSON, one resource object of the
expected type with allowed attributes and declared to-one relationships, and typed
attribute checks. Malformed or unexpected input becomes a JSON:API error (`jsonapi.fail`).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Any, NoReturn

from . import strictjson
from .jsonapi import (
    ApiError,
    ErrorObject,
    attribute_pointer,
    check_content_type,
    escape_pointer,
    fail,
    read_body,
    relationship_pointer,
)

DOCUMENT_MEMBERS = frozenset({"data", "meta", "jsonapi"})
RESOURCE_MEMBERS = frozenset({"type", "id", "attributes", "relationships", "meta"})

_JSON_ERRORS = {  # strictjson code -> (status, title)
    strictjson.MALFORMED: (400, "Malformed JSON"),
    strictjson.INVALID_CHARACTER: (422, "Invalid character"),  # NUL: well-formed, unstorable
}


def load_json(raw: bytes) -> Any:
    """Parse a request body strictly (see strictjson); 400/422 for what it refuses."""
    try:
        return strictjson.loads(raw)
    except strictjson.StrictJSONError as exc:
        status, title = _JSON_ERRORS[exc.code]
        fail(status, exc.code, title, exc.detail, exc.pointer)


def _invalid_document(detail: str, pointer: str) -> NoReturn:
    fail(400, "invalid_document", "Invalid document", detail, pointer)


@dataclass(frozen=True)
class ParsedResource:
    """A request's resource object: its attributes (camelCase, as sent) and the ids of its
    to-one relationships (name -> id, or None for an explicit `{"data": null}`)."""

    attributes: dict[str, Any]
    relationships: dict[str, str | None]
    # The document's top-level `meta` and the extra top-level members the caller allowed.
    meta: dict[str, Any] = field(default_factory=dict)
    members: dict[str, Any] = field(default_factory=dict)
    captcha_token: str | None = None  # bodies.Body(captcha=True) only


def parse_document(
    *,
    type_: str,
    require_id: str | None = None,
    allowed: Set[str],
    required: Set[str] = frozenset(),
) -> dict[str, Any]:
    """Parse the request body as one resource object of `type_` and return its attributes.

    `require_id` is the id from the URL on update (PATCH); on create it is None and a
    client-generated id is refused. Attribute names stay camelCase as sent; any name
    outside `allowed` is refused, so nothing is mass-assigned. Every relationship is
    refused (422); `parse_resource` takes declared ones.
    """
    return parse_resource(
        type_=type_, require_id=require_id, allowed=allowed, required=required
    ).attributes


def parse_resource(
    *,
    type_: str,
    require_id: str | None = None,
    id_optional: bool = False,
    allowed: Set[str] = frozenset(),
    required: Set[str] = frozenset(),
    relationships: Mapping[str, str] | None = None,
    required_relationships: Set[str] = frozenset(),
    extra_members: Set[str] = frozenset(),
) -> ParsedResource:
    """`parse_document`, plus the declared to-one `relationships` (name -> resource type).

    Each declared relationship must be `{"data": {"type": <its type>, "id": "..."}}` or
    `{"data": null}`: a malformed one is 400, a linkage of another type 409, a name not
    declared 422 `unknown_relationship`, a missing `required_relationships` 422 `required`.
    """
    declared = dict(relationships or {})
    check_content_type()  # also when the body is empty: a write needs a declared JSON body
    doc = load_json(read_body())
    if not isinstance(doc, dict):
        _invalid_document("The document must be a JSON object.", "")
    for member in sorted(doc):
        if member not in DOCUMENT_MEMBERS and member not in extra_members:
            _invalid_document("Unsupported top-level member.", f"/{escape_pointer(member)}")
    for member in ("meta", "jsonapi"):
        if member in doc and not isinstance(doc[member], dict):
            _invalid_document(f"{member} must be an object.", f"/{member}")
    if "data" not in doc:
        _invalid_document("The document must have primary data.", "/data")
    data = doc["data"]
    if not isinstance(data, dict):
        _invalid_document("data must be a single resource object.", "/data")
    for member in sorted(data):
        if member not in RESOURCE_MEMBERS:
            _invalid_document("Unsupported resource member.", f"/data/{escape_pointer(member)}")
    kind = data.get("type")
    if not isinstance(kind, str) or not kind:
        _invalid_document("data.type must be a non-empty string.", "/data/type")
    if kind != type_:
        fail(409, "type_mismatch", "Wrong resource type", f"Expected {type_}.", "/data/type")
    _check_id(data, require_id, id_optional)
    attrs = data.get("attributes", {})
    if not isinstance(attrs, dict):
        _invalid_document("attributes must be an object.", "/data/attributes")
    rels = data.get("relationships", {})
    if not isinstance(rels, dict):
        _invalid_document("relationships must be an object.", "/data/relationships")
    if "meta" in data and not isinstance(data["meta"], dict):
        _invalid_document("meta must be an object.", "/data/meta")
    linked = {
        name: _to_one(name, rels[name], declared[name]) for name in sorted(rels) if name in declared
    }
    errors = [
        ErrorObject(
            422,
            "unknown_attribute",
            "Unknown attribute",
            f"{name} is not an attribute this request may set.",
            attribute_pointer(name),
        )
        for name in attrs
        if name not in allowed
    ]
    errors += [
        ErrorObject(
            422, "unknown_relationship", "Unknown relationship", None, relationship_pointer(name)
        )
        for name in rels
        if name not in declared
    ]
    errors += [
        ErrorObject(422, "required", "Required attribute missing", None, attribute_pointer(name))
        for name in sorted(required)
        if name not in attrs
    ]
    errors += [
        ErrorObject(
            422, "required", "Required relationship missing", None, relationship_pointer(name)
        )
        for name in sorted(required_relationships)
        if linked.get(name) is None
    ]
    if errors:
        raise ApiError(errors)
    extras = {name: doc[name] for name in extra_members if name in doc}
    return ParsedResource(dict(attrs), linked, dict(doc.get("meta") or {}), extras)


IDENTIFIER_MEMBERS = frozenset({"type", "id", "meta"})
RELATIONSHIP_MEMBERS = frozenset({"data", "links", "meta"})


def _to_one(name: str, value: Any, type_: str) -> str | None:
    """The id a to-one relationship object links to (None for `"data": null`)."""
    base = relationship_pointer(name)
    if not isinstance(value, dict):
        _invalid_document("A relationship must be an object.", base)
    for member in sorted(value):
        if member not in RELATIONSHIP_MEMBERS:
            _invalid_document(
                "Unsupported relationship member.", f"{base}/{escape_pointer(member)}"
            )
    if "data" not in value:
        _invalid_document("The relationship must have data.", f"{base}/data")
    data = value["data"]
    if data is None:
        return None
    if not isinstance(data, dict):
        _invalid_document(f"{name} takes one resource identifier or null.", f"{base}/data")
    for member in sorted(data):
        if member not in IDENTIFIER_MEMBERS:
            _invalid_document(
                "Unsupported resource identifier member.", f"{base}/data/{escape_pointer(member)}"
            )
    kind = data.get("type")
    if not isinstance(kind, str) or not kind:
        _invalid_document("type must be a non-empty string.", f"{base}/data/type")
    if kind != type_:
        fail(409, "type_mismatch", "Wrong resource type", f"Expected {type_}.", f"{base}/data/type")
    id_ = data.get("id")
    if not isinstance(id_, str) or not id_:
        _invalid_document("id must be a non-empty string.", f"{base}/data/id")
    return id_


def _check_id(data: Mapping[str, Any], require_id: str | None, optional: bool = False) -> None:
    if require_id is None:
        if "id" in data:
            fail(
                403,
                "client_generated_id",
                "Client-generated ids are not supported",
                "Leave out data.id when creating a resource.",
                "/data/id",
            )
        return
    if optional and "id" not in data:
        return  # the URL alone names the resource (/v1/user)
    given = data.get("id")
    if not isinstance(given, str):
        _invalid_document("data.id must be the resource id as a string.", "/data/id")
    if given != require_id:
        fail(409, "id_mismatch", "Id mismatch", "data.id differs from the URL.", "/data/id")


# --- typed attributes -------------------------------------------------------------------


def _wrong_type(name: str, expected: str) -> NoReturn:
    fail(422, "invalid_type", "Wrong type", f"{name} must be {expected}.", attribute_pointer(name))


def _present(attrs: Mapping[str, Any], name: str, expected: str, nullable: bool) -> bool:
    """True when a non-null value is there to check; 422 for a null that is not allowed."""
    if name not in attrs:
        return False
    if attrs[name] is None:
        if not nullable:
            _wrong_type(name, expected)
        return False
    return True


def expect_str(
    attrs: Mapping[str, Any],
    name: str,
    *,
    max_len: int,
    min_len: int = 0,
    nullable: bool = False,
) -> str | None:
    """The string attribute `name`, or None when absent (or null and `nullable`)."""
    if not _present(attrs, name, "a string", nullable):
        return None
    value = attrs[name]
    if not isinstance(value, str):
        _wrong_type(name, "a string")
    pointer = attribute_pointer(name)
    if len(value) > max_len:
        fail(422, "too_long", "Too long", f"At most {max_len} characters.", pointer)
    if len(value) < min_len:
        fail(422, "too_short", "Too short", f"At least {min_len} characters.", pointer)
    return value


def expect_bool(attrs: Mapping[str, Any], name: str, *, nullable: bool = False) -> bool | None:
    """The boolean attribute `name`, or None when absent (or null and `nullable`)."""
    if not _present(attrs, name, "true or false", nullable):
        return None
    value = attrs[name]
    if not isinstance(value, bool):
        _wrong_type(name, "true or false")
    return value


def expect_int(
    attrs: Mapping[str, Any],
    name: str,
    *,
    min_value: int,
    max_value: int,
    nullable: bool = False,
) -> int | None:
    """The integer attribute `name` within bounds; booleans and 1.0 are not integers."""
    expected = f"an integer from {min_value} to {max_value}"
    if not _present(attrs, name, expected, nullable):
        return None
    value = attrs[name]
    if isinstance(value, bool) or not isinstance(value, int):
        _wrong_type(name, expected)
    if not min_value <= value <= max_value:
        fail(422, "out_of_range", "Out of range", f"Must be {expected}.", attribute_pointer(name))
    return value


def expect_str_list(
    attrs: Mapping[str, Any], name: str, *, max_items: int, max_len: int
) -> list[str] | None:
    """The list-of-strings attribute `name` (at most `max_items` of at most `max_len`
    characters each), or None when absent; null is refused."""
    expected = f"a list of at most {max_items} strings"
    if not _present(attrs, name, expected, False):
        return None
    value = attrs[name]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        _wrong_type(name, expected)
    pointer = attribute_pointer(name)
    if len(value) > max_items:
        fail(422, "too_many", "Too many", f"At most {max_items} items.", pointer)
    if any(len(item) > max_len for item in value):
        fail(422, "too_long", "Too long", f"At most {max_len} characters each.", pointer)
    return value


def expect_object(
    attrs: Mapping[str, Any], name: str, *, nullable: bool = False
) -> dict[str, Any] | None:
    """The object attribute `name`, or None when absent (or null and `nullable`)."""
    if not _present(attrs, name, "an object", nullable):
        return None
    value = attrs[name]
    if not isinstance(value, dict):
        _wrong_type(name, "an object")
    return value
