"""The authorization endpoint's policy and its codes: who may sign in through a client,
when to ask to log in or for consent (OIDC `prompt`, `max_age`, `id_token_hint`), and
authorization codes in Redis.

Codes are 256-bit random strings stored under their SHA-256 digest for at most
AUTHORIZATION_CODE_LIFETIME (<= 600 s). Redeeming takes the code with GETDEL, so of two
concurrent exchanges exactly one wins, and records the spent code in the database
(`SpentAuthorizationCode`, whose primary key also refuses a code that a restored or
failed-over Redis still holds) with the refresh-token family the exchange began, for as
long as a token from it can live: a later valid replay (right client, right PKCE verifier)
revokes that family, which ends the refresh tokens and, through the family deny-list,
the access tokens issued from the code (RFC 6749 4.1.2). A replay that fails those
checks revokes nothing, so a code seen in a log cannot be used to log a user out.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

from flask import current_app
from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from authserver.identity import consents, tokens, users
from authserver.identity.browser_login import BrowserLogin
from authserver.platform.database import commit
from authserver.platform.extensions import db, store
from authserver.platform.keys import ID_TOKEN_ALG, keyring
from authserver.platform.models import (
    Account,
    AccountStatus,
    SpentAuthorizationCode,
    User,
    UserStatus,
    utcnow,
)
from authserver.platform.security import digest, random_token

CODE_MAX_LIFETIME = 600  # seconds; OAuth 2.1 4.1.2 recommends at most 10 minutes
# How long a login made for a request that demanded one (prompt=login, max_age) answers
# that request: the login, a consent page, and a little more.
REAUTH_WINDOW = 600
# NIST SP 800-63 assurance levels as acr values (as login.gov uses them).
ACR_PASSWORD = "http://idmanagement.gov/ns/assurance/aal/1"  # noqa: S105 - a URI, not a secret
ACR_MFA = "http://idmanagement.gov/ns/assurance/aal/2"
ACR_VALUES = (ACR_PASSWORD, ACR_MFA)


class AuthorizationError(Exception):
    """An OAuth/OIDC error for the client's redirect URI (`code` is the RFC error code)."""

    def __init__(self, code: str, description: str):
        super().__init__(description)
        self.code = code
        self.description = description


class Step(Enum):
    LOGIN = "login"  # send the browser to the login page, then back here
    CONSENT = "consent"  # show the consent page
    ISSUE = "issue"  # issue a code and send the browser back to the client


@dataclass(frozen=True)
class Client:
    """What the policy needs to know about the client (a ClientInfo has all of it)."""

    pk: str
    client_id: str
    account_id: str
    skip_consent: bool


@dataclass(frozen=True)
class Request:
    """A validated authorization request, as the policy sees it."""

    scope: str  # granted scope; offline_access only when prompt has consent
    prompt: frozenset[str]
    max_age: int | None
    hinted_subject: str | None  # `sub` of a valid id_token_hint
    fingerprint: str | None = None  # browser_login.fingerprint of the request's URL


@dataclass(frozen=True)
class Member:
    """The signed-in person as a user of the client's account."""

    user: User
    account: Account
    role: str
    login: BrowserLogin


def member_for(client: Client, login: BrowserLogin | None) -> Member | None:
    """The browser login as a user of the client's account (its own users, or global
    users who are its members), or None when it is not one. A login to the paired live
    or test account is not: a live app must never take a test identity for a live one,
    nor a test app reach a live user (issue 14)."""
    if login is None:
        return None
    account_id = login.account_id or client.account_id
    if account_id != client.account_id:
        return None  # a login for another account: that person must log in here again
    user = db.session.get(User, login.user_id)
    account = db.session.get(Account, account_id)
    if user is None or account is None:
        return None
    if login.account_id is None and not user.is_global:
        return None
    role = users.role_in(user, account)
    return Member(user, account, role, login) if role is not None else None


def decide(
    client: Client,
    request: Request,
    login: BrowserLogin | None,
    now: int,
    *,
    consent_given: bool = False,
) -> tuple[Step, Member | None]:
    """What the endpoint does next (OIDC Core 3.1.2.1-3.1.2.4). Raises AuthorizationError
    (login_required, consent_required) when `prompt=none` forbids asking.

    prompt=login, max_age=0 and an exceeded max_age are met only by a login made for this
    request (its fingerprint) within REAUTH_WINDOW: an older login, or one made for
    another request, is sent to log in again."""
    member = member_for(client, login)
    silent = "none" in request.prompt
    fresh_needed = "login" in request.prompt or request.max_age == 0
    stale = (
        member is not None
        and request.max_age is not None
        and now - member.login.auth_time > request.max_age
    )
    other_person = (
        member is not None
        and request.hinted_subject is not None
        and request.hinted_subject != member.user.id
    )
    # A login made for this very request, minutes ago, is the new login it asked for.
    made_for_it = (
        member is not None
        and request.fingerprint is not None
        and member.login.made_for == request.fingerprint
        and 0 <= now - member.login.auth_time <= REAUTH_WINDOW
    )
    if member is None or ((fresh_needed or stale) and not made_for_it) or other_person:
        if silent:
            raise AuthorizationError("login_required", "The user must log in.")
        return Step.LOGIN, None
    if consent_given:
        return Step.ISSUE, member
    remembered = client.skip_consent or consents.covers(member.user.id, client.pk, request.scope)
    if "consent" in request.prompt or not remembered:
        if silent:
            raise AuthorizationError("consent_required", "The user must consent first.")
        return Step.CONSENT, member
    return Step.ISSUE, member


def read_id_token_hint(hint: str) -> dict[str, Any]:
    """The claims of an ID token we issued (signature and `iss` checked; an expired one
    is fine, as OIDC Core 3.1.2.1 and RP-Initiated Logout 2 allow). Raises
    AuthorizationError (invalid_request) otherwise."""
    try:
        token = jwt.decode(hint, keyring().verification_keys(), algorithms=[ID_TOKEN_ALG])
    except (JoseError, ValueError, TypeError):
        raise AuthorizationError("invalid_request", "The id_token_hint is invalid.") from None
    claims = dict(token.claims)
    if claims.get("iss") != current_app.config["ISSUER"] or not isinstance(claims.get("sub"), str):
        raise AuthorizationError("invalid_request", "The id_token_hint is invalid.")
    return claims


def audiences(claims: dict[str, Any]) -> list[str]:
    """The `aud` of a token as a list (a single string is allowed by RFC 7519)."""
    aud = claims.get("aud")
    items = aud if isinstance(aud, list) else [aud]
    return [a for a in items if isinstance(a, str)]


def acr_for(amr: tuple[str, ...] | list[str]) -> str:
    return ACR_MFA if "mfa" in amr else ACR_PASSWORD


# --- codes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredCode:
    """An authorization code's data (what Authlib's code grant asks of a code object)."""

    client_id: str
    redirect_uri: str | None  # as sent in the request; None when it was left out
    scope: str
    user_id: str
    account_id: str
    role: str
    amr: list[str]
    auth_time: int
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    family_id: str
    token_generation: int
    spent: bool = False  # a replay: the code was redeemed before

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str:
        return acr_for(self.amr)

    def get_amr(self) -> list[str]:
        return list(self.amr)


def _code_key(code: str) -> str:
    return f"authz-code:{digest(code)}"


def _nonce_key(client_id: str, nonce: str) -> str:
    return f"authz-nonce:{client_id}:{digest(nonce)}"


def code_lifetime() -> int:
    return max(1, min(int(current_app.config["AUTHORIZATION_CODE_LIFETIME"]), CODE_MAX_LIFETIME))


def nonce_seen(client_id: str, nonce: str) -> bool:
    """Whether a code was already issued with this nonce for this client (a pure check:
    the nonce is recorded only when a code is issued)."""
    return store().get(_nonce_key(client_id, nonce)) is not None


def issue_code(
    client: Client,
    member: Member,
    *,
    redirect_uri: str | None,
    scope: str,
    nonce: str | None,
    code_challenge: str,
) -> str:
    """Store a new code for the signed-in member; returns the code for the redirect."""
    code = random_token(32)
    data = StoredCode(
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        scope=scope,
        user_id=member.user.id,
        account_id=member.account.id,
        role=member.role,
        amr=list(member.login.amr),
        auth_time=member.login.auth_time,
        nonce=nonce,
        code_challenge=code_challenge,
        code_challenge_method="S256",
        family_id=uuid.uuid4().hex,
        token_generation=member.user.token_generation or 0,
    )
    lifetime = code_lifetime()
    if nonce:
        ttl = lifetime + int(current_app.config["ID_TOKEN_LIFETIME"])
        store().put(_nonce_key(client.client_id, nonce), "1", ttl)
    store().put(_code_key(code), json.dumps(asdict(data)), lifetime)
    return code


def find_code(code: object, client_id: str) -> StoredCode | None:
    """The live code (Redis), or the record of a redeemed one (`spent`, database), if
    issued to this client; None otherwise (unknown, expired, another client's). Consumes
    nothing."""
    if not isinstance(code, str) or not 0 < len(code) <= 128:
        return None
    raw = store().get(_code_key(code))
    if raw is not None:
        found = StoredCode(**json.loads(raw))
    else:
        spent = db.session.get(SpentAuthorizationCode, digest(code))
        if spent is None or spent.expires_at <= utcnow():
            return None
        found = StoredCode(**{**spent.data, "spent": True})
    return found if found.client_id == client_id else None


def redeem_code(code: str, found: StoredCode) -> bool:
    """Consume the code once (GETDEL) after the exchange was checked, and record it spent.

    False when it was already consumed (a replay or a concurrent exchange): a replay of a
    redeemed code revokes the tokens issued from it."""
    if not found.spent and store().take(_code_key(code)) is None:
        return False
    if not found.spent:
        config = current_app.config
        # Kept as long as a token it could revoke (the refresh token's absolute lifetime
        # when one was issued, else the access token's) and as a stale copy of the code
        # could still turn up.
        ttl = max(
            code_lifetime(),
            int(
                config["REFRESH_TOKEN_ABSOLUTE_LIFETIME"]
                if "offline_access" in found.scope.split()
                else config["ACCESS_TOKEN_LIFETIME"]
            ),
        )
        now = utcnow()
        # Expired records go on the way (an index range, nearly always empty).
        db.session.execute(
            delete(SpentAuthorizationCode).where(SpentAuthorizationCode.expires_at <= now)
        )
        db.session.add(
            SpentAuthorizationCode(
                code_hash=digest(code),
                data={**asdict(found), "spent": False},
                expires_at=now + timedelta(seconds=ttl + 60),
            )
        )
        try:
            commit(conflict=False)
            return True
        except IntegrityError:
            pass  # spent before: a Redis that lost its GETDEL gave the code back
    current_app.logger.warning(
        "authorization code replayed; revoking its tokens",
        extra={"fields": {"family": found.family_id, "user_id": found.user_id}},
    )
    tokens.revoke_family(found.family_id, found.user_id)
    return False


def principal_for(found: StoredCode) -> tokens.Principal | None:
    """Who the tokens speak for, if the user and membership are still good."""
    user = db.session.get(User, found.user_id)
    account = db.session.get(Account, found.account_id)
    if (
        user is None
        or user.status != UserStatus.ACTIVE
        or account is None
        or account.status != AccountStatus.ACTIVE
    ):
        return None
    if (user.token_generation or 0) != found.token_generation:
        return None  # password changed / signed out everywhere since the login
    role = users.role_in(user, account)
    if role is None:
        return None
    return tokens.Principal(
        user_id=user.id,
        account_id=account.id,
        mode=account.mode,
        role=role,
        amr=tuple(found.amr),
        auth_time=found.auth_time,
        family_id=found.family_id,
        home_account_id=account.id,
        token_generation=found.token_generation,
    )
