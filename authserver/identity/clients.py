"""Use cases for OAuth clients: register, list, show, change, rotate the secret (shown once,
stored as a digest), disable or enable, delete. Each change is one function that commits.

Disabling or deleting a client voids every token it holds at once, on every instance:
its refresh tokens are deleted and `tokens_valid_after` makes validation refuse its access
tokens (both read PostgreSQL, not the per-process client cache).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from authserver.identity import apis, audit, rules
from authserver.platform.database import commit
from authserver.platform.errors import NotFound, ValidationFailed
from authserver.platform.extensions import db
from authserver.platform.models import (
    Account,
    OAuthClient,
    OAuthConsent,
    RefreshToken,
    utcnow,
)
from authserver.platform.security import digest, random_token

# The last is RFC 8693 token exchange: support login (identity.support); never a default.
GRANT_TYPES = (
    "authorization_code",
    "refresh_token",
    "password",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:token-exchange",
)
# Safe default: the browser flow with PKCE and its refresh. The password grant and client
# credentials hand out tokens without the user on our pages; only when asked for.
DEFAULT_GRANTS = ("authorization_code", "refresh_token")
SCOPES = ("openid", "profile", "email", "phone", "offline_access")
ACTIVE, DISABLED, DELETED = "active", "disabled", "deleted"
STATUSES = (ACTIVE, DISABLED)  # what a caller may set or see; deleted clients are gone
# Redirect URIs per list (a registration, not a pattern) and characters per URI: also
# what keeps the largest client body well under the API's 64 KiB request cap.
URIS_MAX = 8
URI_MAX = 255
SCOPE_MAX = 255
# The fields update_client takes (domain names); `public` is fixed at registration.
UPDATE_FIELDS = (
    "name",
    "redirect_uris",
    "post_logout_redirect_uris",
    "grant_types",
    "scope",
    "skip_consent",
    "status",
    "api_scopes",
)


@dataclass(frozen=True)
class NewClient:
    client: OAuthClient
    secret: str | None  # plaintext, returned once; None for public clients


@dataclass(frozen=True)
class _Settings:
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    grant_types: list[str]
    scope: str


def _uris(values: object, field: str) -> list[str]:
    if not isinstance(values, list | tuple):
        raise ValidationFailed("Give a list of URIs.", field=field)
    if len(values) > URIS_MAX:
        raise ValidationFailed(f"At most {URIS_MAX} URIs.", field=field, code="too_many")
    if any(isinstance(u, str) and len(u) > URI_MAX for u in values):
        raise ValidationFailed(f"At most {URI_MAX} characters a URI.", field=field, code="too_long")
    return list(dict.fromkeys(rules.check_redirect_uri(u, field) for u in values))


def _check_settings(
    public: bool,
    redirect_uris: object,
    post_logout_redirect_uris: object,
    grant_types: object,
    scope: object,
) -> _Settings:
    """The one set of rules for a client's settings, at registration and on every change."""
    uris = _uris(redirect_uris, "redirect_uris")
    logout_uris = _uris(post_logout_redirect_uris, "post_logout_redirect_uris")
    if not isinstance(grant_types, list | tuple) or not grant_types:
        raise ValidationFailed("Give at least one grant type.", field="grant_types")
    grants = list(
        dict.fromkeys(rules.check_choice(g, GRANT_TYPES, "grant_types") for g in grant_types)
    )
    if public and "client_credentials" in grants:
        raise ValidationFailed(
            "A public client cannot use client_credentials.", field="grant_types"
        )
    if "authorization_code" in grants and not uris:
        raise ValidationFailed(
            "The authorization_code grant needs at least one redirect URI "
            "(or give grant types without it).",
            field="redirect_uris",
        )
    if not isinstance(scope, str) or len(scope) > SCOPE_MAX:
        raise ValidationFailed(
            f"Give the scopes as one space-separated string of at most {SCOPE_MAX} characters.",
            field="scope",
        )
    scopes = [rules.check_choice(item, SCOPES, "scope") for item in scope.split()]
    return _Settings(uris, logout_uris, grants, " ".join(dict.fromkeys(scopes)))


def create_client(
    account: Account,
    name: object,
    *,
    public: bool = False,
    redirect_uris: list[str] | None = None,
    grant_types: list[str] | None = None,
    scope: str | None = None,
    post_logout_redirect_uris: list[str] | None = None,
    skip_consent: bool = False,
) -> NewClient:
    """Register a client for `account`. A confidential client gets a 256-bit secret.

    Without grant types it gets DEFAULT_GRANTS; `skip_consent` marks a first-party app
    whose users are not asked for consent.
    """
    name = rules.check_name(name, "name")
    if not isinstance(public, bool):
        raise ValidationFailed("public is true or false.", field="public")
    settings = _check_settings(
        public,
        redirect_uris or [],
        post_logout_redirect_uris or [],
        list(DEFAULT_GRANTS) if grant_types is None else grant_types,
        " ".join(SCOPES) if scope is None else scope,
    )
    secret = None if public else random_token(32)
    client = OAuthClient(
        client_id=secrets.token_urlsafe(18),
        client_secret_hash=digest(secret) if secret else None,
        account_id=account.id,
        name=name,
        is_public=public,
        redirect_uris=settings.redirect_uris,
        post_logout_redirect_uris=settings.post_logout_redirect_uris,
        grant_types=settings.grant_types,
        scope=settings.scope,
        skip_consent=bool(skip_consent),
    )
    db.session.add(client)
    audit.record("client.create", "OAuthClient", client.client_id, account_id=account.id)
    commit(conflict=False)
    return NewClient(client, secret)


def list_clients(account: Account) -> list[OAuthClient]:
    """The account's clients (not deleted ones), oldest first."""
    return list(
        db.session.scalars(
            select(OAuthClient)
            .where(OAuthClient.account_id == account.id, OAuthClient.status != DELETED)
            .order_by(OAuthClient.created_at, OAuthClient.id)
        )
    )


def get_client(account: Account | None, client_id: object) -> OAuthClient:
    """A client by its client_id, of `account` when given (the CLI gives none). NotFound for
    another account's client, a deleted one, or an id that cannot be one."""
    if not isinstance(client_id, str) or not 0 < len(client_id) <= 64 or "\x00" in client_id:
        raise NotFound("No such client.")
    query = select(OAuthClient).where(
        OAuthClient.client_id == client_id, OAuthClient.status != DELETED
    )
    if account is not None:
        query = query.where(OAuthClient.account_id == account.id)
    client = db.session.scalar(query)
    if client is None:
        raise NotFound("No such client.")
    return client


def update_client(client: OAuthClient, fields: Mapping[str, Any]) -> OAuthClient:
    """Change the given settings (UPDATE_FIELDS; a list replaces the old one) under the
    rules of registration. Setting status `disabled` ends every token of the client now."""
    unknown = set(fields) - set(UPDATE_FIELDS)
    if unknown:
        field = sorted(unknown)[0]
        raise ValidationFailed("This setting cannot be changed.", field=field)
    # Everything is checked before anything changes: a refused request changes nothing.
    name = rules.check_name(fields["name"], "name") if "name" in fields else client.name
    settings = _check_settings(
        client.is_public,
        fields.get("redirect_uris", client.redirect_uris),
        fields.get("post_logout_redirect_uris", client.post_logout_redirect_uris),
        fields.get("grant_types", client.grant_types),
        fields.get("scope", client.scope),
    )
    skip_consent = fields.get("skip_consent", client.skip_consent)
    if not isinstance(skip_consent, bool):
        raise ValidationFailed("skip_consent is true or false.", field="skip_consent")
    status = rules.check_choice(fields.get("status", client.status), STATUSES, "status")
    api_scopes = client.api_scopes
    if "api_scopes" in fields:  # {API identifier: [scope, ...]}; replaces the old grants
        api_scopes = apis.check_client_grants(client.account_id, fields["api_scopes"])
    if status == DISABLED and client.status != DISABLED:
        _end_tokens(client)
    client.name = name
    client.redirect_uris = settings.redirect_uris
    client.post_logout_redirect_uris = settings.post_logout_redirect_uris
    client.grant_types = settings.grant_types
    client.scope = settings.scope
    client.skip_consent = skip_consent
    client.status = status
    client.api_scopes = api_scopes
    client.updated_at = utcnow()
    audit.record(
        "client.update", "OAuthClient", client.client_id, fields, account_id=client.account_id
    )
    commit(conflict=False)
    return client


def rotate_secret(client: OAuthClient) -> NewClient:
    """A new secret for a confidential client, returned once; the old one is refused from
    now on (no grace period). The client's tokens stay valid."""
    if client.is_public:
        raise ValidationFailed("A public client has no secret.", field="public")
    secret = random_token(32)
    client.client_secret_hash = digest(secret)
    client.updated_at = utcnow()
    audit.record(
        "client.secret.rotate", "OAuthClient", client.client_id, account_id=client.account_id
    )
    commit(conflict=False)
    return NewClient(client, secret)


def delete_client(client: OAuthClient) -> None:
    """Delete a client: its tokens end now, its consents are forgotten and its secret
    destroyed. The row stays (status deleted) so its client_id is never reused."""
    _end_tokens(client)
    db.session.execute(delete(OAuthConsent).where(OAuthConsent.client_id == client.id))
    client.status = DELETED
    client.client_secret_hash = None
    client.redirect_uris = []
    client.post_logout_redirect_uris = []
    client.updated_at = utcnow()
    audit.record("client.delete", "OAuthClient", client.client_id, account_id=client.account_id)
    commit(conflict=False)


def _end_tokens(client: OAuthClient) -> None:
    """Void the client's tokens in the caller's transaction: refresh tokens deleted, access
    tokens refused by validation (issued at or before `tokens_valid_after`)."""
    db.session.execute(delete(RefreshToken).where(RefreshToken.client_id == client.id))
    client.tokens_valid_after = utcnow()
