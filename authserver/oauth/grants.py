"""The token endpoint's grants, each an Authlib grant class.

- PasswordGrant: username + password (+ otp / recovery_code) through `login.password_login`,
  the same policy as the hosted login page. `aid:<account>` in `scope` picks the account.
  The answer carries a `device_token` the app sends back at its next login (known device).
- RefreshGrant: rotates user refresh tokens (reuse revokes the family); a publishable token
  (`prt-live-...` / `prt-test-...`) gives a guest token for its account, with no client or
  one of that account; `aid:<test account>` with a live user's token gives a test-mode token.
- ClientCredentials: a token for the client's own account with the client's role; or,
  with `resource=<API identifier>` (RFC 8707) or scopes of one of the account's own APIs,
  a token for that API (`aud` = its identifier, only scopes granted to the client, the
  API's lifetime). A token is for /v1 or for one API, never both.
- SupportLogin: RFC 8693 token exchange, a support specialist's token for a user of the
  same account who allows it (`identity.support`): short, no refresh token, `act` claim.

A client logs people into its own account only (a live client also global users); a test
account's client never reaches the live account (issue 14).

Domain errors are translated here into OAuth errors; nothing here touches the database or
Redis directly except through the domain modules.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.hooks import hooked
from flask import current_app
from flask import request as flask_request
from sqlalchemy import select

from authserver.identity import apis, devices, login, support, tokens, users
from authserver.identity.login import PASSWORD_MAX, USERNAME_MAX, LoginAttempt, password_login
from authserver.platform import captcha
from authserver.platform.errors import (
    CaptchaFailed,
    CaptchaRequired,
    CaptchaUnavailable,
    EmailNotVerified,
    Forbidden,
    InvalidCredentials,
    InvalidOtp,
    NotFound,
    OtpRequired,
    ServiceUnavailable,
    Throttled,
    Unauthenticated,
)
from authserver.platform.extensions import db
from authserver.platform.models import Account, AccountStatus, RefreshToken, User

from .clients import ClientInfo
from .errors import (
    CaptchaRequiredError,
    InvalidCaptchaError,
    InvalidOtpError,
    InvalidTargetError,
    OtpRequiredError,
    TemporarilyUnavailableError,
    ThrottledError,
)

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
BAD_CREDENTIALS = "Username and password does not match."
PUBLIC_AND_CONFIDENTIAL = ["client_secret_basic", "client_secret_post", "none"]


def split_scope(client: ClientInfo, scope: str | None) -> tuple[str | None, str]:
    """(aid, scope) after checking the client may ask for every scope. Raises invalid_scope."""
    if scope is None or not scope.strip():
        return None, ""
    if len(scope) > 2048:
        raise InvalidScopeError("The scope is too long.")
    allowed = client.get_allowed_scope(scope)
    if allowed is None:
        raise InvalidScopeError("The client may not ask for this scope.")
    aids = [s[4:] for s in allowed.split() if s.startswith("aid:")]
    if len(aids) > 1 or (aids and not UUID_RE.match(aids[0])):
        raise InvalidScopeError("Malformed aid scope: give one aid:<account id>.")
    return (aids[0] if aids else None), allowed


def api_target(client: ClientInfo, form: Any, scope: str | None) -> apis.Target | None:
    """The account's own API a token request is for, or None for its /v1.

    `resource` (RFC 8707) names it; without one, scopes that are no /v1 scope of the
    client name the one API the client was granted them for. The token then carries only
    that API's scopes: an `aid:` or a /v1 scope among them is invalid_scope, not dropped.
    """
    resource = form.get("resource")
    requested = (scope or "").split()
    if len(scope or "") > 2048:
        raise InvalidScopeError("The scope is too long.")
    foreign = [s for s in requested if s not in client.scopes and not s.startswith("aid:")]
    if resource in (None, "") and not foreign:
        return None
    if resource is not None and not 0 < len(resource) <= apis.IDENTIFIER_MAX:
        raise InvalidTargetError("The resource is no API of this account.")
    if any(s.startswith("aid:") for s in requested):
        raise InvalidScopeError("An API's token is for the client's own account only.")
    try:
        return apis.resolve_target(
            client.account_id,
            {k: list(v) for k, v in client.api_grants},
            resource or None,
            requested,
        )
    except apis.UnknownTarget:
        raise InvalidTargetError(
            "The resource is no API of this account that the client may get tokens for."
        ) from None
    except apis.ScopeNotGranted:
        raise InvalidScopeError("The client was not granted these scopes of the API.") from None


def refuse_resource(form: Any) -> None:
    """The grants that give no API tokens yet refuse `resource` (RFC 8707 2: a target the
    server cannot issue for) rather than answer a /v1 token the client did not ask for."""
    if form.get("resource"):
        raise InvalidTargetError("'resource' is taken with client_credentials only.")


def api_token(client: ClientInfo, target: apis.Target) -> dict[str, Any]:
    """A client's own token for one of its account's APIs: no user, no /v1 role."""
    principal = tokens.Principal(
        user_id=None, account_id=client.account_id, mode=client.account_mode, role=""
    )
    value = tokens.sign_access_token(
        client.client_id, principal, target.scope, target.lifetime, aud=target.audience
    )
    return {
        "token_type": "Bearer",
        "access_token": value,
        "expires_in": target.lifetime,
        "scope": target.scope,
    }


@contextmanager
def domain_errors() -> Iterator[None]:
    """Domain errors from the login policy -> OAuth errors."""
    try:
        yield
    except InvalidCredentials:
        raise InvalidGrantError(BAD_CREDENTIALS) from None
    except OtpRequired as exc:
        url = None
        if exc.method == login.PASSKEY_METHOD:  # the hosted pages run the passkey step
            url = current_app.config["ISSUER"] + "/oauth/authorize"
        raise OtpRequiredError(exc.method, exc.destination, exc.resend_after, url) from None
    except InvalidOtp:
        raise InvalidOtpError("The one-time password is invalid or expired.") from None
    except EmailNotVerified as exc:
        raise InvalidGrantError(exc.detail) from None
    except CaptchaRequired:
        raise CaptchaRequiredError(
            "Too many failed attempts: send the request again with captcha_token."
        ) from None
    except CaptchaFailed:
        raise InvalidCaptchaError("The CAPTCHA token was not accepted.") from None
    except Throttled as exc:
        raise ThrottledError(exc.retry_after) from None
    except CaptchaUnavailable:
        raise TemporarilyUnavailableError(
            "The CAPTCHA verifier is not reachable. Try again later."
        ) from None
    except ServiceUnavailable:
        raise TemporarilyUnavailableError() from None


def _field(form: Any, name: str, max_len: int, required: bool = True) -> str | None:
    value = form.get(name)
    if value is None or value == "":
        if required:
            raise InvalidRequestError(f"Missing '{name}' in request.")
        return None
    if len(value) > max_len:
        raise InvalidRequestError(f"'{name}' is too long.")
    return str(value)


class PasswordGrant(grants.ResourceOwnerPasswordCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = PUBLIC_AND_CONFIDENTIAL

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("The client may not use the password grant.")
        form = self.request.form
        refuse_resource(form)
        username = _field(form, "username", USERNAME_MAX)
        password = _field(form, "password", PASSWORD_MAX)
        otp = _field(form, "otp", 16, required=False)
        recovery_code = _field(form, "recovery_code", 64, required=False)
        device_token = _field(form, "device_token", devices.TOKEN_MAX, required=False)
        captcha_token = _field(form, "captcha_token", captcha.TOKEN_MAX, required=False)
        aid, scope = split_scope(client, self.request.payload.scope)
        attempt = LoginAttempt(
            username=username or "",
            password=password or "",
            account_id=aid,
            otp=otp,
            recovery_code=recovery_code,
            ip=flask_request.remote_addr,
            user_agent=self.request.headers.get("User-Agent"),
            client_id=client.client_id,
            allowed_account_ids=frozenset([client.account_id]),
            allow_global=client.serves(None),
            device_token=device_token,
            captcha_token=captcha_token,
        )
        with domain_errors():
            result = password_login(attempt)
        self.request.client = client
        self.request.device_token = result.device_token
        self.request.user = tokens.user_principal(
            result.user, result.account, result.role, result.amr
        )
        self.request.scope = scope

    @hooked
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token = self.generate_token(user=self.request.user, scope=self.request.scope)
        self.save_token(token)
        # The app sends it back as `device_token` at its next password login: a known
        # device passes the per-user lockout that strangers exhaust (see identity.login).
        token["device_token"] = self.request.device_token
        return 200, token, self.TOKEN_RESPONSE_HEADER


class ClientCredentials(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "client_secret_post"]

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("The client may not use client_credentials.")
        self.request.target = api_target(client, self.request.form, self.request.payload.scope)
        if self.request.target is not None:
            self.request.client = client
            return
        aid, scope = split_scope(client, self.request.payload.scope)
        if aid is not None and aid != client.account_id:
            raise InvalidScopeError("A client's token is for its own account only.")
        self.request.client = client
        self.request.scope = scope

    @hooked
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        if self.request.target is not None:
            return (
                200,
                api_token(self.request.client, self.request.target),
                self.TOKEN_RESPONSE_HEADER,
            )
        token = self.generate_token(
            scope=self.request.scope, user=None, include_refresh_token=False
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER


class RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = PUBLIC_AND_CONFIDENTIAL

    def validate_token_request(self) -> None:
        refuse_resource(self.request.form)
        value = _field(self.request.form, "refresh_token", tokens.TOKEN_MAX)
        if tokens.is_publishable(value):
            self._validate_publishable(str(value))
            return
        client = self._validate_request_client()
        aid, scope = split_scope(client, self.request.payload.scope)
        # Marked used at once (one UPDATE ... RETURNING); every refusal below rolls the
        # mark back, so a bad request never burns a good token.
        token, claimed = tokens.claim_refresh_token(value)
        try:
            principal, granted = self._use(client, token, claimed, aid, scope)
        except BaseException:
            if claimed:
                db.session.rollback()
            raise
        self.request.client = client
        self.request.user = principal
        self.request.scope = " ".join(filter(None, [granted, f"aid:{aid}" if aid else ""]))
        self.request.rotate = True

    def _use(
        self,
        client: ClientInfo,
        token: RefreshToken | None,
        claimed: bool,
        aid: str | None,
        scope: str,
    ) -> tuple[tokens.Principal, str]:
        """The principal and the scope a refresh grants, or the refusal; a token not
        claimed (used or revoked already) goes through reuse detection."""
        # A token of an account the client does not serve (a live login through a test
        # client, issued before issue 14) is refused like another client's: unchanged.
        if token is None or token.client_id != client.pk or not client.serves(token.account_id):
            raise InvalidGrantError("The refresh token is invalid.")
        requested = " ".join(s for s in scope.split() if not s.startswith("aid:"))
        wider = bool(requested) and not set(requested.split()) <= set(token.scope.split())
        with domain_errors():
            principal = self._principal(token, aid)
            if wider and claimed:
                # Refused (and the mark rolled back): a bad request must not burn a good
                # token (a used one goes on to reuse detection, which revokes the family).
                raise InvalidScopeError("The scope is wider than the original grant.")
            used = claimed or tokens.refuse_reuse(token, retry=not wider)
            login.record_refresh(
                token,
                client_id=client.client_id,
                ip=flask_request.remote_addr,
                user_agent=self.request.headers.get("User-Agent"),
                success=used,
                commit=not used,
            )
            if not used:
                raise InvalidGrantError("The refresh token is invalid.")
        return principal, requested or token.scope

    def _principal(self, token: Any, aid: str | None) -> tokens.Principal:
        holder = tokens.refresh_token_holder(token)
        if holder is None:
            raise InvalidGrantError("The refresh token is invalid.")
        user, home = holder
        account = home
        if aid is not None and (home is None or aid != home.id):
            # Only live -> its own test account; never test -> live or elsewhere.
            if home is None or home.mode != "live" or aid != home.test_account_id:
                raise InvalidScopeError("The aid is not this token's account or its test account.")
            account = db.session.get(Account, aid)
        role = self._role(user, home)
        principal = tokens.user_principal(user, account, role, token.amr or [])
        return replace(
            principal,
            auth_time=int(token.auth_time.timestamp()),
            family_id=token.family_id,
            home_account_id=token.account_id,
        )

    @staticmethod
    def _role(user: User, home: Account | None) -> str:
        role = users.role_in(user, home)
        if role is None:  # a global user no longer a member of the account
            raise InvalidGrantError("The refresh token is invalid.")
        return role

    def _validate_publishable(self, value: str) -> None:
        account = db.session.scalar(select(Account).where(Account.publishable_token == value))
        if account is None or account.status != AccountStatus.ACTIVE:
            raise InvalidGrantError("The refresh token is invalid.")
        client = self._optional_client()
        if client is not None and not client.serves(account.id):
            raise InvalidGrantError("The refresh token is invalid.")
        self.request.client = client or publishable_client(account)
        self.request.user = tokens.Principal(
            user_id=None, account_id=account.id, mode=account.mode, role="guest"
        )
        self.request.scope = ""
        self.request.rotate = False

    def _optional_client(self) -> ClientInfo | None:
        """Publishable tokens are public by design (they ship in browser and mobile apps): a
        client is optional."""
        has_basic = self.request.headers.get("Authorization", "").lower().startswith("basic ")
        if not has_basic and not self.request.form.get("client_id"):
            return None
        return self._validate_request_client()

    @hooked
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token = self.generate_token(
            user=self.request.user,
            scope=self.request.scope,
            include_refresh_token=self.request.rotate,
        )
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class SupportLogin(grants.BaseGrant, grants.TokenEndpointMixin):
    """RFC 8693 token exchange for support login: `actor_token` (a support specialist's
    access token, `actor_token_type` access_token) and `requested_subject` (the user's id)
    give a short access token for the user with `act: {"sub": <specialist>}`; no refresh
    token, no scope. `subject_token` (impersonating with a token of the user) and other
    requested token types are not supported."""

    GRANT_TYPE = support.GRANT_TYPE
    TOKEN_ENDPOINT_AUTH_METHODS = PUBLIC_AND_CONFIDENTIAL

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("The client may not use token exchange.")
        form = self.request.form
        for name in ("subject_token", "subject_token_type", "resource", "audience", "scope"):
            if form.get(name):
                raise InvalidRequestError(f"'{name}' is not supported for support login.")
        requested = _field(form, "requested_token_type", 128, required=False)
        if requested is not None and requested != support.ACCESS_TOKEN_TYPE:
            raise InvalidRequestError(f"requested_token_type must be {support.ACCESS_TOKEN_TYPE}.")
        actor_token = _field(form, "actor_token", tokens.TOKEN_MAX)
        if _field(form, "actor_token_type", 128) != support.ACCESS_TOKEN_TYPE:
            raise InvalidRequestError(f"actor_token_type must be {support.ACCESS_TOKEN_TYPE}.")
        subject = _field(form, "requested_subject", 64)
        with domain_errors():
            try:
                granted = support.start(
                    str(actor_token),
                    str(subject),
                    client_id=client.client_id,
                    client_account_id=client.account_id,
                    ip=flask_request.remote_addr,
                    user_agent=self.request.headers.get("User-Agent"),
                )
            except Unauthenticated:
                raise InvalidGrantError("The actor token is invalid or expired.") from None
            except NotFound:
                raise InvalidGrantError(
                    "No such user in the support specialist's account."
                ) from None
            except Forbidden as exc:
                raise InvalidGrantError(exc.detail) from None
        self.request.client = client
        self.request.user = granted.principal
        self.request.lifetime = granted.lifetime

    @hooked
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token = self.generate_token(
            user=self.request.user,
            scope="",
            expires_in=self.request.lifetime,
            include_refresh_token=False,
        )
        token["issued_token_type"] = support.ACCESS_TOKEN_TYPE  # RFC 8693 2.2.1
        return 200, token, self.TOKEN_RESPONSE_HEADER


def publishable_client(account: Account) -> ClientInfo:
    """The stand-in client of a token made from a publishable token without a client."""
    return ClientInfo(
        pk="",
        client_id=tokens.PUBLISHABLE_CLIENT_ID,
        name="publishable token",
        secret_hash=None,
        is_public=True,
        account_id=account.id,
        account_mode=account.mode,
        twin_account_id=None,
        redirect_uris=(),
        post_logout_redirect_uris=(),
        grant_types=("refresh_token",),
        scopes=frozenset(),
        role="guest",
    )
