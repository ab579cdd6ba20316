"""User resources: `GET /v1/user` (the current user). The rest arrives with the identity API."""

from __future__ import annotations

from typing import Any

from flask import Response

from ..errors import NotFound
from ..extensions import db
from ..models import ROLES, User
from . import bp, jsonapi, openapi
from .auth import current_token, require_token


def user_resource(user: User) -> dict[str, object]:
    return jsonapi.resource(
        "User",
        user.id,
        {
            "status": user.status,
            "username": user.username,
            "email": user.email,
            "phoneNumber": user.phone_number,
            "name": user.name,
            "firstName": user.first_name,
            "lastName": user.last_name,
            "authMethod": user.auth_method,
            "role": user.role,
            "emailVerified": user.email_verified,
            "emailVerifiedAt": user.email_verified_at,
            "passwordUpdatedAt": user.password_updated_at,
            "customData": user.custom_data or {},
        },
    )


@bp.get("/user")
@require_token(*ROLES)  # not guests; client tokens have no user (404)
def current_user() -> Response:
    """The user the access token speaks for (not for guests or client tokens)."""
    token = current_token()
    user = db.session.get(User, token.user_id) if token.user_id else None
    if user is None:
        raise NotFound("This token has no user.")
    return jsonapi.document(user_resource(user))


OPENAPI: dict[str, Any] = {
    "paths": {
        "/user": {
            "get": {
                "summary": "The user the access token speaks for",
                "operationId": "getCurrentUser",
                "responses": {
                    "200": openapi.body({"type": "object"}, "The user"),
                    **openapi.error_responses(404),
                },
            }
        }
    }
}
