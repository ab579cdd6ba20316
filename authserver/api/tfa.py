"""Two-step login with an authenticator app, for the current user (every role but guest):
`POST /v1/totp_setups` (start), `POST /v1/totp_confirmations` (switch on; recovery codes),
`POST /v1/recovery_code_sets` (new codes), `POST /v1/tfa_disablements` (switch off).
"""

from __future__ import annotations

from typing import Any

from flask import Response

from authserver.identity import tokens, twofactor
from authserver.platform.errors import NotFound
from authserver.platform.extensions import db
from authserver.platform.models import ROLES, AuthMethod, User, new_id, utcnow

from . import bodies, jsonapi
from .auth import current_token, require_token
from .blueprint import bp

# Length caps on input, so nothing large reaches argon2 or Redis (domain checks the same).
PASSWORD_MAX = twofactor.PASSWORD_MAX
OTP_MAX = twofactor.OTP_MAX
RECOVERY_CODE_MAX = twofactor.RECOVERY_CODE_MAX


def _user() -> User:
    """The token's user; client-credentials tokens have none (404, as GET /v1/user)."""
    token = current_token()
    user = db.session.get(User, token.user_id) if token.user_id else None
    if user is None:
        raise NotFound("This token has no user.")
    return user


_PASSWORD = bodies.text(PASSWORD_MAX, description="The current password.")
_OTP = bodies.text(
    OTP_MAX,
    pattern=r"^\s*[0-9]{6}\s*$",
    description="A current 6-digit code from the authenticator app (used once).",
)
_RECOVERY = bodies.text(
    RECOVERY_CODE_MAX, description="An unused recovery code (instead of otp; used up)."
)
PROOF = {"password": _PASSWORD, "otp": _OTP, "recoveryCode": _RECOVERY}
SETUP = bodies.Body("TotpSetup", PROOF, required=frozenset({"password"}))
CONFIRMATION = bodies.Body(
    "TotpConfirmation",
    {"code": bodies.text(OTP_MAX, **{**_OTP.doc, "description": "From the new secret."})},
    required=frozenset({"code"}),
)
RECOVERY_CODE_SET = bodies.Body("RecoveryCodeSet", {"otp": _OTP}, required=frozenset({"otp"}))
DISABLEMENT = bodies.Body("TfaDisablement", PROOF, required=frozenset({"password"}))


@bp.post("/totp_setups")
@require_token(*ROLES)
def start_totp_setup() -> Response:
    """A new pending TOTP secret, its otpauth:// URI and QR code (10 minutes to confirm)."""
    user = _user()
    given = SETUP.read().attributes
    setup = twofactor.start_totp_setup(
        user,
        password=given["password"],
        otp=given.get("otp"),
        recovery_code=given.get("recoveryCode"),
    )
    resource = jsonapi.resource(
        "TotpSetup",
        setup.id,
        {
            "secret": setup.secret,
            "otpauthUri": setup.otpauth_uri,
            "qrCodeSvg": setup.qr_code_svg,
            "expiresAt": setup.expires_at,
        },
    )
    return jsonapi.document(resource, status=201)


@bp.post("/totp_confirmations")
@require_token(*ROLES)
def confirm_totp_setup() -> Response:
    """Switch the user to tfa_totp with a current code; answers the recovery codes once."""
    user = _user()
    codes = twofactor.confirm_totp_setup(
        user, CONFIRMATION.read().attributes["code"], keep=tokens.Survivor.of(current_token())
    )
    resource = jsonapi.resource(
        "TotpConfirmation",
        new_id(),
        {"authMethod": user.auth_method, "recoveryCodes": codes, "confirmedAt": utcnow()},
    )
    return jsonapi.document(resource, status=201)


@bp.post("/recovery_code_sets")
@require_token(*ROLES)
def renew_recovery_codes() -> Response:
    """A new set of recovery codes (the old set stops working); needs a current code."""
    user = _user()
    codes = twofactor.renew_recovery_codes(user, otp=RECOVERY_CODE_SET.read().attributes["otp"])
    resource = jsonapi.resource(
        "RecoveryCodeSet", new_id(), {"codes": codes, "createdAt": utcnow()}
    )
    return jsonapi.document(resource, status=201)


@bp.post("/tfa_disablements")
@require_token(*ROLES)
def disable_tfa() -> Response:
    """Switch TOTP off (password and a current code or recovery code); 204."""
    user = _user()
    given = DISABLEMENT.read().attributes
    twofactor.disable_tfa(
        user,
        password=given["password"],
        otp=given.get("otp"),
        recovery_code=given.get("recoveryCode"),
        keep=tokens.Survivor.of(current_token()),  # this login goes on; all others end
    )
    return jsonapi.no_content()


# --- OpenAPI ----------------------------------------------------------------------------

_ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*statuses: int) -> dict[str, Any]:
    words = {
        400: "Malformed JSON or not a JSON:API document.",
        401: "No valid bearer token.",
        403: "A guest token, or a client-generated id.",
        404: "The token has no user (client credentials).",
        409: "data.type is not the resource type of this path.",
        415: "The body is not JSON:API (or UTF-8 JSON).",
        422: "A missing, unknown, mistyped or too long attribute, or a wrong code or password"
        " (source.pointer names it; stable `code`).",
        429: "Too many wrong passwords or codes for this user; see Retry-After.",
        503: "Redis is unreachable: nothing was checked or changed.",
    }
    return {
        str(s): {
            "description": words[s],
            "content": {jsonapi.MEDIA_TYPE: {"schema": _ERROR}},
        }
        for s in statuses
    }


def _created(schema: str, description: str) -> dict[str, Any]:
    return {
        "201": {
            "description": description,
            "content": {
                jsonapi.MEDIA_TYPE: {
                    "schema": {
                        "type": "object",
                        "properties": {"data": {"$ref": f"#/components/schemas/{schema}"}},
                    }
                }
            },
        }
    }


def _resource_schema(type_: str, attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "id", "attributes"],
        "properties": {
            "type": {"const": type_},
            "id": {"type": "string"},
            "attributes": {"type": "object", "properties": attributes},
        },
    }


_CODES = {
    "type": "array",
    "items": {"type": "string", "example": "abcd-efgh-jkmn-pqrs"},
    "minItems": twofactor.RECOVERY_CODE_COUNT,
    "maxItems": twofactor.RECOVERY_CODE_COUNT,
    "description": "Single-use recovery codes, shown this once; the previous set is void.",
}
_ERRORS = (400, 401, 403, 404, 409, 415, 422, 429, 503)

OPENAPI: dict[str, Any] = {
    "paths": {
        "/totp_setups": {
            "post": {
                "summary": "Start a TOTP enrolment for the current user",
                "description": "Makes a 160-bit secret and keeps it pending for 10 minutes "
                "(a new setup replaces a pending one); nothing about the user changes until "
                "POST /totp_confirmations. Needs the password; a user who already has TOTP "
                "also gives a current otp or a recoveryCode. The secret is shown only here.",
                "operationId": "startTotpSetup",
                "requestBody": bodies.request_body(SETUP),
                "responses": {
                    **_created("TotpSetup", "The pending setup, for the authenticator app."),
                    **_errors(*_ERRORS),
                },
            }
        },
        "/totp_confirmations": {
            "post": {
                "summary": "Switch the current user to TOTP with a code from the new secret",
                "description": "authMethod becomes tfa_totp (replacing any earlier secret) and "
                "10 new recovery codes are answered once. A wrong code changes nothing; after "
                f"{twofactor.SETUP_MAX_ATTEMPTS} wrong codes the setup is void "
                "(422 no_pending_setup). The confirming code cannot be used again to log in.",
                "operationId": "confirmTotpSetup",
                "requestBody": bodies.request_body(CONFIRMATION),
                "responses": {
                    **_created("TotpConfirmation", "TOTP is on; the recovery codes."),
                    **_errors(*(s for s in _ERRORS if s != 429)),
                },
            }
        },
        "/recovery_code_sets": {
            "post": {
                "summary": "Replace the current user's recovery codes",
                "description": "Needs a current otp; the previous codes stop working.",
                "operationId": "createRecoveryCodeSet",
                "requestBody": bodies.request_body(RECOVERY_CODE_SET),
                "responses": {
                    **_created("RecoveryCodeSet", "The new recovery codes, shown once."),
                    **_errors(*_ERRORS),
                },
            }
        },
        "/tfa_disablements": {
            "post": {
                "summary": "Switch the current user's two-step login off",
                "description": "Needs the password and a current otp (the app's code, or for "
                "email/SMS users a code a password-grant attempt sent) or a recoveryCode. The "
                "secret and the recovery codes are deleted and authMethod becomes simple; the "
                "old codes stop working at once.",
                "operationId": "disableTfa",
                "requestBody": bodies.request_body(DISABLEMENT),
                "responses": {
                    "204": {"description": "Two-step login is off."},
                    **_errors(*_ERRORS),
                },
            }
        },
    },
    "schemas": {
        "TotpSetup": _resource_schema(
            "TotpSetup",
            {
                "secret": {"type": "string", "description": "Base32, 32 characters (160 bits)."},
                "otpauthUri": {"type": "string", "format": "uri"},
                "qrCodeSvg": {"type": "string", "description": "The URI as an SVG QR code."},
                "expiresAt": {"type": "string", "format": "date-time"},
            },
        ),
        "TotpConfirmation": _resource_schema(
            "TotpConfirmation",
            {
                "authMethod": {"const": AuthMethod.TFA_TOTP},
                "recoveryCodes": _CODES,
                "confirmedAt": {"type": "string", "format": "date-time"},
            },
        ),
        "RecoveryCodeSet": _resource_schema(
            "RecoveryCodeSet",
            {"codes": _CODES, "createdAt": {"type": "string", "format": "date-time"}},
        ),
    },
}
