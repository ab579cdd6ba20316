"""JSON:API query parameters of /v1 GET routes, read once before the view: `sort`,
sparse fieldsets `fields[TYPE]`, `include`, and the route's own parameters. Each GET view
declares what it takes with `@takes(QuerySpec(...))`; anything else in JSON:API's reserved
style (a name of only a-z, or an unknown `family[...]`) is a 400 naming the parameter,
as the specification requires of what a server does not support. Other names (with a
capital, a digit, `-` or `_`) are implementation-specific and left alone.

The spec also writes the OpenAPI description of `sort`, `fields[...]` and `include`, so
the document and the server agree (openapi.build adds them to each operation).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import current_app, g, request

from . import jsonapi

F = TypeVar("F", bound=Callable[..., Any])

RESERVED_NAME = re.compile(r"^[a-z]+$")
FAMILY = re.compile(r"^([a-z]+)\[(.*)\]$")
FAMILIES = ("fields", "filter", "page")


@dataclass(frozen=True)
class SortKey:
    """One `sort` item: the attribute and whether it is descending (`-name`)."""

    name: str
    descending: bool


@dataclass(frozen=True)
class QuerySpec:
    """What a GET route takes besides its path: `types` maps each resource type it may
    render (primary or included) to its field names, for `fields[TYPE]`; `sort` the
    attributes it sorts by; `include` its relationship paths; `params` its own parameters
    (filters, pages, `search`, `locale`)."""

    types: Mapping[str, frozenset[str]]
    sort: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    params: frozenset[str] = frozenset()
    sort_description: str = ""

    def parameters(self) -> list[dict[str, Any]]:
        """The OpenAPI parameter objects for sort, fields[...] and include."""
        out: list[dict[str, Any]] = []
        for type_, names in sorted(self.types.items()):
            alt = "|".join(sorted(names))
            out.append(
                {
                    "name": f"fields[{type_}]",
                    "in": "query",
                    "description": f"Sparse fieldset: only these {type_} fields "
                    "(comma-separated; empty: none)",
                    "schema": {"type": "string", "pattern": f"^(?:(?:{alt})(?:,(?:{alt}))*)?$"},
                }
            )
        if self.sort:
            alt = "|".join(self.sort)
            out.append(
                {
                    "name": "sort",
                    "in": "query",
                    "description": "Comma-separated; `-` descends. " + self.sort_description,
                    "schema": {"type": "string", "pattern": f"^-?(?:{alt})(?:,-?(?:{alt}))*$"},
                }
            )
        if self.include:
            alt = "|".join(self.include)
            out.append(
                {
                    "name": "include",
                    "in": "query",
                    "description": "Related resources to add under `included`",
                    "schema": {"type": "string", "pattern": f"^(?:{alt})(?:,(?:{alt}))*$"},
                }
            )
        return out


NOTHING = QuerySpec(types={})  # a GET that declares nothing takes nothing of JSON:API's


@dataclass
class Query:
    """The request's parsed parameters (in `g`; `current()` reads them)."""

    sort: list[SortKey] = field(default_factory=list)
    include: frozenset[str] = frozenset()


def takes(spec: QuerySpec) -> Callable[[F], F]:
    """Declare the query parameters a GET view takes (read by `read` and by openapi)."""

    def decorate(view: F) -> F:
        view.query_spec = spec  # type: ignore[attr-defined]
        return view

    return decorate


def spec_of(view: Any) -> QuerySpec:
    return getattr(view, "query_spec", NOTHING)


def current() -> Query:
    """This request's sort and include (empty outside a GET)."""
    return g.get("jsonapi_query") or Query()


def read() -> None:
    """Before each /v1 GET: check every query parameter against the view's spec; keep the
    sort and include for the view and the sparse fieldsets for jsonapi.document."""
    if request.method != "GET" or request.endpoint is None:
        return
    view = current_app.view_functions.get(request.endpoint)
    spec = spec_of(view)
    query = Query()
    fields: dict[str, frozenset[str]] = {}
    for name, values in request.args.lists():
        if len(values) > 1:
            jsonapi.fail_parameter(name, f"{name} may be given once.")
        value = values[0]
        family = FAMILY.match(name)
        if name == "sort" and spec.sort:
            query.sort = _sort(value, spec.sort)
        elif name == "include" and spec.include:
            query.include = frozenset(_list(name, value, spec.include, allow_empty=False))
        elif family and family.group(1) == "fields" and family.group(2) in spec.types:
            type_ = family.group(2)
            fields[type_] = frozenset(_list(name, value, spec.types[type_], allow_empty=True))
        elif name in spec.params:
            continue
        elif name in ("sort", "include") or (family and family.group(1) == "fields"):
            jsonapi.fail_parameter(name, f"This route does not support {name}.")
        elif RESERVED_NAME.match(name) or (family and family.group(1) in FAMILIES):
            jsonapi.fail_parameter(name, f"Unknown query parameter {name}.")
    g.jsonapi_query = query
    if fields:
        g.jsonapi_fields = fields


def _list(name: str, value: str, allowed: Any, *, allow_empty: bool) -> list[str]:
    if value == "" and allow_empty:
        return []
    items = value.split(",")
    if any(item not in allowed for item in items):
        choices = ", ".join(sorted(allowed))
        jsonapi.fail_parameter(name, f"{name} takes a comma-separated list of: {choices}.")
    return items


def _sort(value: str, allowed: tuple[str, ...]) -> list[SortKey]:
    items = value.split(",")
    names = [item.removeprefix("-") for item in items]
    if any(name not in allowed for name in names):
        choices = ", ".join(allowed)
        jsonapi.fail_parameter(
            "sort", f"sort takes a comma-separated list of: {choices} (each may start with -)."
        )
    keys: list[SortKey] = []
    for item, name in zip(items, names, strict=True):
        if all(key.name != name for key in keys):  # a repeated key adds nothing
            keys.append(SortKey(name, item.startswith("-")))
    return keys
