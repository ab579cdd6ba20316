"""Use cases for an account's own APIs (resource servers): register, list, show, change,
delete, which of their scopes a client may get, and which API a token request targets.

An API's identifier is the `aud` of its tokens: an absolute https URI (http on loopback)
without fragment, query or user info, unique in its account and fixed once made (the
tokens and the resource servers' configuration name it). Its scopes are
{"value", "description"} pairs; the description is what a consent page shows.
Deleting an API ends every client's grant of it, and introspection stops calling its
tokens active (resource servers that check the signature alone keep them until they
expire: the API's `token_lifetime` bounds that).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from authserver.identity import audit, rules
from authserver.platform.database import commit
from authserver.platform.errors import Conflict, NotFound, ValidationFailed
from authserver.platform.extensions import db
from authserver.platform.models import OAuthClient, ResourceApi, utcnow

IDENTIFIER_MAX = 255
SCOPES_MAX = 32  # per API; also keeps the largest body well under the request cap
SCOPE_MAX = 64  # characters of a scope value
DESCRIPTION_MAX = 255
LIFETIME_MIN, LIFETIME_MAX = 60, 86_400  # seconds
DEFAULT_LIFETIME = 3600
APIS_MAX = 100  # per account
# A scope value is one OAuth scope-token (RFC 6749 3.3) of printable, unquoted characters;
# `aid:` is ours (the account selector), so no API scope may start with it.
SCOPE_RE = re.compile(r"^[A-Za-z0-9_.:/\-]{1,64}$")
UPDATE_FIELDS = ("name", "scopes", "token_lifetime")


def check_identifier(value: object, field: str = "identifier") -> str:
    """An absolute https URI (http only on loopback), no query, fragment or user info."""
    if not isinstance(value, str) or not 0 < len(value) <= IDENTIFIER_MAX:
        raise ValidationFailed(
            f"Give an absolute URI of at most {IDENTIFIER_MAX} characters.",
            field=field,
            code="invalid_uri",
        )
    if any(ord(c) <= 32 or ord(c) == 127 for c in value):
        raise ValidationFailed(
            "The identifier is not a valid URI.", field=field, code="invalid_uri"
        )
    parts = urlsplit(value)
    if parts.query or parts.fragment or "#" in value or "?" in value:
        raise ValidationFailed(
            "The identifier has no query or fragment (RFC 8707 2).",
            field=field,
            code="invalid_uri",
        )
    rules.check_web_url(value, field)  # https or http, with a host, no user info
    if parts.scheme == "http":
        rules.check_redirect_uri(value, field)  # http only on loopback, as for redirects
    return value


def check_scopes(value: object, field: str = "scopes") -> list[dict[str, str]]:
    """A list of {"value", "description"}; values unique, well formed and not `aid:`."""
    if not isinstance(value, list | tuple):
        raise ValidationFailed("Give a list of scopes.", field=field)
    if len(value) > SCOPES_MAX:
        raise ValidationFailed(f"At most {SCOPES_MAX} scopes.", field=field, code="too_many")
    out: dict[str, str] = {}
    for item in value:
        if not isinstance(item, Mapping) or set(item) - {"value", "description"}:
            raise ValidationFailed(
                'Each scope is {"value": ..., "description": ...}.', field=field, code="invalid"
            )
        name, description = item.get("value"), item.get("description", "")
        if not isinstance(name, str) or not SCOPE_RE.fullmatch(name) or name.startswith("aid:"):
            raise ValidationFailed(
                "A scope value is 1 to 64 of A-Z a-z 0-9 _ . : / - (not aid:...).",
                field=field,
                code="invalid",
            )
        if not isinstance(description, str) or len(description) > DESCRIPTION_MAX:
            raise ValidationFailed(
                f"A description is at most {DESCRIPTION_MAX} characters.",
                field=field,
                code="too_long",
            )
        if description and any(ord(c) < 32 for c in description):
            raise ValidationFailed("A description is printable text.", field=field, code="invalid")
        if name in out:
            raise ValidationFailed(f"Scope {name} is listed twice.", field=field, code="duplicate")
        out[name] = description.strip()
    return [{"value": k, "description": v} for k, v in out.items()]


def split_cli_scope(item: str) -> dict[str, str]:
    """The CLI's `--scope VALUE[=DESCRIPTION]`: `=`, not `:`, because scope values often
    hold colons (`read:orders`)."""
    name, _, description = item.partition("=")
    return {"value": name, "description": description}


def check_lifetime(value: object, field: str = "token_lifetime") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed("Give a whole number of seconds.", field=field, code="invalid_type")
    if not LIFETIME_MIN <= value <= LIFETIME_MAX:
        raise ValidationFailed(
            f"From {LIFETIME_MIN} to {LIFETIME_MAX} seconds.", field=field, code="out_of_range"
        )
    return value


def _taken() -> Conflict:
    return Conflict("This account already has an API with this identifier.")


def create_api(
    account_id: str,
    identifier: object,
    name: object = None,
    scopes: object = (),
    token_lifetime: object = DEFAULT_LIFETIME,
) -> ResourceApi:
    """Register an API for the account (409 when the identifier is taken there)."""
    identifier = check_identifier(identifier)
    name = rules.check_name(identifier if name is None else name, "name")
    checked = check_scopes(list(scopes) if isinstance(scopes, tuple) else scopes)
    lifetime = check_lifetime(token_lifetime)
    count = db.session.scalar(
        select(db.func.count()).select_from(ResourceApi).where(ResourceApi.account_id == account_id)
    )
    if (count or 0) >= APIS_MAX:
        raise ValidationFailed(f"An account has at most {APIS_MAX} APIs.", code="too_many")
    if find_by_identifier(account_id, identifier) is not None:
        raise _taken()
    api = ResourceApi(
        account_id=account_id,
        identifier=identifier,
        name=name,
        scopes=checked,
        token_lifetime=lifetime,
    )
    db.session.add(api)
    db.session.flush()
    audit.record("api.create", "ResourceApi", api.id, account_id=account_id)
    commit(conflict=_taken())  # two creations at once: the unique constraint decides
    return api


def list_apis(account_id: str) -> list[ResourceApi]:
    return list(
        db.session.scalars(
            select(ResourceApi)
            .where(ResourceApi.account_id == account_id)
            .order_by(ResourceApi.created_at, ResourceApi.id)
        )
    )


def get_api(account_id: str | None, api_id: object) -> ResourceApi:
    """An API by id, of `account_id` when given (the CLI gives none); NotFound else."""
    if not isinstance(api_id, str) or not 0 < len(api_id) <= 36 or "\x00" in api_id:
        raise NotFound("No such API.")
    query = select(ResourceApi).where(ResourceApi.id == api_id)
    if account_id is not None:
        query = query.where(ResourceApi.account_id == account_id)
    api = db.session.scalar(query)
    if api is None:
        raise NotFound("No such API.")
    return api


def find_by_identifier(account_id: str, identifier: str) -> ResourceApi | None:
    """The account's API of this identifier; None for a string that cannot be one (too
    long, or a NUL, which PostgreSQL text cannot hold)."""
    if not 0 < len(identifier) <= IDENTIFIER_MAX or "\x00" in identifier:
        return None
    return db.session.scalar(
        select(ResourceApi).where(
            ResourceApi.account_id == account_id, ResourceApi.identifier == identifier
        )
    )


def update_api(api: ResourceApi, fields: Mapping[str, Any]) -> ResourceApi:
    """Change name, scopes (a list replaces the old one) or token lifetime; a scope taken
    out is taken out of every client's grant too. The identifier is fixed."""
    unknown = set(fields) - set(UPDATE_FIELDS)
    if unknown:
        raise ValidationFailed("This setting cannot be changed.", field=sorted(unknown)[0])
    name = rules.check_name(fields["name"], "name") if "name" in fields else api.name
    scopes = check_scopes(fields["scopes"]) if "scopes" in fields else api.scopes
    lifetime = (
        check_lifetime(fields["token_lifetime"])
        if "token_lifetime" in fields
        else api.token_lifetime
    )
    kept = {s["value"] for s in scopes}
    for client in _clients_granted(api):
        granted = dict(client.api_scopes or {})
        granted[api.id] = [s for s in granted[api.id] if s in kept]
        client.api_scopes = granted
    api.name, api.scopes, api.token_lifetime = name, scopes, lifetime
    api.updated_at = utcnow()
    audit.record("api.update", "ResourceApi", api.id, dict(fields), account_id=api.account_id)
    commit(conflict=False)
    return api


def delete_api(api: ResourceApi) -> None:
    """Delete an API and every client's grant of it."""
    for client in _clients_granted(api):
        client.api_scopes = {k: v for k, v in (client.api_scopes or {}).items() if k != api.id}
    db.session.delete(api)
    audit.record("api.delete", "ResourceApi", api.id, account_id=api.account_id)
    commit(conflict=False)


def _clients_granted(api: ResourceApi) -> list[OAuthClient]:
    found = db.session.scalars(select(OAuthClient).where(OAuthClient.account_id == api.account_id))
    return [c for c in found if api.id in (c.api_scopes or {})]


# --- client grants -----------------------------------------------------------------


def check_client_grants(
    account_id: str, value: object, field: str = "api_scopes"
) -> dict[str, list[str]]:
    """{identifier: [scope, ...]} (the wire form) -> {api id: [scope, ...]} (stored), each
    API of the account and each scope one of that API's. An empty list drops the API."""
    if not isinstance(value, Mapping):
        raise ValidationFailed("Give an object of API identifier -> scopes.", field=field)
    if len(value) > APIS_MAX:
        raise ValidationFailed(f"At most {APIS_MAX} APIs.", field=field, code="too_many")
    out: dict[str, list[str]] = {}
    for identifier, scopes in value.items():
        api = find_by_identifier(account_id, identifier) if isinstance(identifier, str) else None
        if api is None:
            raise ValidationFailed(f"No API {str(identifier)[:80]!r} in this account.", field=field)
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ValidationFailed("Give each API's scopes as a list of strings.", field=field)
        known = {s["value"] for s in api.scopes}
        unknown = [s for s in scopes if s not in known]
        if unknown:
            raise ValidationFailed(
                f"{unknown[0][:64]!r} is not a scope of {identifier}.", field=field, code="invalid"
            )
        if scopes:
            out[api.id] = list(dict.fromkeys(scopes))
    return out


def client_grants(client: OAuthClient) -> dict[str, list[str]]:
    """The wire form of a client's grants: {identifier: [scope, ...]}."""
    granted = client.api_scopes or {}
    if not granted:
        return {}
    rows = db.session.scalars(select(ResourceApi).where(ResourceApi.id.in_(list(granted))))
    return {api.identifier: list(granted[api.id]) for api in rows}


# --- token requests ------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What a token request for an API yields: its audience, the scopes, the lifetime."""

    audience: str
    scope: str
    lifetime: int


class UnknownTarget(Exception):
    """The resource is no API of the client's account, or none the client may use."""


class ScopeNotGranted(Exception):
    """A requested scope is not one the client was granted for the API."""


def resolve_target(
    account_id: str, granted: Mapping[str, list[str]], resource: str | None, scope: list[str]
) -> Target | None:
    """The API a token request targets, or None when it targets the account's /v1.

    `resource` (RFC 8707) names the API; without it, scopes that are no /v1 scope name
    the one API the client was granted them for. The token carries the requested scopes
    (all granted ones when none is asked for), only ever granted ones.
    """
    if resource is None:
        matches = [
            api_id for api_id, values in granted.items() if scope and set(scope) <= set(values)
        ]
        if len(matches) != 1:
            raise ScopeNotGranted()
        api = db.session.get(ResourceApi, matches[0])
    else:
        api = find_by_identifier(account_id, resource)
    if api is None or api.account_id != account_id:
        raise UnknownTarget()
    allowed = granted.get(api.id, [])
    if not allowed:
        raise UnknownTarget()
    if not set(scope) <= set(allowed):
        raise ScopeNotGranted()
    return Target(api.identifier, " ".join(scope or allowed), api.token_lifetime)


def is_api_of(account_id: object, identifier: object) -> bool:
    """Whether `identifier` names an API of the account now (introspection's check)."""
    if not isinstance(account_id, str) or not isinstance(identifier, str):
        return False
    return find_by_identifier(account_id, identifier) is not None
