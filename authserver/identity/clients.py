"""Use cases for OAuth clients: registration with a secret shown once, stored as a digest."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from authserver.identity import audit, rules
from authserver.platform.database import commit
from authserver.platform.errors import ValidationFailed
from authserver.platform.extensions import db
from authserver.platform.models import Account, OAuthClient
from authserver.platform.security import digest, random_token

GRANT_TYPES = ("authorization_code", "refresh_token", "password", "client_credentials")
DEFAULT_GRANTS = {
    False: ["authorization_code", "refresh_token", "password", "client_credentials"],
    True: ["authorization_code", "refresh_token", "password"],  # public: no client_credentials
}
SCOPES = ("openid", "profile", "email", "phone", "offline_access")


@dataclass(frozen=True)
class NewClient:
    client: OAuthClient
    secret: str | None  # plaintext, returned once; None for public clients


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

    `skip_consent` marks a first-party app whose users are not asked for consent.
    """
    name = rules.check_name(name, "name")
    uris = [rules.check_redirect_uri(u, "redirect_uris") for u in (redirect_uris or [])]
    logout_uris = [
        rules.check_redirect_uri(u, "post_logout_redirect_uris")
        for u in (post_logout_redirect_uris or [])
    ]
    # By default the browser flow only when there is somewhere to send the browser back to.
    default = [g for g in DEFAULT_GRANTS[public] if g != "authorization_code" or uris]
    grants = list(dict.fromkeys(grant_types or default))
    for grant in grants:
        rules.check_choice(grant, GRANT_TYPES, "grant_types")
    if public and "client_credentials" in grants:
        raise ValidationFailed(
            "A public client cannot use client_credentials.", field="grant_types"
        )
    if "authorization_code" in grants and not uris:
        raise ValidationFailed(
            "The authorization_code grant needs at least one redirect URI.", field="redirect_uris"
        )
    scopes = (scope if scope is not None else " ".join(SCOPES)).split()
    for item in scopes:
        rules.check_choice(item, SCOPES, "scope")
    secret = None if public else random_token(32)
    client = OAuthClient(
        client_id=secrets.token_urlsafe(18),
        client_secret_hash=digest(secret) if secret else None,
        account_id=account.id,
        name=name,
        is_public=public,
        redirect_uris=uris,
        post_logout_redirect_uris=logout_uris,
        grant_types=grants,
        scope=" ".join(dict.fromkeys(scopes)),
        skip_consent=bool(skip_consent),
    )
    db.session.add(client)
    audit.record("client.create", "OAuthClient", client.client_id, account_id=account.id)
    commit(conflict=False)
    return NewClient(client, secret)
