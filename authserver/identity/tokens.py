"""Token rules: JWT access tokens (RFC 9068), opaque rotating refresh tokens, and their checks.

Access tokens are self-contained ES256 JWTs, so issuing one writes nothing. They are still
recalled on time: a token is refused when it, its login (family) or its app for its user
was revoked (a `revoked_tokens` row in the database, kept until the token expires), when
its user's `token_generation` moved on since it was issued (password change, reset,
disable, "sign out everywhere", a second-factor change), or when the user, account or
client is no longer active (or the client ended its tokens since). `validate_access_token`
is the one check behind the /v1 bearer guard, userinfo and introspection. Every
revocation is durable and written in one database transaction; Redis holds none of it,
so a flushed or unreachable Redis undoes nothing. The check reads its rows through
`token_cache.standing` (one Redis round trip for epoch-tagged copies, else PostgreSQL);
every function here that changes what it reads (`_deny`, `revoke_user_tokens`, ...) marks
the subject, and the copy is void once the change commits: new write paths should call
these functions (ORM changes of the watched columns are marked automatically, and a bulk
UPDATE that names no subject voids every copy).

Refresh tokens are 256-bit random strings stored as SHA-256 digests. Each use rotates the
token; a token used twice (a replay, or two racing requests) revokes its whole family,
except one retry of a just-rotated token (`_retry_within_grace`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy import delete, or_, select, update

from authserver.identity import apis, token_cache
from authserver.platform.database import commit
from authserver.platform.errors import Unauthenticated
from authserver.platform.extensions import db
from authserver.platform.keys import ACCESS_TOKEN_ALG, keyring
from authserver.platform.models import (
    Account,
    AccountStatus,
    OAuthClient,
    RefreshToken,
    RevokedToken,
    User,
    UserStatus,
    utcnow,
)
from authserver.platform.security import digest, random_token

TOKEN_MAX = 4096  # characters; our tokens are well under 1 KiB
LEEWAY = 5  # seconds of clock skew accepted on exp/iat
PUBLISHABLE_PREFIXES = ("prt-live-", "prt-test-")
# The client_id of a guest token made from a publishable token without a client: no row.
PUBLISHABLE_CLIENT_ID = "publishable"


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
    actor_id: str | None = None  # a support login: the specialist acting (RFC 8693 `act`)

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
    username: str | None = None  # the user's, as the check read it (introspection says it)


@dataclass(frozen=True)
class Survivor:
    """The login that makes a change which ends all the others: it keeps its tokens."""

    family_id: str | None
    generation: int | None

    @classmethod
    def of(cls, claims: AccessClaims) -> Survivor:
        fid, gen = claims.claims.get("fid"), claims.claims.get("gen")
        return cls(fid if isinstance(fid, str) else None, gen if isinstance(gen, int) else None)


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


def sign_access_token(
    client_id: str, principal: Principal, scope: str, lifetime: int, aud: str | None = None
) -> str:
    """An RFC 9068 JWT for `principal`, issued to `client_id`, signed ES256; `aud` is the
    account's /v1 unless it names one of the account's own APIs (identity.apis)."""
    iat = int(time.time())
    claims: dict[str, Any] = {
        "iss": current_app.config["ISSUER"],
        "sub": principal.user_id or client_id,
        "aud": aud or audience(),
        "exp": iat + lifetime,
        "iat": iat,
        "jti": uuid.uuid4().hex,
        "client_id": client_id,
        "scope": " ".join(s for s in scope.split() if not s.startswith("aid:")),
        "aid": principal.account_id,
        "mode": principal.mode,
    }
    if principal.role:  # every /v1 token has one; an API token none (no /v1 role)
        claims["role"] = principal.role
    if principal.auth_time:
        claims["auth_time"] = principal.auth_time
    if principal.user_id:
        claims["gen"] = principal.token_generation
    if principal.family_id:
        claims["fid"] = principal.family_id
    if principal.actor_id:
        claims["act"] = {"sub": principal.actor_id}
    key = keyring().signing_key(ACCESS_TOKEN_ALG)
    header = {"alg": ACCESS_TOKEN_ALG, "typ": "at+jwt", "kid": key.kid}
    return jwt.encode(header, claims, key, algorithms=[ACCESS_TOKEN_ALG])


def validate_access_token(value: object) -> AccessClaims:
    """Signature, type, issuer, audience (the account's /v1), expiry and revocation.
    Raises Unauthenticated. A token for one of the account's own APIs is refused here."""
    return _validate(value, lambda aud, claims: aud == audience())


def validate_api_token(value: object) -> AccessClaims:
    """The same checks for a token of one of the account's own APIs (introspection and
    revocation): its `aud` must still name an API of the token's account."""
    return _validate(
        value, lambda aud, claims: aud != audience() and apis.is_api_of(claims.get("aid"), aud)
    )


def _validate(value: object, audience_ok: Callable[[Any, dict[str, Any]], bool]) -> AccessClaims:
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
            and exp > now - LEEWAY
            and iat <= now + LEEWAY
            and isinstance(c["jti"], str)
            and isinstance(c["sub"], str)
            and audience_ok(c["aud"], c)
        )
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise Unauthenticated(
            "The access token is expired or not for this server.", code="invalid_token"
        )
    user_id = c["sub"] if c["sub"] != c.get("client_id") else None  # else a client or guest
    user = _check_standing(c, user_id, c.get("aid"), iat)
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
        username=user.get("un") if user else None,
    )


def _check_standing(
    c: dict[str, Any], user_id: str | None, account_id: str | None, iat: int
) -> token_cache.Snapshot | None:
    """The client, account and user still active, the token issued after the client last
    ended its tokens, the user's generation current, and nothing revoked.

    The rows come from `token_cache.standing` (one Redis round trip when its copies are
    valid, else PostgreSQL), never from the per-process client cache: a disabled client's
    tokens stop on the next request on every instance. The deny-list is consulted only
    while the user (or, for tokens without a user, the account) has a revocation that may
    still match a live token (`token_revocations_until`): the snapshot carries those rows.
    Returns the user's snapshot (None for a token without a user).
    """
    client_id = str(c.get("client_id", ""))
    subjects: list[token_cache.Subject] = []
    if client_id != PUBLISHABLE_CLIENT_ID:  # a guest token made without a client: no row
        subjects.append(token_cache.client_subject(client_id))
    if account_id is not None:
        subjects.append(token_cache.account_subject(str(account_id)))
    if user_id is not None:
        subjects.append(token_cache.user_subject(user_id))
    found = token_cache.standing(subjects)
    if client_id != PUBLISHABLE_CLIENT_ID:
        client = found[token_cache.client_subject(client_id)]
        if not client["ok"]:
            raise Unauthenticated("The token's client is no longer active.", code="invalid_token")
        # The same second counts as before: iat has whole seconds only.
        if client["tva"] is not None and iat <= int(client["tva"]):
            raise Unauthenticated("The access token was revoked.", code="invalid_token")
    gate: float | None = None
    rows: list[list[Any]] | None = None
    user: token_cache.Snapshot | None = None
    if account_id is not None:
        account = found[token_cache.account_subject(str(account_id))]
        if not account["ok"]:
            raise Unauthenticated("The account is no longer active.", code="invalid_token")
        gate, rows = account["gate"], account["rv"]
    fid = c.get("fid") if isinstance(c.get("fid"), str) else None
    if user_id is not None:
        user = found[token_cache.user_subject(user_id)]
        if not user["ok"]:
            raise Unauthenticated("The user is no longer active.", code="invalid_token")
        generation = c.get("gen")
        kept = fid is not None and fid == user["kf"]
        if generation != user["g"] and not (kept and generation == user["kg"]):
            raise Unauthenticated("The access token was revoked.", code="invalid_token")
        gate, rows = user["gate"], user["rv"]
    now = time.time()
    gated = user_id is not None or account_id is not None
    if (gated and gate is None) or (gate is not None and gate <= now):
        return user
    keys = _revocation_keys(str(c["jti"]), fid, user_id, client_id)
    if rows is None or not gated:  # too many rows to carry, or a token without a gate
        revoked = _is_revoked(keys, iat)
    else:
        revoked = any(k in keys and e > now and _covers(k, r, iat) for k, r, e in rows)
    if revoked:
        raise Unauthenticated("The access token was revoked.", code="invalid_token")
    return user


def _revocation_keys(jti: str, fid: str | None, user_id: str | None, client_id: str) -> list[str]:
    keys = [f"jti:{jti}"]
    if fid:
        keys.append(f"family:{fid}")
    if user_id:
        keys.append(f"client:{user_id}:{client_id}")
    return keys


def _covers(key: str, revoked_at: float, iat: int) -> bool:
    """An app's revocation covers the tokens issued up to it (the second included): the
    user may allow the app again and get new tokens. Any other row covers its tokens."""
    return not key.startswith("client:") or iat <= int(revoked_at)


def _is_revoked(keys: list[str], iat: int) -> bool:
    rows = db.session.execute(
        select(RevokedToken.key, RevokedToken.revoked_at).where(
            RevokedToken.key.in_(keys), RevokedToken.expires_at > utcnow()
        )
    )
    return any(_covers(key, revoked_at.timestamp(), iat) for key, revoked_at in rows)


def _deny(key: str, expires_at: datetime, user_id: str | None, account_id: str | None) -> None:
    """Add a deny-list row and open the gate that makes validation read it (same
    transaction: the caller commits). Rows past their expiry are dropped on the way."""
    now = utcnow()
    db.session.execute(delete(RevokedToken).where(RevokedToken.expires_at <= now))
    subject = token_cache.deny_subject(user_id, account_id)
    db.session.add(RevokedToken(key=key, subject=subject, revoked_at=now, expires_at=expires_at))
    if user_id is not None:
        model: type[User] | type[Account] = User
        target = user_id
        token_cache.changed(db.session(), token_cache.user_subject(user_id))
    elif account_id is not None:
        model, target = Account, account_id
        token_cache.changed(db.session(), token_cache.account_subject(account_id))
    else:
        return  # such a token has no gate: validation always reads the table for it
    db.session.execute(
        update(model)
        .where(
            model.id == target,
            or_(
                model.token_revocations_until.is_(None),
                model.token_revocations_until < expires_at,
            ),
        )
        .values(token_revocations_until=expires_at)
        .execution_options(synchronize_session=False, token_cache_marked=True)
    )


def _access_horizon() -> datetime:
    """When every access token issued until now has expired."""
    seconds = int(current_app.config["ACCESS_TOKEN_LIFETIME"]) + LEEWAY
    return utcnow() + timedelta(seconds=seconds)


def revoke_access_token(claims: AccessClaims) -> None:
    """Deny-list one access token until it would have expired anyway (commits)."""
    expires = datetime.fromtimestamp(claims.exp + LEEWAY, utcnow().tzinfo)
    _deny(f"jti:{claims.jti}", expires, claims.user_id, claims.account_id)
    commit(conflict=False)


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
    # The user, the home account and the client's status in one statement (the refresh
    # grant's hot path: three lookups by key were three round trips).
    row = db.session.execute(
        select(User, Account, OAuthClient.status, OAuthClient.tokens_valid_after)
        .select_from(User)
        .join(OAuthClient, OAuthClient.id == token.client_id)
        .outerjoin(Account, Account.id == token.account_id)
        .where(User.id == token.user_id)
    ).first()
    if row is None:  # no such user or client
        return None
    user, home, client_status, client_tokens_valid_after = row
    if client_status != "active":
        return None
    if client_tokens_valid_after is not None and token.issued_at <= client_tokens_valid_after:
        return None
    if user.status != UserStatus.ACTIVE:
        return None
    if token.user_generation != (user.token_generation or 0):
        return None
    if home is not None and home.status != AccountStatus.ACTIVE:
        return None
    return user, home


def find_refresh_token(value: object) -> RefreshToken | None:
    if not isinstance(value, str) or not 0 < len(value) <= TOKEN_MAX:
        return None
    return db.session.scalar(select(RefreshToken).where(RefreshToken.token_hash == digest(value)))


def claim_refresh_token(value: object) -> tuple[RefreshToken | None, bool]:
    """The stored token `value` names (None if unknown), and whether this call marked it
    used: one conditional UPDATE ... RETURNING for a token that is neither used nor
    revoked (the refresh grant's usual case); a SELECT only for any other.

    The mark is left in the session's transaction, so it commits together with the
    successor token (`save_refresh_token`): one commit per refresh, and a refusal or a
    failure before it rolls back and leaves the token usable. The row lock the UPDATE
    takes makes a concurrent use of the same token wait and then find it used. A token
    not claimed goes to `refuse_reuse`, which tells a retry from a reuse.
    """
    if not isinstance(value, str) or not 0 < len(value) <= TOKEN_MAX:
        return None, False
    claimed = db.session.scalars(
        update(RefreshToken)
        .where(
            RefreshToken.token_hash == digest(value),
            RefreshToken.rotated_at.is_(None),
            RefreshToken.revoked_at.is_(None),
        )
        .values(rotated_at=utcnow())
        .returning(RefreshToken),
        execution_options={"synchronize_session": False, "populate_existing": True},
    ).first()
    if claimed is not None:
        return claimed, True
    return find_refresh_token(value), False


def refuse_reuse(token: RefreshToken, *, retry: bool = True) -> bool:
    """A token presented again after it was used (or revoked): True for the one retry
    `_retry_within_grace` allows when `retry`; otherwise its family is revoked (commits)
    and False. A revoked token is refused without more."""
    if token.revoked_at is not None:
        return False
    if retry and _retry_within_grace(token):
        return True
    current_app.logger.warning(
        "refresh token reused; revoking its family",
        extra={"fields": {"family": token.family_id, "user_id": token.user_id or "-"}},
    )
    revoke_family(token.family_id, token.user_id)
    return False


def _retry_within_grace(token: RefreshToken) -> bool:
    """A client's retry of a refresh whose answer it lost: allowed once.

    The rule (RFC 9700 4.14.2 leaves the detection policy to the server): the token was
    rotated at most REFRESH_TOKEN_RETRY_GRACE seconds ago, exactly one token was issued
    from it since, and that successor is unused. The successor is then superseded (marked
    used, so whoever presents it later triggers reuse detection and ends the login) and
    the caller issues a fresh pair, in the same transaction. The client binding was
    checked by the grant. A thief replaying a stolen token within the grace therefore
    gets tokens only until the rightful client's next refresh, which presents the
    superseded successor and ends the whole login, the thief's tokens included; a replay
    after the successor was used, a second retry, or a superseded token never get one.
    """
    grace = int(current_app.config["REFRESH_TOKEN_RETRY_GRACE"])
    rotated = db.session.get(RefreshToken, token.id, populate_existing=True)
    if grace <= 0 or rotated is None or rotated.rotated_at is None:
        return False
    if rotated.revoked_at is not None or rotated.superseded_at is not None:
        return False
    now = utcnow()
    if now - rotated.rotated_at > timedelta(seconds=grace):
        return False
    later = db.session.scalars(
        select(RefreshToken).where(
            RefreshToken.family_id == rotated.family_id,
            RefreshToken.id != rotated.id,
            RefreshToken.issued_at >= rotated.rotated_at,
        )
    ).all()
    if len(later) != 1:
        return False
    result = db.session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.id == later[0].id,
            RefreshToken.rotated_at.is_(None),
            RefreshToken.revoked_at.is_(None),
        )
        .values(rotated_at=now, superseded_at=now)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        db.session.rollback()
        return False
    current_app.logger.info(
        "refresh retried within the grace; its unused successor is superseded",
        extra={"fields": {"family": rotated.family_id, "user_id": rotated.user_id or "-"}},
    )
    return True


def revoke_family(family_id: str, user_id: str | None = None) -> None:
    """End a login: its refresh tokens and its access tokens (a deny-list row that
    outlives the longest access token), in one transaction (commits)."""
    if user_id is None:
        user_id = db.session.scalar(
            select(RefreshToken.user_id).where(RefreshToken.family_id == family_id).limit(1)
        )
    db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    _deny(f"family:{family_id}", _access_horizon(), user_id, None)
    commit(conflict=False)


def revoke_client_tokens(user_id: str, client_pk: str) -> None:
    """End every token the user gave one app: its refresh tokens, and its access tokens
    issued until now. Part of the caller's transaction: the caller commits."""
    client_id = db.session.scalar(select(OAuthClient.client_id).where(OAuthClient.id == client_pk))
    if client_id is None:
        return
    db.session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.user_id == user_id,
            RefreshToken.client_id == client_pk,
            RefreshToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    _deny(f"client:{user_id}:{client_id}", _access_horizon(), user_id, None)


def revoke_user_tokens(user: User, keep: Survivor | None = None) -> None:
    """Void every token of the user: refresh tokens now, access tokens by generation.

    `keep` names the login that made the change (a second-factor change made with a
    token): its refresh tokens move to the new generation and its access tokens stay
    valid (the user row remembers the family and the generation they carry). Any other
    revocation forgets a kept login. Browser logins end through the generation too; the
    pages re-stamp the browser that made the change (browser_login.keep_login).

    The increment happens in SQL, so two revocations at once both count. Part of the
    caller's transaction: the caller commits.
    """
    now = utcnow()
    family = keep.family_id if keep is not None and keep.generation is not None else None
    token_cache.changed(db.session(), token_cache.user_subject(user.id))
    db.session.execute(
        update(User)
        .where(User.id == user.id)
        .values(
            token_generation=User.token_generation + 1,
            tokens_valid_after=now,
            kept_family_id=family,
            kept_generation=keep.generation if family is not None and keep else None,
        )
        .execution_options(synchronize_session=False, token_cache_marked=True)
    )
    db.session.expire(
        user, ["token_generation", "tokens_valid_after", "kept_family_id", "kept_generation"]
    )
    others = update(RefreshToken).where(
        RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None)
    )
    if family is not None:
        others = others.where(RefreshToken.family_id != family)
        db.session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user.id, RefreshToken.family_id == family)
            .values(user_generation=user.token_generation)
        )
    db.session.execute(others.values(revoked_at=now))


def is_publishable(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PUBLISHABLE_PREFIXES)
