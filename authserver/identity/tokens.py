"""Token rules: JWT access tokens (RFC 9068), opaque rotating refresh tokens, and their checks.

Access tokens are self-contained ES256 JWTs, so issuing one writes nothing. They are still
recalled on time: a token is refused when its `jti` was revoked (a Redis deny-list entry
that lives until the token expires), when its user's `token_generation` moved on since it
was issued (password change, reset, disable, "sign out everywhere"), or when the user or
account is no longer active. `validate_access_token` is the one check behind the /v1
bearer guard, userinfo and introspection.

Refresh tokens are 256-bit random strings stored as SHA-256 digests. Each use rotates the
token; a token used twice (a replay, or two racing requests) revokes its whole family.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy import select, update

from authserver.platform.database import commit
from authserver.platform.errors import Unauthenticated
from authserver.platform.extensions import db, keyring, store
from authserver.platform.keys import ACCESS_TOKEN_ALG
from authserver.platform.models import (
    Account,
    AccountStatus,
    RefreshToken,
    User,
    UserStatus,
    utcnow,
)
from authserver.platform.security import digest, random_token

TOKEN_MAX = 4096  # characters; our tokens are well under 1 KiB
LEEWAY = 5  # seconds of clock skew accepted on exp/iat
PUBLISHABLE_PREFIXES = ("prt-live-", "prt-test-")


@dataclass(frozen=True)
class Principal:
    """Who a token speaks for: a user in an account, a guest of an account, or a client."""

    user_id: str | None
    account_id: str | None
    mode: str
    role: str
    amr: tuple[str, ...] = ()
    auth_time: int | None = None
    family_id: str | None = None  # refresh-token family this login began
    home_account_id: str | None = None  # the account a refresh token stays bound to
    token_generation: int = 0  # the user's generation when this login was checked

    def get_user_id(self) -> str | None:  # Authlib calls this
        return self.user_id


@dataclass(frozen=True)
class AccessClaims:
    """A validated access token."""

    sub: str
    client_id: str
    user_id: str | None
    account_id: str | None
    mode: str
    role: str
    scope: str
    jti: str
    iat: int
    exp: int
    claims: dict[str, Any]


def audience() -> str:
    return current_app.config["ISSUER"] + "/v1"


def user_principal(
    user: User, account: Account | None, role: str, amr: list[str] | tuple[str, ...]
) -> Principal:
    return Principal(
        user_id=user.id,
        account_id=account.id if account else None,
        mode=account.mode if account else "live",
        role=role,
        amr=tuple(amr),
        auth_time=int(time.time()),
        family_id=uuid.uuid4().hex,  # this login; its refresh tokens and access tokens share it
        home_account_id=account.id if account else None,
        token_generation=user.token_generation or 0,
    )


def sign_access_token(client_id: str, principal: Principal, scope: str, lifetime: int) -> str:
    """An RFC 9068 JWT for `principal`, issued to `client_id`, signed ES256."""
    iat = int(time.time())
    claims: dict[str, Any] = {
        "iss": current_app.config["ISSUER"],
        "sub": principal.user_id or client_id,
        "aud": audience(),
        "exp": iat + lifetime,
        "iat": iat,
        "jti": uuid.uuid4().hex,
        "client_id": client_id,
        "scope": " ".join(s for s in scope.split() if not s.startswith("aid:")),
        "aid": principal.account_id,
        "mode": principal.mode,
        "role": principal.role,
    }
    if principal.auth_time:
        claims["auth_time"] = principal.auth_time
    if principal.user_id:
        claims["gen"] = principal.token_generation
    if principal.family_id:
        claims["fid"] = principal.family_id
    key = keyring().signing_key(ACCESS_TOKEN_ALG)
    header = {"alg": ACCESS_TOKEN_ALG, "typ": "at+jwt", "kid": key.kid}
    return jwt.encode(header, claims, key, algorithms=[ACCESS_TOKEN_ALG])


def validate_access_token(value: object) -> AccessClaims:
    """Signature, type, issuer, audience, expiry and revocation. Raises Unauthenticated."""
    if not isinstance(value, str) or not 0 < len(value) <= TOKEN_MAX:
        raise Unauthenticated("The access token is malformed.", code="invalid_token")
    try:
        decoded = jwt.decode(value, keyring().verification_keys(), algorithms=[ACCESS_TOKEN_ALG])
    except (JoseError, ValueError, TypeError):
        raise Unauthenticated("The access token is invalid.", code="invalid_token") from None
    if decoded.header.get("typ") != "at+jwt":
        raise Unauthenticated("The token is not an access token.", code="invalid_token")
    c = dict(decoded.claims)
    now = time.time()
    try:
        iat, exp = int(c["iat"]), int(c["exp"])
        ok = (
            c["iss"] == current_app.config["ISSUER"]
            and c["aud"] == audience()
            and exp > now - LEEWAY
            and iat <= now + LEEWAY
            and isinstance(c["jti"], str)
            and isinstance(c["sub"], str)
        )
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise Unauthenticated(
            "The access token is expired or not for this server.", code="invalid_token"
        )
    fid = c.get("fid") if isinstance(c.get("fid"), str) else "-"
    if any(store().get_many(f"revoked-jti:{c['jti']}", f"revoked-fid:{fid}")):
        raise Unauthenticated("The access token was revoked.", code="invalid_token")
    user_id = c["sub"] if c["sub"] != c.get("client_id") else None  # else a client or guest
    _check_still_valid(user_id, c.get("aid"), c.get("gen"))
    return AccessClaims(
        sub=c["sub"],
        client_id=str(c.get("client_id", "")),
        user_id=user_id,
        account_id=c.get("aid"),
        mode=str(c.get("mode", "live")),
        role=str(c.get("role", "")),
        scope=str(c.get("scope", "")),
        jti=c["jti"],
        iat=iat,
        exp=exp,
        claims=c,
    )


def _check_still_valid(user_id: str | None, account_id: str | None, generation: object) -> None:
    if account_id is not None:
        status = db.session.scalar(select(Account.status).where(Account.id == account_id))
        if status != AccountStatus.ACTIVE:
            raise Unauthenticated("The account is no longer active.", code="invalid_token")
    if user_id is None:
        return
    user = db.session.get(User, user_id)
    if user is None or user.status != UserStatus.ACTIVE:
        raise Unauthenticated("The user is no longer active.", code="invalid_token")
    if generation != (user.token_generation or 0):
        raise Unauthenticated("The access token was revoked.", code="invalid_token")


def revoke_access_token(claims: AccessClaims) -> None:
    """Deny-list one access token until it would have expired anyway."""
    ttl = max(1, claims.exp - int(time.time()) + LEEWAY)
    store().put(f"revoked-jti:{claims.jti}", "1", ttl)


# --- refresh tokens ------------------------------------------------------------------


def new_refresh_token_value() -> str:
    """256 random bits; only its digest is stored."""
    return random_token(32)


def save_refresh_token(value: str, client_pk: str, principal: Principal, scope: str) -> None:
    """Store a new refresh token (digest only) in the principal's family."""
    config = current_app.config
    now = utcnow()
    auth_time = datetime.fromtimestamp(principal.auth_time or time.time(), now.tzinfo)
    expires = min(
        now + timedelta(seconds=config["REFRESH_TOKEN_IDLE_LIFETIME"]),
        auth_time + timedelta(seconds=config["REFRESH_TOKEN_ABSOLUTE_LIFETIME"]),
    )
    db.session.add(
        RefreshToken(
            token_hash=digest(value),
            family_id=principal.family_id or uuid.uuid4().hex,
            client_id=client_pk,
            user_id=principal.user_id,
            account_id=principal.home_account_id,
            scope=" ".join(s for s in scope.split() if not s.startswith("aid:")),
            amr=list(principal.amr),
            user_generation=principal.token_generation,
            auth_time=auth_time,
            issued_at=now,
            expires_at=expires,
        )
    )
    commit(conflict=False)


def refresh_token_expired(token: RefreshToken) -> bool:
    """Past its idle expiry, or past the absolute lifetime counted from the family's login
    (checked here too, so a shortened REFRESH_TOKEN_ABSOLUTE_LIFETIME applies at once)."""
    now = utcnow()
    lifetime = timedelta(seconds=current_app.config["REFRESH_TOKEN_ABSOLUTE_LIFETIME"])
    return token.expires_at <= now or token.auth_time + lifetime <= now


def refresh_token_holder(token: RefreshToken) -> tuple[User, Account | None] | None:
    """(user, account) a refresh token still speaks for, or None when it is revoked,
    expired, its user or account is no longer active, or the user's tokens were voided.

    The one validity rule for the refresh grant and introspection. Whether it was already
    rotated is left to the caller: the grant must still see a reused token to revoke its
    family.
    """
    if token.revoked_at is not None or refresh_token_expired(token) or token.user_id is None:
        return None
    user = db.session.get(User, token.user_id)
    if user is None or user.status != UserStatus.ACTIVE:
        return None
    if token.user_generation != (user.token_generation or 0):
        return None
    home = db.session.get(Account, token.account_id) if token.account_id else None
    if home is not None and home.status != AccountStatus.ACTIVE:
        return None
    return user, home


def find_refresh_token(value: object) -> RefreshToken | None:
    if not isinstance(value, str) or not 0 < len(value) <= TOKEN_MAX:
        return None
    return db.session.scalar(select(RefreshToken).where(RefreshToken.token_hash == digest(value)))


def consume_refresh_token(token: RefreshToken) -> bool:
    """Mark the token used, once. A second use (replay or race) revokes the family.

    On success the change is left in the session's transaction, so it commits together
    with the successor token (`save_refresh_token`): one commit per refresh, and a
    failure in between rolls back and leaves the token usable. The row lock the UPDATE
    takes makes a concurrent use of the same token wait and then find it used.
    """
    if token.revoked_at is not None:
        return False
    result = db.session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.id == token.id,
            RefreshToken.rotated_at.is_(None),
            RefreshToken.revoked_at.is_(None),
        )
        .values(rotated_at=utcnow())
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        return True
    db.session.rollback()
    current_app.logger.warning(
        "refresh token reused; revoking its family",
        extra={"fields": {"family": token.family_id, "user_id": token.user_id or "-"}},
    )
    revoke_family(token.family_id)
    return False


def revoke_family(family_id: str) -> None:
    """End a login: its refresh tokens now, its access tokens through a Redis deny-list
    entry that outlives the longest access token."""
    db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    commit(conflict=False)
    ttl = current_app.config["ACCESS_TOKEN_LIFETIME"] + LEEWAY
    store().put(f"revoked-fid:{family_id}", "1", ttl)


def revoke_user_tokens(user: User) -> None:
    """Void every token of the user: refresh tokens now, access tokens by generation.

    The increment happens in SQL, so two revocations at once both count. Part of the
    caller's transaction: the caller commits.
    """
    now = utcnow()
    db.session.execute(
        update(User)
        .where(User.id == user.id)
        .values(token_generation=User.token_generation + 1, tokens_valid_after=now)
        .execution_options(synchronize_session=False)
    )
    db.session.expire(user, ["token_generation", "tokens_valid_after"])
    db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def is_publishable(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PUBLISHABLE_PREFIXES)
