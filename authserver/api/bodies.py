"""Request bodies of /v1 declared once: each `Body` both reads a request (through
`documents`, with its JSON:API errors) and writes the JSON Schema that /v1/openapi.json
publishes for it, so what the document promises and what the server takes cannot drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from authserver.platform.captcha import TOKEN_MAX as CAPTCHA_TOKEN_MAX

from . import documents, strictjson
from .jsonapi import MEDIA_TYPE, ApiError, ErrorObject, attribute_pointer

Kind = Literal["string", "boolean", "object", "strings", "integer"]

# Free-form JSON (meta, jsonapi, customData). The strict reader also refuses integers of
# more than strictjson.MAX_INT_DIGITS digits anywhere, which no schema of free-form JSON
# can say without recursion; the description says it.
JSON_OBJECT: dict[str, Any] = {
    "type": "object",
    "description": f"Any JSON object (integers of at most {strictjson.MAX_INT_DIGITS} digits)",
}


# Domain text rules as patterns (identity.rules): a name is printable and not blank once
# trimmed; a username is letters, digits and - @ . + _ once trimmed and lower-cased
# (the Kelvin sign lower-cases to k).
NAME_PATTERN = r"^\s*[^\s\x00-\x1f](?:[^\x00-\x1f]*[^\s\x00-\x1f])?\s*$"
USERNAME_PATTERN = r"^\s*[A-Za-z0-9@.+_\u212a-]+\s*$"


@dataclass(frozen=True)
class Attr:
    """One attribute on the wire: its JSON type and the caps the API layer checks.

    `doc` holds what the domain checks, not this layer (description, format, pattern,
    enum, a tighter length): it goes into the schema only, over the wire caps, and only
    rules the domain refuses with a 4xx belong there.
    """

    kind: Kind
    max_len: int | None = None  # of a string, or of each item of a list of strings
    min_len: int = 0
    nullable: bool = False
    doc: Mapping[str, Any] = field(default_factory=dict)
    max_items: int = 0  # of a list of strings
    item_doc: Mapping[str, Any] = field(default_factory=dict)  # schema of each item
    bounds: tuple[int, int] = (0, 0)  # of an integer, both included

    def read(self, attrs: Mapping[str, Any], name: str) -> Any:
        """The checked value of `name` in `attrs` (None when absent, or null and nullable)."""
        if self.kind == "string":
            assert self.max_len is not None, name
            return documents.expect_str(
                attrs, name, max_len=self.max_len, min_len=self.min_len, nullable=self.nullable
            )
        if self.kind == "boolean":
            return documents.expect_bool(attrs, name, nullable=self.nullable)
        if self.kind == "integer":
            low, high = self.bounds
            return documents.expect_int(
                attrs, name, min_value=low, max_value=high, nullable=self.nullable
            )
        if self.kind == "strings":
            assert self.max_len is not None, name
            return documents.expect_str_list(
                attrs, name, max_items=self.max_items, max_len=self.max_len
            )
        return documents.expect_object(attrs, name, nullable=self.nullable)

    def schema(self) -> dict[str, Any]:
        """This attribute's JSON Schema: the type and caps `read` enforces, then `doc`."""
        if self.kind == "object":
            kinds = ["object", "null"] if self.nullable else "object"
            return {**JSON_OBJECT, **self.doc, "type": kinds}
        if self.kind == "strings":
            item = {"type": "string", "maxLength": self.max_len, **self.item_doc}
            return {"type": "array", "maxItems": self.max_items, "items": item, **self.doc}
        out: dict[str, Any] = {"type": [self.kind, "null"] if self.nullable else self.kind}
        if self.kind == "integer":
            out["minimum"], out["maximum"] = self.bounds
        if self.kind == "string":
            out["maxLength"] = self.max_len
            if self.min_len:
                out["minLength"] = self.min_len
        out.update(self.doc)  # a `type` here narrows the wire's: the domain refuses null
        if "enum" in out and "null" in out["type"]:
            out["enum"] = [*out["enum"], None]
        return out


def text(max_len: int, *, min_len: int = 0, nullable: bool = False, **doc: Any) -> Attr:
    """A string attribute of at most `max_len` characters."""
    return Attr("string", max_len, min_len, nullable, doc)


def strings(
    max_items: int, max_len: int, item_doc: Mapping[str, Any] | None = None, **doc: Any
) -> Attr:
    """A list of at most `max_items` strings of at most `max_len` characters each;
    `item_doc` documents each item's domain rules (a format, a pattern)."""
    return Attr("strings", max_len, doc=doc, max_items=max_items, item_doc=item_doc or {})


def flag(**doc: Any) -> Attr:
    """A true/false attribute."""
    return Attr("boolean", doc=doc)


def integer(minimum: int, maximum: int, **doc: Any) -> Attr:
    """A whole number from `minimum` to `maximum` (booleans and 1.0 are not)."""
    return Attr("integer", doc=doc, bounds=(minimum, maximum))


def obj(**doc: Any) -> Attr:
    """A free-form JSON object attribute."""
    return Attr("object", doc=doc)


@dataclass(frozen=True)
class Body:
    """The request document of one operation: one resource of `type_` whose attributes are
    among `attributes`, with `required` ones and, if set, exactly one of `one_of`.

    `update` means the resource's id must be in data.id (PATCH); otherwise data.id is
    refused. `id_optional` (with `update`) lets data.id be left out where the URL alone
    names the resource (`/v1/user`); a given one must still match. `relationships` maps a
    required to-one relationship to its resource type. `captcha`: the document may carry a
    CAPTCHA token, as `meta.captchaToken` or (seed 001) the top-level `recaptcha_token`;
    `read` returns it as `captcha_token`.
    """

    type_: str
    attributes: Mapping[str, Attr] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    one_of: tuple[str, ...] = ()
    update: bool = False
    id_optional: bool = False
    relationships: Mapping[str, str] = field(default_factory=dict)
    captcha: bool = False

    def read(
        self,
        require_id: str | None = None,
        allowed: frozenset[str] | None = None,
        required: frozenset[str] | None = None,
    ) -> documents.ParsedResource:
        """Parse the request body: the checked attributes that were sent (by wire name) and
        the ids of the declared relationships.

        `allowed` narrows the attributes for a caller (a guest, say), `required` widens
        what must be sent for one (an administrator); the schema documents the widest.
        """
        parsed = documents.parse_resource(
            type_=self.type_,
            require_id=require_id,
            id_optional=self.id_optional,
            allowed=self.attributes.keys() if allowed is None else allowed,
            required=self.required if required is None else required,
            relationships=self.relationships,
            required_relationships=frozenset(self.relationships),
            extra_members=CAPTCHA_MEMBERS if self.captcha else frozenset(),
        )
        sent = parsed.attributes
        values = {name: self.attributes[name].read(sent, name) for name in sent}
        self._check_one_of(values)
        token = _captcha_token(parsed) if self.captcha else None
        return documents.ParsedResource(
            values, parsed.relationships, parsed.meta, parsed.members, token
        )

    def _check_one_of(self, values: Mapping[str, Any]) -> None:
        if not self.one_of:
            return
        given = [name for name in self.one_of if values.get(name) is not None]
        if len(given) == 1:
            return
        code, title = (
            ("required", "Required attribute missing")
            if not given
            else ("conflicting_attributes", "Give only one of these")
        )
        detail = f"Give either {' or '.join(self.one_of)}."
        raise ApiError(
            [
                ErrorObject(422, code, title, detail, attribute_pointer(n))
                for n in sorted(self.one_of)
            ]
        )

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of this document: what `read` accepts, member for member."""
        attributes: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {name: attr.schema() for name, attr in self.attributes.items()},
        }
        if self.required:
            attributes["required"] = sorted(self.required)
        if self.one_of:
            # Exactly one branch holds when exactly one of them is sent (null is refused).
            attributes["oneOf"] = [{"required": [name]} for name in self.one_of]
        data_required = ["type"]
        data_properties: dict[str, Any] = {"type": {"const": self.type_}}
        if self.update:
            if not self.id_optional:
                data_required.append("id")
            data_properties["id"] = {"type": "string", "description": "The id in the URL"}
        if self.required or self.one_of:
            data_required.append("attributes")
        data_properties["attributes"] = attributes
        if self.relationships:
            data_required.append("relationships")
            data_properties["relationships"] = {
                "type": "object",
                "additionalProperties": False,
                "required": sorted(self.relationships),
                "properties": {name: _to_one(type_) for name, type_ in self.relationships.items()},
            }
        else:  # the server takes only an empty relationships object here
            data_properties["relationships"] = {"type": "object", "maxProperties": 0}
        data_properties["meta"] = JSON_OBJECT
        top: dict[str, Any] = {
            "data": {
                "type": "object",
                "additionalProperties": False,
                "required": data_required,
                "properties": data_properties,
            },
            "meta": JSON_OBJECT,
            "jsonapi": JSON_OBJECT,
        }
        if self.captcha:
            top["meta"] = {
                **JSON_OBJECT,
                "properties": {"captchaToken": _CAPTCHA_TOKEN_SCHEMA},
                "description": "captchaToken: a solved CAPTCHA's token, when one is required.",
            }
            top[RECAPTCHA_MEMBER] = {
                **_CAPTCHA_TOKEN_SCHEMA,
                "description": "The same as meta.captchaToken (seed 001's name).",
            }
        return {
            "type": "object",
            "additionalProperties": False,
            "required": ["data"],
            "properties": top,
        }


RECAPTCHA_MEMBER = "recaptcha_token"
CAPTCHA_MEMBERS = frozenset({RECAPTCHA_MEMBER})
_CAPTCHA_TOKEN_SCHEMA: dict[str, Any] = {"type": "string", "maxLength": CAPTCHA_TOKEN_MAX}


def _captcha_token(parsed: documents.ParsedResource) -> str | None:
    """The CAPTCHA token of a document: meta.captchaToken, else recaptcha_token."""
    for where, name, pointer in (
        (parsed.meta, "captchaToken", "/meta/captchaToken"),
        (parsed.members, RECAPTCHA_MEMBER, f"/{RECAPTCHA_MEMBER}"),
    ):
        if name not in where:
            continue
        value = where[name]  # null too is refused: the schema says a string
        if not isinstance(value, str) or len(value) > CAPTCHA_TOKEN_MAX:
            raise ApiError(
                [
                    ErrorObject(
                        400,
                        "invalid_document",
                        "Invalid document",
                        f"The CAPTCHA token must be a string of at most {CAPTCHA_TOKEN_MAX}"
                        " characters.",
                        pointer,
                    )
                ]
            )
        return value
    return None


def request_body(body: Body, *, required: bool = True) -> dict[str, Any]:
    """The OpenAPI `requestBody` of an operation that reads `body`."""
    media = {"schema": body.schema()}
    return {"required": required, "content": {MEDIA_TYPE: media}}


def _to_one(type_: str) -> dict[str, Any]:
    identifier = {
        "type": "object",
        "additionalProperties": False,
        "required": ["type", "id"],
        "properties": {
            "type": {"const": type_},
            "id": {"type": "string", "minLength": 1},
            "meta": JSON_OBJECT,
        },
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["data"],
        "properties": {"data": identifier, "links": JSON_OBJECT, "meta": JSON_OBJECT},
    }
