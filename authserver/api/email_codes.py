"""`POST /v1/email_verification_codes`: mail a 6-digit code to the current user's email
(seed 003). The code goes back with `PATCH /v1/user` as `emailVerificationCode`; the rules
live in `authserver.identity.email_codes`.
"""

from __future__ import annotations

from typing import Any

from flask import Response, request

from authserver.identity import email_codes
from authserver.platform.models import ROLES

from . import bodies, jsonapi, openapi
from .auth import require_token
from .blueprint import bp
from .users import _current

# No attributes: the code goes to the address the user has. A body is optional.
CREATE = bodies.Body("EmailVerificationCode")


@bp.post("/email_verification_codes")
@require_token(*ROLES)  # a user's token; guests and client tokens have no user (404)
def create_email_verification_code() -> Response:
    """Mail a 6-digit code to the current user's email (204); at most 5 an hour (429)."""
    user, _ = _current()
    if request.content_length:
        CREATE.read()
    email_codes.send(user)
    return jsonapi.no_content()


OPENAPI: dict[str, Any] = {
    "paths": {
        "/email_verification_codes": {
            "post": {
                "summary": "Mail a 6-digit code to the current user's email",
                "description": "Valid 30 minutes, once. Send it back as emailVerificationCode "
                "with PATCH /v1/user (with authMethod tfa_email it switches in one step). "
                "At most 5 codes a user an hour, 10 wrong codes per half hour (429).",
                "operationId": "createEmailVerificationCode",
                "requestBody": bodies.request_body(CREATE, required=False),
                "responses": {
                    "204": {"description": "The code was mailed"},
                    **openapi.error_responses(404, 413, 415, 422, 429),
                },
            }
        }
    }
}
