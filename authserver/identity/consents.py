"""Use cases for remembered consents: a user's "yes" to a client, per set of scopes.

The authorization endpoint asks again whenever a client wants a scope the user has not
agreed to yet; the decision is kept until the user revokes it (security page, which also
ends the app's tokens) or the user or client is deleted (the rows cascade).
"""

from __future__ import annotations

from sqlalchemy import delete, select

from authserver.identity import tokens
from authserver.platform.database import commit
from authserver.platform.extensions import db
from authserver.platform.i18n import gettext as _
from authserver.platform.models import OAuthClient, OAuthConsent


def covers(user_id: str, client_pk: str, scope: str) -> bool:
    """True when the user already agreed to every scope in `scope` for this client."""
    agreed = db.session.scalar(
        select(OAuthConsent.scope).where(
            OAuthConsent.user_id == user_id, OAuthConsent.client_id == client_pk
        )
    )
    return agreed is not None and set(scope.split()) <= set(agreed.split())


def remember(user_id: str, client_pk: str, scope: str) -> None:
    """Record (or widen) the user's consent to the client for `scope`."""
    row = db.session.scalar(
        select(OAuthConsent).where(
            OAuthConsent.user_id == user_id, OAuthConsent.client_id == client_pk
        )
    )
    if row is None:
        db.session.add(OAuthConsent(user_id=user_id, client_id=client_pk, scope=scope))
    else:
        row.scope = " ".join(dict.fromkeys([*row.scope.split(), *scope.split()]))
    commit()


def list_consents(user_id: str) -> list[tuple[OAuthConsent, OAuthClient]]:
    """The user's consents with their clients, newest first (for the security page)."""
    rows = db.session.execute(
        select(OAuthConsent, OAuthClient)
        .join(OAuthClient, OAuthClient.id == OAuthConsent.client_id)
        .where(OAuthConsent.user_id == user_id)
        .order_by(OAuthConsent.updated_at.desc())
    )
    return [(consent, client) for consent, client in rows]


def revoke(user_id: str, client_pk: str) -> bool:
    """Forget the user's consent to the client, and end every token the user gave it
    (refresh and access, in the same transaction); the next authorization asks again."""
    result = db.session.execute(
        delete(OAuthConsent).where(
            OAuthConsent.user_id == user_id, OAuthConsent.client_id == client_pk
        )
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        db.session.rollback()
        return False
    tokens.revoke_client_tokens(user_id, client_pk)
    commit()
    return True


def scope_words() -> dict[str, str]:
    """The scopes in words, in the page's language (the consent and security pages)."""
    return {
        "openid": _("Know who you are on this service"),
        "profile": _("See your name, username and language"),
        "email": _("See your email address"),
        "phone": _("See your phone number"),
        "offline_access": _("Stay connected when you are not using the app"),
    }
