"""The JSON:API wire format of /v1: content negotiation, response and error documents,
and the table from domain errors to HTTP statuses. Request documents are read in
`documents`; the words for domain fields and route-citing details are in `names`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NoReturn
from urllib.parse import urlencode
from uuid import UUID

from flask import Blueprint, Flask, Response, g, has_request_context, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES, parse_accept_header, parse_options_header
from werkzeug.sansio.response import Response as SansIOResponse

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
from authserver.platform.web import UNSTORABLE, add_error_renderer, no_store

from . import names
from .names import to_camel

MEDIA_TYPE = "application/vnd.api+json"
PREFIX = "/v1"
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()  # JSON:API `ext` URIs we implement

log = logging.getLogger("authserver.api")


# --- errors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorObject:
    """One entry of an `errors` document."""

    status: int
    code: str
    title: str
    detail: str | None = None
    pointer: str | None = None  # JSON Pointer into the request document; "" is the root
    parameter: str | None = None  # the query parameter at fault

    def as_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"status": str(self.status), "code": self.code, "title": self.title}
        if self.detail is not None:
            obj["detail"] = self.detail
        if self.pointer is not None:
            obj["source"] = {"pointer": self.pointer}
        elif self.parameter is not None:
            obj["source"] = {"parameter": self.parameter}
        return obj


class ApiError(HTTPException):
    """One or more JSON:API errors; raised anywhere under /v1 it answers with them."""

    def __init__(
        self,
        errors: Sequence[ErrorObject],
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(description=errors[0].detail if errors else None)
        self.errors = list(errors)
        self.code = status or overall_status(self.errors)
        self.headers = dict(headers or {})

    def get_response(  # type: ignore[override]
        self, environ: Any = None, scope: Any = None
    ) -> SansIOResponse:
        return errors_response(self.errors, status=self.code, headers=self.headers)


def fail(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    pointer: str | None = None,
    parameter: str | None = None,
) -> NoReturn:
    """Stop handling the request with one JSON:API error."""
    raise ApiError([ErrorObject(status, code, title, detail, pointer, parameter)])


def fail_parameter(name: str, detail: str) -> NoReturn:
    """400 for a bad query parameter, with `source.parameter` naming it."""
    fail(400, "invalid_parameter", "Invalid query parameter", detail, parameter=name)


def overall_status(errors: Sequence[ErrorObject]) -> int:
    """The status of a document holding several errors: theirs if shared, else 400 or 500."""
    statuses = {e.status for e in errors}
    if len(statuses) == 1:
        return statuses.pop()
    return 400 if statuses and all(400 <= s < 500 for s in statuses) else 500


def error_response(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    pointer: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A JSON:API error document with one error."""
    return errors_response([ErrorObject(status, code, title, detail, pointer)], headers=headers)


def errors_response(
    errors: Sequence[ErrorObject],
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A JSON:API error document; server-side failures carry the request id to quote."""
    status = status or overall_status(errors)
    body: dict[str, Any] = {"errors": [e.as_json() for e in errors]}
    if status >= 500 and has_request_context() and g.get("request_id"):
        body["meta"] = {"requestId": g.request_id}
    return _response(body, status, headers)


# Checked in order, so a subclass listed later (StoreUnavailable) still finds its base.
DOMAIN_STATUSES: tuple[tuple[type[DomainError], int], ...] = (
    (ValidationFailed, 422),
    (NotFound, 404),
    (Conflict, 409),
    (Forbidden, 403),
    (Unauthenticated, 401),
    (Throttled, 429),
    (ServiceUnavailable, 503),
)


def status_for(error: DomainError) -> int:
    """The HTTP status of a domain error; 400 for any not in DOMAIN_STATUSES."""
    for cls, status in DOMAIN_STATUSES:
        if isinstance(error, cls):
            return status
    return 400


def domain_error_response(error: DomainError) -> Response:
    """Render a domain error; its `field` becomes the pointer to the attribute carrying it."""
    status = status_for(error)
    headers: dict[str, str] = {}
    if isinstance(error, Unauthenticated):
        # RFC 6750 3: say invalid_token when a token was given but refused.
        invalid = ', error="invalid_token"' if error.code == "invalid_token" else ""
        headers["WWW-Authenticate"] = f'Bearer realm="authserver"{invalid}'

    if isinstance(error, Throttled):
        headers["Retry-After"] = str(error.retry_after)
    detail = names.detail_of(error)
    if status >= 500:
        # The detail names our infrastructure: log it, tell the client only what to do.
        log.warning("dependency unavailable: %s: %s", error.code, error.detail)
        detail = "A service this request needs is unavailable; try again shortly."
    pointer = attribute_pointer(names.attribute_of(error.field)) if error.field else None
    return error_response(status, error.code, error.title, detail, pointer, headers)


_HTTP_CODES = {
    413: "payload_too_large",
    500: "internal_error",
}
_HTTP_DETAILS = {
    404: "There is nothing at this URL.",
    405: "This URL does not accept this method; see the Allow header.",
    503: "A service this request needs is unavailable; try again shortly.",
    500: "An unexpected error occurred. Quote meta.requestId when reporting it.",
}


def http_error_response(error: HTTPException) -> Response:
    """Render a Werkzeug HTTP error (routing, size limits, crashes) as JSON:API."""
    if isinstance(error, ApiError):
        return errors_response(error.errors, status=error.code, headers=error.headers)
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    # The class default is fixed text; an instance description may carry internals.
    return status_error_response(error.code or 500, headers, type(error).description)


def status_error_response(
    status: int, headers: Mapping[str, str] | None = None, fallback_detail: str | None = None
) -> Response:
    """A JSON:API error for a bare HTTP status, worded from the status alone."""
    title = HTTP_STATUS_CODES.get(status, "Error")
    code = _HTTP_CODES.get(status) or re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")
    detail = _HTTP_DETAILS.get(status, fallback_detail)
    if status == 413:
        detail = f"The request body is larger than {request.max_content_length} bytes."
    return error_response(status, code, title, detail, headers=headers)


# --- response documents -----------------------------------------------------------------


def resource(
    type_: str,
    id_: str,
    attributes: Mapping[str, Any],
    relationships: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A resource object; attribute names are turned camelCase."""
    obj: dict[str, Any] = {
        "type": type_,
        "id": str(id_),
        "attributes": {to_camel(k): v for k, v in attributes.items()},
    }
    if relationships:
        obj["relationships"] = {to_camel(k): v for k, v in relationships.items()}
    if meta:
        obj["meta"] = dict(meta)
    return obj


def document(
    data: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    meta: Mapping[str, Any] | None = None,
    links: Mapping[str, Any] | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    included: Sequence[Mapping[str, Any]] | None = None,
) -> Response:
    """A JSON:API document with primary data (a resource object, a list, or None) and
    the `included` resources asked for; the request's sparse fieldsets apply to both."""
    fields: dict[str, frozenset[str]] = g.get("jsonapi_fields") or {}
    if fields:
        if isinstance(data, Mapping):
            data = _sparse(data, fields)
        elif data is not None:
            data = [_sparse(item, fields) for item in data]
        included = [_sparse(item, fields) for item in included or ()]
    body: dict[str, Any] = {"data": data}
    if included is not None:
        body["included"] = list(included)
    if meta:
        body["meta"] = dict(meta)
    if links:
        body["links"] = dict(links)
    return _response(body, status, headers)


def _sparse(obj: Mapping[str, Any], fields: Mapping[str, frozenset[str]]) -> dict[str, Any]:
    """The resource object with only the fields its type's `fields[TYPE]` names."""
    wanted = fields.get(obj.get("type", ""))
    if wanted is None:
        return dict(obj)
    out = dict(obj)
    for member in ("attributes", "relationships"):
        if member in out:
            kept = {k: v for k, v in out[member].items() if k in wanted}
            if kept:
                out[member] = kept
            else:
                del out[member]
    return out


def no_content() -> Response:
    """204 with no body (and so no Content-Type)."""
    response = Response(status=204)
    response.headers.remove("Content-Type")
    return no_store(response)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode(body: Mapping[str, Any]) -> str:
    """JSON as /v1 writes it: compact, UTF-8, times in ISO 8601 (webhook bodies too)."""
    return json.dumps(
        body, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_json_default
    )


def _response(body: Mapping[str, Any], status: int, headers: Mapping[str, str] | None) -> Response:
    payload = encode(body)
    # JSON:API forbids media type parameters such as charset; JSON is UTF-8 by definition.
    response = no_store(Response(payload, status=status, content_type=MEDIA_TYPE))
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


# --- pagination ---------------------------------------------------------------------

PAGE_SIZE = 25
PAGE_SIZE_MAX = 100
PAGE_NUMBER_MAX = 1_000_000  # the OpenAPI document publishes these bounds


def page_param(name: str, default: int, maximum: int) -> int:
    """`page[name]` from the query string: a whole number from 1 to `maximum`, else 400."""
    key = f"page[{name}]"
    raw = request.args.get(key)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 7 or not 1 <= int(raw) <= maximum:
        fail_parameter(key, f"{key} must be a whole number from 1 to {maximum}.")
    return int(raw)


def page_links(number: int, size: int, total: int) -> dict[str, str]:
    """self/first/last and, where they exist, prev/next links of a paginated list; they
    keep the request's other parameters (filters, sort, fields, include)."""
    last = max(1, -(-total // size))
    kept = sorted((k, v) for k, vs in request.args.lists() if not k.startswith("page[") for v in vs)
    query = urlencode(kept) + "&" if kept else ""
    base = f"{request.path}?{query}page[size]={size}&page[number]="
    links = {"self": f"{base}{number}", "first": f"{base}1", "last": f"{base}{last}"}
    if number > 1:
        links["prev"] = f"{base}{number - 1}"
    if number < last:
        links["next"] = f"{base}{number + 1}"
    return links


# --- pointers ---------------------------------------------------------------------------


def escape_pointer(token: str) -> str:
    """Escape one JSON Pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def attribute_pointer(name: str) -> str:
    return f"/data/attributes/{escape_pointer(name)}"


def relationship_pointer(name: str) -> str:
    return f"/data/relationships/{escape_pointer(name)}"


def under_prefix(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


# --- content negotiation ----------------------------------------------------------------


def _unsupported_ext(params: Mapping[str, str]) -> bool:
    return any(uri not in SUPPORTED_EXTENSIONS for uri in params.get("ext", "").split())


def check_content_type() -> None:
    """415 unless the body is declared as JSON:API (ext/profile only) or plain UTF-8 JSON."""
    raw = request.headers.get("Content-Type", "")
    mimetype, params = parse_options_header(raw)
    mimetype = mimetype.lower()
    params = {k.lower(): v for k, v in params.items()}
    if mimetype == MEDIA_TYPE:
        if set(params) - {"ext", "profile"}:
            _unsupported_media("The JSON:API media type takes only ext and profile parameters.")
        if _unsupported_ext(params):
            _unsupported_media("This server supports no JSON:API extensions.")
        return
    if mimetype == "application/json":
        if set(params) - {"charset"} or params.get("charset", "utf-8").lower() != "utf-8":
            _unsupported_media("application/json bodies must be UTF-8 with no other parameters.")
        return
    _unsupported_media(f"Send the body as {MEDIA_TYPE}.")


def _unsupported_media(detail: str) -> NoReturn:
    fail(415, "unsupported_media_type", "Unsupported media type", detail)


def check_accept() -> None:
    """406 when Accept names JSON:API but every instance carries parameters we cannot honour."""
    instances = []
    for value, quality in parse_accept_header(request.headers.get("Accept", "")):
        mimetype, params = parse_options_header(value)  # Werkzeug keeps parameters here
        if mimetype.lower() == MEDIA_TYPE:
            instances.append((quality, {k.lower(): v for k, v in params.items()}))

    def usable(quality: float, params: dict[str, str]) -> bool:
        if quality == 0:  # q=0 means "not this one"
            return False
        return not set(params) - {"ext", "profile"} and not _unsupported_ext(params)

    if instances and not any(usable(q, p) for q, p in instances):
        fail(
            406,
            "not_acceptable",
            "Not acceptable",
            f"Accept {MEDIA_TYPE} without parameters other than ext and profile.",
        )


def read_body() -> bytes:
    """The request body; 413 when it is over MAX_CONTENT_LENGTH, declared or streamed."""
    cap = request.max_content_length
    length = request.content_length
    if length is not None and cap is not None and length > cap:
        raise RequestEntityTooLarge()
    data = request.get_data(cache=True)
    # Werkzeug stops a streamed (chunked) body quietly at the cap, so a truncated body
    # would parse; one more byte on the wire means it was too large.
    if (
        length is None
        and cap is not None
        and len(data) >= cap
        and request.environ["wsgi.input"].read(1)
    ):
        raise RequestEntityTooLarge()
    return data


def _has_body() -> bool:
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not request.content_length and not chunked:
        return False
    return bool(read_body())


def negotiate() -> None:
    """Before any /v1 view: refuse oversize bodies, undeclared body types, unusable Accept,
    and query parameters that hold NUL."""
    if _has_body():
        check_content_type()
    check_accept()
    check_query()


def check_query() -> None:
    """400 for a NUL (or lone surrogate) in any query parameter, used or not: no view has
    to remember it, and nothing unstorable is read (strictjson does the same for bodies)."""
    for name, values in request.args.lists():
        if UNSTORABLE.search(name) or any(UNSTORABLE.search(v) for v in values):
            detail = "Query parameters may not hold NUL characters."
            fail_parameter(UNSTORABLE.sub("\ufffd", name), detail)


# --- wiring -----------------------------------------------------------------------------


def install(bp: Blueprint) -> None:
    """Attach negotiation and the domain-error renderer to the API blueprint (at import)."""
    bp.before_request(negotiate)
    bp.register_error_handler(DomainError, domain_error_response)


def init_app(app: Flask) -> None:
    """App-level: unmatched /v1 URLs, 405s, 413s and crashes never happen inside the
    blueprint, so Flask would not call its handlers; these check the path instead."""
    add_error_renderer(app, under_prefix, http_error_response)
    app.after_request(_no_html_under_prefix)


def _no_html_under_prefix(response: Response) -> Response:
    """Last guard: nothing under /v1 answers text/html (e.g. Werkzeug's slash redirects)."""
    if not under_prefix(request.path) or response.mimetype != "text/html":
        return response
    if response.status_code >= 400:
        skip = {"content-type", "content-length"}
        headers = {k: v for k, v in response.headers.items() if k.lower() not in skip}
        return status_error_response(response.status_code, headers)
    # Redirects and Flask's automatic OPTIONS answer: keep status and headers, drop the HTML.
    response.set_data(b"")
    response.headers.remove("Content-Type")
    return response
