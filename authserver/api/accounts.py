"""Account resource: `GET /v1/account` (every role) and `PATCH /v1/account` (owner,
administrator, developer). Localizable attributes follow `?locale=xx`; `meta.locale` says
which locale a document is in.
"""

from __future__ import annotations

from typing import Any

from flask import Response, request

from authserver.identity import accounts, origins
from authserver.platform import cors
from authserver.platform.config import SUPPORTED_LOCALES
from authserver.platform.errors import NotFound
from authserver.platform.extensions import db
from authserver.platform.models import AUTH_METHODS, Account, AccountStatus, Role, User

from . import bodies, jsonapi, names, openapi, query
from .auth import current_token, require_token
from .blueprint import bp

EDITORS = (Role.OWNER, Role.ADMINISTRATOR, Role.DEVELOPER)
_NAME_PATTERN = bodies.NAME_PATTERN
# What PATCH /v1/account may change (the domain's ACCOUNT_FIELDS), with wire caps.
ATTRIBUTES: dict[str, bodies.Attr] = {
    "name": bodies.text(255, pattern=_NAME_PATTERN),
    "companyName": bodies.text(255, nullable=True, pattern=_NAME_PATTERN),
    # null passes the wire and the domain refuses it (422 required), so the schema says string.
    "defaultAuthMethod": bodies.text(16, nullable=True, type="string", enum=list(AUTH_METHODS)),
    "websiteUrl": bodies.text(2048, nullable=True, format="uri", description="http(s)"),
    "supportEmail": bodies.text(254, nullable=True, format="email"),
    "techEmail": bodies.text(254, nullable=True, format="email"),
    "apiVersion": bodies.text(16, nullable=True, pattern="^[0-9]{8}$"),
    "caption": bodies.text(255, nullable=True, pattern=_NAME_PATTERN),
    "description": bodies.text(10_000, nullable=True, pattern=_NAME_PATTERN),
    "customData": bodies.obj(),
    "allowedOrigins": bodies.strings(
        origins.MAX_ORIGINS,
        cors.ORIGIN_MAX,
        item_doc={"description": "scheme://host[:port]; https unless loopback"},
        description="Browser origins whose pages may read /v1 with this account's tokens "
        "(CORS); exact matches, replaced as a whole",
    ),
    "requireUniqueEmails": bodies.flag(
        description="Owner/administrator only: no two users of the account share an email"
    ),
}
UPDATE = bodies.Body("Account", ATTRIBUTES, update=True)
# POST /v1/account_resets takes no body, or an AccountReset with nothing in it.
RESET = bodies.Body("AccountReset")


# The attributes of an Account resource (its sparse fieldset names).
ACCOUNT_FIELDS = frozenset(
    {
        "status",
        "name",
        "companyName",
        "mode",
        "defaultLocale",
        "defaultAuthMethod",
        "websiteUrl",
        "supportEmail",
        "techEmail",
        "testAccountId",
        "apiVersion",
        "caption",
        "description",
        "customData",
        "allowedOrigins",
        "requireUniqueEmails",
    }
)


def token_account() -> Account:
    """The account of the request's access token (404 for a token without one)."""
    account_id = current_token().account_id
    account = db.session.get(Account, account_id) if account_id else None
    if account is None:
        raise NotFound("This token is not for an account.")
    return account


def request_locale(account: Account) -> str:
    locale = request.args.get("locale")
    if locale is None:
        return account.default_locale
    if locale not in SUPPORTED_LOCALES:
        jsonapi.fail(
            400,
            "invalid_locale",
            "Unsupported locale",
            f"locale must be one of {', '.join(SUPPORTED_LOCALES)}.",
        )
    return locale


def account_resource(account: Account, locale: str) -> dict[str, Any]:
    text = accounts.localized(account, locale)
    return jsonapi.resource(
        "Account",
        account.id,
        {
            "status": account.status,
            "name": text["name"],
            "companyName": text["company_name"],
            "mode": account.mode,
            "defaultLocale": account.default_locale,
            "defaultAuthMethod": account.default_auth_method,
            "websiteUrl": account.website_url,
            "supportEmail": account.support_email,
            "techEmail": account.tech_email,
            "testAccountId": account.test_account_id,
            "apiVersion": account.api_version,
            "caption": text["caption"],
            "description": text["description"],
            "customData": text["custom_data"] or {},
            "allowedOrigins": list(account.allowed_origins or []),
            "requireUniqueEmails": account.require_unique_emails,
        },
    )


@bp.get("/account")
@query.takes(query.QuerySpec(types={"Account": ACCOUNT_FIELDS}, params=frozenset({"locale"})))
@require_token()
def get_account() -> Response:
    """The account of the token (any role, guests included)."""
    account = token_account()
    locale = request_locale(account)
    return jsonapi.document(account_resource(account, locale), meta={"locale": locale})


@bp.patch("/account")
@require_token(*EDITORS)
def patch_account() -> Response:
    """Change the live account; the test account follows in the same transaction."""
    account = token_account()
    locale = request_locale(account)
    attrs = UPDATE.read(require_id=account.id).attributes
    changes = {names.field_of(name): value for name, value in attrs.items()}
    token = current_token()
    by = db.session.get(User, token.user_id) if token.user_id else None
    accounts.update_account(account, changes, locale=locale, by=by, role=token.role)
    return jsonapi.document(account_resource(account, locale), meta={"locale": locale})


@bp.delete("/account")
@require_token(Role.OWNER)
def delete_account() -> Response:
    """The owner deletes the account and its test account; every token of both stops."""
    account = token_account()
    token = current_token()
    by = db.session.get(User, token.user_id) if token.user_id else None
    accounts.delete_account(account, by=by)
    return jsonapi.no_content()


def _publishable_token_resource(account: Account) -> dict[str, Any]:
    return jsonapi.resource(
        "PublishableToken", account.id, {"value": account.publishable_token, "mode": account.mode}
    )


@bp.get("/account/publishable_token")
@query.takes(query.QuerySpec(types={"PublishableToken": frozenset({"value", "mode"})}))
@require_token(Role.OWNER, Role.ADMINISTRATOR)
def get_publishable_token() -> Response:
    """The account's publishable refresh token (public by design; it ships inside apps)."""
    return jsonapi.document(_publishable_token_resource(token_account()))


@bp.post("/account/publishable_token")
@require_token(Role.OWNER, Role.ADMINISTRATOR)
def regenerate_publishable_token() -> Response:
    """A new publishable token for this account (this mode); the old one stops at once."""
    account = accounts.regenerate_publishable_token(token_account())
    return jsonapi.document(_publishable_token_resource(account), status=201)


@bp.post("/account_resets")
@require_token(*EDITORS)
def reset_account() -> Response:
    """Wipe the test account's users but the caller (test accounts only; live: 422)."""
    account = token_account()
    if request.content_length:  # a body is optional; if sent, it must be an AccountReset
        RESET.read()
    token = current_token()
    by = db.session.get(User, token.user_id) if token.user_id else None
    accounts.reset_test_account(account, by=by)
    return jsonapi.no_content()


_ACCOUNT_ATTRIBUTES: dict[str, Any] = {
    "status": {"type": "string", "enum": list(AccountStatus), "readOnly": True},
    "name": {"type": "string", "maxLength": 255},
    "companyName": {"type": ["string", "null"], "maxLength": 255},
    "mode": {"type": "string", "enum": ["live", "test"], "readOnly": True},
    "defaultLocale": {"type": "string", "readOnly": True},
    "defaultAuthMethod": {"type": "string", "enum": list(AUTH_METHODS)},
    "websiteUrl": {"type": ["string", "null"], "format": "uri"},
    "supportEmail": {"type": ["string", "null"], "format": "email"},
    "techEmail": {"type": ["string", "null"], "format": "email"},
    "testAccountId": {"type": ["string", "null"], "readOnly": True},
    "apiVersion": {"type": ["string", "null"], "pattern": "^[0-9]{8}$"},
    "caption": {"type": ["string", "null"], "maxLength": 255},
    "description": {"type": ["string", "null"], "maxLength": 10000},
    "customData": {"type": "object"},
    "allowedOrigins": {"type": "array", "items": {"type": "string"}},
    "requireUniqueEmails": {"type": "boolean"},
}
_ACCOUNT_DOC = {"$ref": "#/components/schemas/AccountDocument"}
_LOCALE = {"$ref": "#/components/parameters/locale"}

OPENAPI: dict[str, Any] = {
    "schemas": {
        "AccountDocument": openapi.resource_document("Account", _ACCOUNT_ATTRIBUTES, with_id=True),
        "PublishableTokenDocument": openapi.resource_document(
            "PublishableToken",
            {"value": {"type": "string"}, "mode": {"type": "string"}},
            with_id=True,
        ),
    },
    "paths": {
        "/account": {
            "get": {
                "summary": "The token's account",
                "operationId": "getAccount",
                "parameters": [_LOCALE],
                "responses": {
                    "200": openapi.body(_ACCOUNT_DOC, "The account; meta.locale says the locale"),
                    **openapi.error_responses(400, 404),
                },
            },
            "patch": {
                "summary": "Change the live account (its test account follows)",
                "operationId": "updateAccount",
                "parameters": [_LOCALE],
                "requestBody": bodies.request_body(UPDATE),
                "responses": {
                    "200": openapi.body(_ACCOUNT_DOC, "The changed account"),
                    **openapi.error_responses(400, 404, 409, 413, 415, 422),
                },
            },
            "delete": {
                "summary": "Delete the account and its test account; every token stops",
                "operationId": "deleteAccount",
                "responses": {"204": {"description": "Deleted"}, **openapi.error_responses(422)},
            },
        },
        "/account/publishable_token": {
            "get": {
                "summary": "The account's publishable refresh token",
                "operationId": "getPublishableToken",
                "responses": {
                    "200": openapi.body(
                        {"$ref": "#/components/schemas/PublishableTokenDocument"}, "The token"
                    )
                },
            },
            "post": {
                "summary": "A new publishable token; the old one stops at once",
                "operationId": "regeneratePublishableToken",
                "responses": {
                    "201": openapi.body(
                        {"$ref": "#/components/schemas/PublishableTokenDocument"}, "The new token"
                    )
                },
            },
        },
        "/account_resets": {
            "post": {
                "summary": "Wipe a test account's users but the caller (test accounts only)",
                "operationId": "resetTestAccount",
                "requestBody": bodies.request_body(RESET, required=False),
                "responses": {
                    "204": {"description": "The test account was reset"},
                    **openapi.error_responses(422),
                },
            }
        },
    },
}
