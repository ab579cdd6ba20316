"""Mailed tokens and texted codes over /v1: email verification (`email_verification_tokens`,
`email_verifications`), forgotten passwords (`password_reset_tokens`), the password itself
(`PATCH /v1/password`: reset, activation or change) and `phone_verification_codes`.
The rules live in `authserver.identity.verification`; this module parses, authorizes and renders.
"""

from __future__ import annotations

from typing import Any

from flask import Response, request

from authserver.identity import users, verification
from authserver.platform.config import SUPPORTED_LOCALES
from authserver.platform.errors import Forbidden, NotFound, ValidationFailed
from authserver.platform.extensions import db
from authserver.platform.models import ROLES, Account, Role, User

from . import bodies, jsonapi, openapi
from .accounts import token_account
from .auth import current_token, require_token
from .blueprint import bp

MANAGERS = (Role.OWNER, Role.ADMINISTRATOR)  # may have a verification email sent to others
SECRET_MAX = 1024  # longer than any token or password we take; the use cases say the rest
USER_POINTER = jsonapi.relationship_pointer("user")


def _secret(description: str) -> bodies.Attr:
    return bodies.text(SECRET_MAX, description=description)


EMAIL_VERIFICATION_TOKEN = bodies.Body("EmailVerificationToken", relationships={"user": "User"})
EMAIL_VERIFICATION = bodies.Body(
    "EmailVerification",
    {"token": _secret("The token from the email link.")},
    required=frozenset({"token"}),
)
PASSWORD_RESET_TOKEN = bodies.Body(
    "PasswordResetToken",
    {
        "username": bodies.text(
            255, min_len=1, description="The username (compared trimmed and lower-cased)."
        ),
        "email": bodies.text(
            254,
            min_len=1,
            description="Instead of username (seed 001): every user of the account with "
            "this email gets a link.",
        ),
        "locale": bodies.text(
            8,
            nullable=True,
            enum=list(SUPPORTED_LOCALES),
            description="Language of the email (default: the user's, else the account's).",
        ),
    },
    one_of=("username", "email"),
    captcha=True,
)
PASSWORD = bodies.Body(
    "Password",
    {
        "resetToken": _secret("From a reset or activation email (not with currentPassword)."),
        "currentPassword": _secret("The user's password now (not with resetToken)."),
        "value": bodies.text(
            SECRET_MAX,
            minLength=8,
            maxLength=128,
            description="The new password: not common, not the username or email.",
        ),
        "valueConfirmation": _secret("Optional; must equal value when given."),
    },
    required=frozenset({"value"}),
    one_of=("resetToken", "currentPassword"),
)
PHONE_VERIFICATION_CODE = bodies.Body(
    "PhoneVerificationCode",
    {
        "phoneNumber": bodies.text(
            32, pattern=r"^\+[1-9][0-9]{1,14}$", description="E.164, e.g. +15551234567."
        )
    },
    required=frozenset({"phoneNumber"}),
)


# --- email verification -------------------------------------------------------------------


@bp.post("/email_verification_tokens")
@require_token(*ROLES)  # all but guests; a client token has no user, so only as a manager
def create_email_verification_token() -> Response:
    """Email the linked user a link that verifies their address (204)."""
    parsed = EMAIL_VERIFICATION_TOKEN.read()
    user = _verification_target(str(parsed.relationships["user"]))
    try:
        verification.send_email_verification(user)
    except ValidationFailed as exc:  # about the linked user: point at the relationship
        jsonapi.fail(422, exc.code, exc.title, exc.detail, USER_POINTER)
    return jsonapi.no_content()


def _verification_target(user_id: str) -> User:
    """The user an EVT may be made for: oneself, or (managers) a user of one's account.

    A non-manager asking for anyone else is refused before any lookup, so that 403 says
    nothing about whether the id exists; a manager gets 404 for ids outside the token's
    account (another account, or live versus test).
    """
    token = current_token()
    if user_id != token.user_id and token.role not in MANAGERS:
        raise Forbidden("You may ask for a verification email for yourself only.")
    if user_id == token.user_id:
        user = db.session.get(User, user_id)  # the bearer guard checked it is active
    else:
        account = db.session.get(Account, token.account_id) if token.account_id else None
        try:
            user = users.get_member(account, user_id).user if account else None
        except NotFound:
            user = None
    if user is None:
        jsonapi.fail(404, "not_found", "Not found", "No such user.", f"{USER_POINTER}/data/id")
    return user


@bp.post("/email_verifications")
@require_token()
def create_email_verification() -> Response:
    """Spend an email verification token: the user's email becomes verified (204)."""
    verification.verify_email(EMAIL_VERIFICATION.read().attributes["token"])
    return jsonapi.no_content()


# --- passwords ----------------------------------------------------------------------------


@bp.post("/password_reset_tokens")
@require_token("guest")  # a guest token, made from the account's publishable token
def create_password_reset_token() -> Response:
    """Email a reset link to the account's user with this username, if any; always 204."""
    parsed = PASSWORD_RESET_TOKEN.read()
    attrs = parsed.attributes
    identifier = attrs.get("username") or attrs["email"]
    verification.request_password_reset(
        token_account(),
        identifier,
        locale=_locale(attrs),
        ip=request.remote_addr,
        captcha_token=parsed.captcha_token,
    )
    return jsonapi.no_content()


def _locale(attrs: dict[str, Any]) -> str | None:
    locale = attrs.get("locale")
    if locale is not None and locale not in SUPPORTED_LOCALES:
        jsonapi.fail(
            422,
            "invalid_choice",
            "Unsupported locale",
            f"locale must be one of {', '.join(SUPPORTED_LOCALES)}.",
            jsonapi.attribute_pointer("locale"),
        )
    return locale


@bp.patch("/password")
@require_token()  # any token for a reset; the user's own token for a change (checked below)
def update_password() -> Response:
    """Set a password with `resetToken` (reset or activation) or `currentPassword` (change).

    Either way every token of the user stops working and the user is emailed; the answer
    is 204 and logs nobody in.
    """
    values = PASSWORD.read().attributes  # exactly one of resetToken, currentPassword
    reset_token, current = values.get("resetToken"), values.get("currentPassword")
    if reset_token is not None:
        verification.reset_password(reset_token, values["value"], values.get("valueConfirmation"))
        return jsonapi.no_content()
    token = current_token()
    user = db.session.get(User, token.user_id) if token.user_id else None
    if user is None:  # a guest or client token: there is no "own" password to change
        raise Forbidden("Only a user can change their own password.")
    verification.change_password(user, current, values["value"], values.get("valueConfirmation"))
    return jsonapi.no_content()


# --- phone verification -------------------------------------------------------------------


@bp.post("/phone_verification_codes")
@require_token()  # guests too: a number is verified before its user exists (sign-up)
def create_phone_verification_code() -> Response:
    """Text a 6-digit code to a phone number (204); throttled per number and per IP."""
    phone = PHONE_VERIFICATION_CODE.read().attributes["phoneNumber"]
    token = current_token()
    user = db.session.get(User, token.user_id) if token.user_id else None
    verification.send_phone_code(
        phone,
        account=token_account() if token.account_id else None,
        locale=user.locale if user else None,
        ip=request.remote_addr,
    )
    return jsonapi.no_content()


# --- OpenAPI ------------------------------------------------------------------------------


def _operation(
    operation_id: str, summary: str, description: str, schema: str, *statuses: int
) -> dict[str, Any]:
    """A body-taking operation that answers 204, with its request schema and error statuses."""
    return {
        "summary": summary,
        "description": description,
        "operationId": operation_id,
        "requestBody": {
            "required": True,
            **openapi.body({"$ref": f"#/components/schemas/{schema}"}),
        },
        "responses": {
            "204": {"description": "Done; no body."},
            **openapi.error_responses(400, *statuses, 409, 415, 422, 503),
        },
    }


OPENAPI: dict[str, Any] = {
    "paths": {
        "/email_verification_tokens": {
            "post": _operation(
                "createEmailVerificationToken",
                "Email a user a link that verifies their address",
                "One valid token per user (a new one voids the old), valid 24 hours, sent "
                "by email. Anyone may ask for themselves; owners and administrators for any "
                "user of their account (404 for others). At most 5 an hour per user.",
                "EmailVerificationTokenRequest",
                404,
                429,
            )
        },
        "/email_verifications": {
            "post": _operation(
                "createEmailVerification",
                "Verify an email address with the emailed token",
                "Sets emailVerified and emailVerifiedAt. The token works once, and only while "
                "the user's email is still the address it was sent to.",
                "EmailVerificationRequest",
            )
        },
        "/password_reset_tokens": {
            "post": _operation(
                "createPasswordResetToken",
                "Email a password-reset link (publishable token)",
                "Always 204, whether or not the username exists: the lookup and the email "
                "happen in the background. The link (valid 24 hours, one per user) goes to "
                "the user's stored email, in `locale` if given. A pending user gets their "
                "activation link again. At most 30 requests an hour per IP.",
                "PasswordResetTokenRequest",
                429,
            )
        },
        "/password": {
            "patch": _operation(
                "updatePassword",
                "Reset, activate or change a password",
                "Give exactly one of resetToken (from a reset or activation email; any "
                "token) or currentPassword (the user's own token; 403 for guest and client "
                "tokens). Every token of the user is revoked and the user is emailed; "
                "two-step login stays as it was and nobody is logged in. An activation makes "
                "a pending user active.",
                "PasswordRequest",
                403,
                429,
            )
        },
        "/phone_verification_codes": {
            "post": _operation(
                "createPhoneVerificationCode",
                "Text a 6-digit verification code to a phone number",
                "Valid 30 minutes; earlier codes stay valid until used. At most 5 an hour "
                "per number and account, 20 an hour per IP.",
                "PhoneVerificationCodeRequest",
                429,
            )
        },
    },
    "schemas": {
        "EmailVerificationTokenRequest": EMAIL_VERIFICATION_TOKEN.schema(),
        "EmailVerificationRequest": EMAIL_VERIFICATION.schema(),
        "PasswordResetTokenRequest": PASSWORD_RESET_TOKEN.schema(),
        "PasswordRequest": PASSWORD.schema(),
        "PhoneVerificationCodeRequest": PHONE_VERIFICATION_CODE.schema(),
    },
}
