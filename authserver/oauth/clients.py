"""OAuth clients as Authlib sees them: an immutable `ClientInfo`, cached in-process briefly.

The token endpoint looks a client up on every request (Authlib even does it several times
per request), so a lookup is served from a small per-process cache for CACHE_TTL seconds:
changed settings (redirect URIs, grants, scopes) and a disabled public client reach the
authorize and token endpoints within that time on every worker. What is security state
does not wait for it: a confidential client's secret is checked against the database
row (a rotated secret or a disabled client is refused on the next request), and access
token validation and the refresh grant read the client's row too (identity.tokens), so
a disabled client's tokens, even ones issued from a stale cache entry, stop at once.
Secrets are high-entropy random strings, stored as SHA-256 digests and compared in
constant time; argon2 is for people's passwords.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy import select

from authserver.identity import token_cache
from authserver.platform.extensions import db
from authserver.platform.models import Account, AccountStatus, OAuthClient
from authserver.platform.security import digest, same

CACHE_TTL = 10.0  # seconds
CACHE_MAX = 10_000  # entries; the cache is emptied when it grows past this
CLIENT_ID_MAX = 64


@dataclass(frozen=True)
class ClientInfo(ClientMixin):
    """A registered client, detached from the database session."""

    pk: str  # OAuthClient.id
    client_id: str
    name: str
    secret_hash: str | None
    is_public: bool
    account_id: str
    account_mode: str
    # A live account's paired test account, where a live user's refresh token may switch
    # to (Freshcom's dashboard); None for a test account: nothing of a test client may
    # reach the live account.
    twin_account_id: str | None
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    scopes: frozenset[str]
    role: str
    skip_consent: bool = False  # a first-party app: its users are not asked for consent
    # Scopes of the account's own APIs it may get: ((api id, (scope, ...)), ...).
    api_grants: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # Only an unambiguous registration may stand in for a missing redirect_uri.
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str) -> str | None:
        """The requested scope if the client may have all of it, else None (invalid_scope)."""
        if not scope:
            return ""
        items = scope.split()
        if any(not s.startswith("aid:") and s not in self.scopes for s in items):
            return None
        return " ".join(dict.fromkeys(items))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_hash is None or not isinstance(client_secret, str):
            return False
        # The current digest, not the per-process cached one: a rotated secret or a
        # disabled client is refused on the next request on every worker, not CACHE_TTL
        # on (token_cache: replaced in Redis after the commit, else read from PostgreSQL).
        current = token_cache.client_secret_digest(self.client_id)
        return current is not None and same(digest(client_secret), current)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.is_public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types

    def serves(self, account_id: str | None) -> bool:
        """Whether a login (a user's session, a refresh token, a code) for `account_id`
        may go through this client: its own account only; a global user's login without
        an account (a live-mode one) through a live client only."""
        if account_id is None:
            return self.account_mode == "live"
        return account_id == self.account_id

    def reaches(self, account_id: str | None, mode: str) -> bool:
        """Whether this client may hold an access token for `account_id` in `mode`: what it
        serves, and a live client also its test account (a live user's refresh token
        switched there with aid:<test account>). A test client never reaches live."""
        if account_id is not None and account_id == self.twin_account_id:
            return mode == "test"
        return mode == self.account_mode and self.serves(account_id)


class ClientCache:
    """client_id -> ClientInfo for CACHE_TTL seconds; unknown ids are not cached."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, ClientInfo]] = {}
        self._lock = threading.Lock()

    def get(self, client_id: object) -> ClientInfo | None:
        if not isinstance(client_id, str) or not 0 < len(client_id) <= CLIENT_ID_MAX:
            return None
        if "\x00" in client_id:  # from a Basic header; PostgreSQL text cannot hold NUL
            return None
        now = time.monotonic()
        entry = self._entries.get(client_id)
        if entry and entry[0] > now:
            return entry[1]
        info = load_client(client_id)
        if info is not None:
            with self._lock:
                if len(self._entries) >= CACHE_MAX:
                    self._entries.clear()
                self._entries[client_id] = (now + CACHE_TTL, info)
        return info

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def load_client(client_id: str) -> ClientInfo | None:
    """An active client of an active account, or None."""
    row = db.session.execute(
        select(OAuthClient, Account)
        .join(Account, Account.id == OAuthClient.account_id)
        .where(OAuthClient.client_id == client_id)
    ).first()
    if row is None:
        return None
    client, account = row
    if client.status != "active" or account.status != AccountStatus.ACTIVE:
        return None
    # Only live -> test: a test account's client gets no twin (issue 14: it used to get
    # the live account, and with it live users and live tokens).
    twin = account.test_account_id if account.mode == "live" else None
    return ClientInfo(
        pk=client.id,
        client_id=client.client_id,
        name=client.name,
        secret_hash=client.client_secret_hash,
        is_public=client.is_public,
        account_id=account.id,
        account_mode=account.mode,
        twin_account_id=twin,
        redirect_uris=tuple(client.redirect_uris or ()),
        post_logout_redirect_uris=tuple(client.post_logout_redirect_uris or ()),
        grant_types=tuple(client.grant_types or ()),
        scopes=frozenset((client.scope or "").split()),
        role=client.role,
        skip_consent=client.skip_consent,
        api_grants=tuple((k, tuple(v)) for k, v in (client.api_scopes or {}).items()),
    )
