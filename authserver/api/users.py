"""User resource: `/v1/users` (owner and administrators; guests may sign up a customer),
`/v1/users/{id}`, and `/v1/user`, the current user (every role but guest).

Parses and type-checks the wire attributes, calls one `users` use case, renders.
"""

from __future__ import annotations

from typing import Any

from flask import Response, request

from authserver.identity import profile, tokens, users
from authserver.platform.errors import NotFound
from authserver.platform.extensions import db
from authserver.platform.models import AUTH_METHODS, ROLES, Account, User

from . import bodies, jsonapi, names, openapi, query
from .accounts import ACCOUNT_FIELDS, account_resource, request_locale
from .auth import current_token, require_token
from .blueprint import bp

PAGE_SIZE = jsonapi.PAGE_SIZE
PAGE_SIZE_MAX = jsonapi.PAGE_SIZE_MAX
PAGE_NUMBER_MAX = jsonapi.PAGE_NUMBER_MAX

# Who may send which attributes: the domain's lists of fields, in API names.
ADMIN_ATTRIBUTES = names.attributes_of(users.ADMIN_FIELDS)
GUEST_ATTRIBUTES = names.attributes_of(users.SIGN_UP_FIELDS)
SELF_ATTRIBUTES = names.attributes_of(profile.SELF_FIELDS)
# Every attribute a user request may carry: its wire type and cap (checked here) and, in
# the published schema only, the domain's rules (a password, say, is 8 to 128 characters).
ATTRIBUTES: dict[str, bodies.Attr] = {
    "username": bodies.text(
        255, pattern=bodies.USERNAME_PATTERN, description="a-z 0-9 - @ . + _; lower-cased"
    ),
    "password": bodies.text(1024, minLength=8, maxLength=128),
    "email": bodies.text(254, nullable=True, format="email"),
    "phoneNumber": bodies.text(32, nullable=True, description="E.164, e.g. +15551234567"),
    "phoneVerificationCode": bodies.text(
        16,
        description="Proves phoneNumber (tfa_sms); not needed when an owner or administrator "
        "sets another user's tfa_sms phone",
    ),
    "emailVerificationCode": bodies.text(
        16,
        description="PATCH /v1/user only: the code POST /v1/email_verification_codes mailed; "
        "verifies the current email (with authMethod tfa_email: switches in one step)",
    ),
    "name": bodies.text(255, nullable=True, pattern=bodies.NAME_PATTERN),
    "firstName": bodies.text(255, nullable=True, pattern=bodies.NAME_PATTERN),
    "lastName": bodies.text(255, nullable=True, pattern=bodies.NAME_PATTERN),
    "authMethod": bodies.text(16, enum=list(AUTH_METHODS)),
    "role": bodies.text(32, enum=list(ROLES)),
    "status": bodies.text(16, enum=[str(s) for s in users.LISTED_STATUSES]),
    "emailVerified": bodies.flag(),
    "allowSupportLogin": bodies.flag(
        description="PATCH /v1/user only: whether a support specialist of the account may "
        "log in as you (token exchange); turning it off ends such logins at once"
    ),
    "customData": bodies.obj(),
    "currentPassword": bodies.text(
        1024,
        description="PATCH /v1/user only: needed when a two-step user changes authMethod, "
        "or the phoneNumber of tfa_sms",
    ),
}


def _only(wanted: frozenset[str]) -> dict[str, bodies.Attr]:
    return {name: attr for name, attr in ATTRIBUTES.items() if name in wanted}


CREATE = bodies.Body(
    "User", _only(ADMIN_ATTRIBUTES), required=frozenset({"username"}), captcha=True
)
UPDATE = bodies.Body("User", _only(ADMIN_ATTRIBUTES), update=True)
# Seed 000 sends no data.id to /v1/user: the URL names the resource.
UPDATE_SELF = bodies.Body("User", _only(SELF_ATTRIBUTES), update=True, id_optional=True)


# What a GET of users takes besides its path (see query.QuerySpec).
USER_FIELDS = frozenset(
    {
        "status",
        "username",
        "email",
        "phoneNumber",
        "name",
        "firstName",
        "lastName",
        "authMethod",
        "role",
        "emailVerified",
        "emailVerifiedAt",
        "passwordUpdatedAt",
        "customData",
        "allowSupportLogin",
        "createdAt",
        "updatedAt",
        "lastLoginAt",
        "emailAddedAt",
        "account",
    }
)
ONE_QUERY = query.QuerySpec(
    types={"User": USER_FIELDS, "Account": ACCOUNT_FIELDS},
    include=("account",),
    params=frozenset({"locale"}),
)
LIST_QUERY = query.QuerySpec(
    types=ONE_QUERY.types,
    include=ONE_QUERY.include,
    sort=("createdAt", "username"),
    sort_description="Default username.",
    params=frozenset(
        {"locale", "search", "filter[status]", "filter[role]", "page[number]", "page[size]"}
    ),
)


def user_resource(user: User, role: str | None = None) -> dict[str, Any]:
    """The wire shape of a user; `role` is its role in the account asked about."""
    account = {"type": "Account", "id": user.account_id} if user.account_id else None
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
            "role": role or user.role,
            "emailVerified": user.email_verified,
            "emailVerifiedAt": user.email_verified_at,
            "passwordUpdatedAt": user.password_updated_at,
            "allowSupportLogin": user.allow_support_login,
            "customData": user.custom_data or {},
            "createdAt": user.created_at,
            "updatedAt": user.updated_at,
            "lastLoginAt": user.last_login_at,
            "emailAddedAt": user.email_added_at,
        },
        relationships={"account": {"data": account}},
    )


def _member_document(member: users.Member, locale: str, status: int = 200) -> Response:
    headers = {"Location": f"/v1/users/{member.user.id}"} if status == 201 else None
    return jsonapi.document(
        user_resource(member.user, member.role),
        meta={"locale": locale},
        status=status,
        headers=headers,
        included=_included([member.user], locale),
    )


def _included(people: list[User], locale: str) -> list[dict[str, Any]] | None:
    """`include=account`: the accounts of these users (a global user has none)."""
    if "account" not in query.current().include:
        return None
    accounts = {u.account.id: u.account for u in people if u.account is not None}
    return [account_resource(a, locale) for a in accounts.values()]


def _fields(attrs: dict[str, Any]) -> dict[str, Any]:
    """Checked attributes as domain fields; a null stays (it clears the attribute)."""
    return {names.field_of(name): value for name, value in attrs.items()}


def _actor() -> users.Actor:
    token = current_token()
    account = db.session.get(Account, token.account_id) if token.account_id else None
    if account is None:
        raise NotFound("This token is not for an account.")
    return users.Actor(role=token.role, user_id=token.user_id, account=account)


def _current() -> tuple[User, Account | None]:
    token = current_token()
    if token.user_id is None:
        raise NotFound("This token has no user.")
    if token.account_id is None:
        user, account = db.session.get(User, token.user_id), None
    else:
        # Both rows in one statement: the token check read neither from the database.
        row = db.session.execute(
            db.select(User, Account)
            .join_from(User, Account, Account.id == token.account_id)
            .where(User.id == token.user_id)
        ).first()
        user, account = (row[0], row[1]) if row is not None else (None, None)
    if user is None:
        raise NotFound("This token has no user.")
    return user, account


def _locale_of(user: User, account: Account | None) -> str:
    return request_locale(account) if account is not None else (user.locale or "en")


# --- /v1/users ------------------------------------------------------------------------


@bp.post("/users")
@require_token(*users.MANAGERS, users.GUEST)
def create_user() -> Response:
    """An administrator creates a user; a guest (publishable token) signs up a customer."""
    actor = _actor()
    allowed = GUEST_ATTRIBUTES if actor.role == users.GUEST else ADMIN_ATTRIBUTES
    # A guest signs up a customer; an administrator also says which role (documented).
    required = CREATE.required | ({"role"} if actor.role != users.GUEST else set())
    parsed = CREATE.read(allowed=allowed, required=frozenset(required))
    member = users.register_user(
        actor,
        _fields(parsed.attributes),
        ip=request.remote_addr,
        captcha_token=parsed.captcha_token,
    )
    return _member_document(member, request_locale(actor.account), status=201)


def _filter(name: str, choices: tuple[str, ...]) -> str | None:
    key = f"filter[{name}]"
    value = request.args.get(key)
    if value is not None and value not in choices:
        jsonapi.fail_parameter(key, f"{key} must be one of: {', '.join(choices)}.")
    return value


@bp.get("/users")
@query.takes(LIST_QUERY)
@require_token(*users.MANAGERS)
def list_users() -> Response:
    """The account's users (its own and the global users who joined it), by username;
    `filter[status]`, `filter[role]`, `search` (part of a username or email)."""
    actor = _actor()
    locale = request_locale(actor.account)
    status = _filter("status", users.LISTED_STATUSES)
    role = _filter("role", ROLES)
    search = request.args.get("search")
    if search is not None and (
        len(search) > users.SEARCH_MAX or any(ord(c) < 32 or c == "\x7f" for c in search)
    ):
        jsonapi.fail_parameter(
            "search", f"search must be at most {users.SEARCH_MAX} printable characters."
        )
    number = jsonapi.page_param("number", 1, PAGE_NUMBER_MAX)
    size = jsonapi.page_param("size", PAGE_SIZE, PAGE_SIZE_MAX)
    sort = [(names.field_of(key.name), key.descending) for key in query.current().sort]
    members, total = users.list_members(
        actor.account, status=status, role=role, search=search, page=number, size=size, sort=sort
    )
    return jsonapi.document(
        [user_resource(m.user, m.role) for m in members],
        meta={"locale": locale, "totalCount": total},
        links=jsonapi.page_links(number, size, total),
        included=_included([m.user for m in members], locale),
    )


@bp.get("/users/<user_id>")
@query.takes(ONE_QUERY)
@require_token(*users.MANAGERS)
def get_user(user_id: str) -> Response:
    """One user of the token's account (404 for any other, the test twin's included)."""
    actor = _actor()
    return _member_document(users.get_member(actor.account, user_id), request_locale(actor.account))


@bp.patch("/users/<user_id>")
@require_token(*users.MANAGERS)
def update_user(user_id: str) -> Response:
    """An administrator changes a user; a new password, role or status voids its tokens."""
    actor = _actor()
    member = users.get_member(actor.account, user_id)  # 404 before any body error
    attrs = UPDATE.read(require_id=member.user.id).attributes
    member = profile.update_user(actor, user_id, _fields(attrs), ip=request.remote_addr)
    return _member_document(member, request_locale(actor.account))


@bp.delete("/users/<user_id>")
@require_token(*users.MANAGERS)
def delete_user(user_id: str) -> Response:
    """Remove a user from the account; every token of the user stops at once."""
    users.delete_user(_actor(), user_id)
    return jsonapi.no_content()


# --- /v1/user -------------------------------------------------------------------------


@bp.get("/user")
@query.takes(ONE_QUERY)
@require_token(*ROLES)  # not guests; client tokens have no user (404)
def current_user() -> Response:
    """The user the access token speaks for (not for guests or client tokens)."""
    user, account = _current()
    role = users.role_in(user, account)
    if role is None:
        raise NotFound("This token's user is not a member of the account.")
    return _member_document(users.Member(user, role), _locale_of(user, account))


@bp.patch("/user")
@require_token(*ROLES)
def update_current_user() -> Response:
    """The current user changes their own profile (not role, status, password or
    emailVerified); a new email is unverified and gets a verification link."""
    user, account = _current()
    attrs = UPDATE_SELF.read(require_id=user.id).attributes
    member = profile.update_current_user(
        user,
        account,
        _fields(attrs),
        ip=request.remote_addr,
        keep=tokens.Survivor.of(current_token()),
    )
    return _member_document(member, _locale_of(user, account))


# --- OpenAPI --------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*statuses: int) -> dict[str, Any]:
    return openapi.error_responses(*statuses)


def _one(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {jsonapi.MEDIA_TYPE: {"schema": _ref("UserDocument")}},
    }


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {jsonapi.MEDIA_TYPE: {"schema": _ref(schema)}}}


_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_WRITABLE: dict[str, Any] = {name: attr.schema() for name, attr in ATTRIBUTES.items()}


_ID = {"name": "user_id", "in": "path", "required": True, "schema": {**_STR, "format": "uuid"}}
_LOCALE = {"$ref": "#/components/parameters/locale"}

OPENAPI: dict[str, Any] = {
    "paths": {
        "/users": {
            "post": {
                "summary": "Create a user (a guest token signs up a customer)",
                "description": "Guests may not set status, emailVerified or a role other than "
                "customer. status pending (no password) emails an activation link; an "
                "unverified email gets a verification link; phoneVerificationCode with "
                "authMethod tfa_sms becomes the first login's OTP. A guest signs up at "
                "most 20 users an hour from one IP (429).",
                "operationId": "createUser",
                "requestBody": _body("UserCreate"),
                "responses": {
                    "201": _one("The created user"),
                    **_errors(400, 401, 403, 409, 413, 415, 422, 429, 503),
                },
            },
            "get": {
                "summary": "List the account's users",
                "operationId": "listUsers",
                "parameters": [
                    {"$ref": "#/components/parameters/pageNumber"},
                    {"$ref": "#/components/parameters/pageSize"},
                    {"name": "filter[status]", "in": "query", "schema": _WRITABLE["status"]},
                    {"name": "filter[role]", "in": "query", "schema": _WRITABLE["role"]},
                    {
                        "name": "search",
                        "in": "query",
                        "description": "Part of a username or email (literal, case-insensitive)",
                        "schema": {
                            **_STR,
                            "maxLength": users.SEARCH_MAX,
                            "pattern": "^[^\\x00-\\x1f\\x7f]*$",
                        },
                    },
                    _LOCALE,
                ],
                "responses": {
                    "200": {
                        "description": "One page of users, meta.totalCount, pagination links",
                        "content": {jsonapi.MEDIA_TYPE: {"schema": _ref("UserList")}},
                    },
                    **_errors(400, 401, 403),
                },
            },
        },
        "/users/{user_id}": {
            "get": {
                "summary": "Retrieve a user",
                "operationId": "getUser",
                "parameters": [_ID, _LOCALE],
                "responses": {"200": _one("The user"), **_errors(401, 403, 404)},
            },
            "patch": {
                "summary": "Update a user",
                "description": "Nobody changes their own role, status, password or "
                "emailVerified here, or switches their own two-step login off; only the owner "
                "changes the owner or makes an owner; a global member's role only. A new "
                "password, role or a status other than active voids the user's tokens.",
                "operationId": "updateUser",
                "parameters": [_ID, _LOCALE],
                "requestBody": _body("UserUpdate"),
                "responses": {
                    "200": _one("The updated user"),
                    **_errors(400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
                },
            },
            "delete": {
                "summary": "Delete a user",
                "description": "Soft delete: status deleted, personal data wiped, username "
                "freed, every token stopped. A global member loses only its membership.",
                "operationId": "deleteUser",
                "parameters": [_ID],
                "responses": {"204": {"description": "Deleted"}, **_errors(401, 403, 404)},
            },
        },
        "/user": {
            "get": {
                "summary": "Retrieve the current user",
                "operationId": "getCurrentUser",
                "parameters": [_LOCALE],
                "responses": {"200": _one("The current user"), **_errors(401, 403, 404)},
            },
            "patch": {
                "summary": "Update the current user",
                "description": "A new email is unverified and gets a verification link; "
                "tfa_sms or a new phone of a tfa_sms user needs phoneVerificationCode; "
                "tfa_email needs a verified email, or emailVerificationCode (from POST "
                "/v1/email_verification_codes) in the same request. A user with two-step "
                "login also gives currentPassword to change authMethod or (tfa_sms) "
                "phoneNumber. allowSupportLogin false ends every support login at once.",
                "operationId": "updateCurrentUser",
                "requestBody": _body("CurrentUserUpdate"),
                "responses": {
                    "200": _one("The updated user"),
                    **_errors(400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
                },
            },
        },
    },
    "schemas": {
        "User": {
            "type": "object",
            "required": ["type", "id"],  # fields[User]= may leave no attributes
            "properties": {
                "type": {"const": "User"},
                "id": {**_STR, "format": "uuid"},
                "attributes": {
                    "type": "object",
                    "properties": {
                        "status": {"enum": [str(s) for s in users.LISTED_STATUSES]},
                        **{
                            k: v
                            for k, v in _WRITABLE.items()
                            if k
                            not in (
                                "password",
                                "phoneVerificationCode",
                                "emailVerificationCode",
                                "status",
                                "currentPassword",
                            )
                        },
                        "emailVerifiedAt": {**_NSTR, "format": "date-time", "readOnly": True},
                        "passwordUpdatedAt": {**_NSTR, "format": "date-time", "readOnly": True},
                        "createdAt": {**_STR, "format": "date-time", "readOnly": True},
                        "updatedAt": {**_STR, "format": "date-time", "readOnly": True},
                        "lastLoginAt": {**_NSTR, "format": "date-time", "readOnly": True},
                        "emailAddedAt": {**_NSTR, "format": "date-time", "readOnly": True},
                    },
                },
                "relationships": {
                    "type": "object",
                    "properties": {
                        "account": {
                            "type": "object",
                            "description": "null for a global user",
                            "properties": {"data": {"type": ["object", "null"]}},
                        }
                    },
                },
            },
        },
        "UserDocument": {
            "type": "object",
            "properties": {
                "data": _ref("User"),
                "meta": {"type": "object", "properties": {"locale": _STR}},
            },
        },
        "UserList": {
            "type": "object",
            "properties": {
                "data": {"type": "array", "items": _ref("User")},
                "meta": {
                    "type": "object",
                    "properties": {"locale": _STR, "totalCount": {"type": "integer"}},
                },
                "links": {"type": "object"},
            },
        },
        "UserCreate": CREATE.schema(),
        "UserUpdate": UPDATE.schema(),
        "CurrentUserUpdate": UPDATE_SELF.schema(),
    },
}
