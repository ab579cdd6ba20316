"""Global users and accounts: `POST /v1/global_users` (sign-up, when GLOBAL_SIGNUP is on),
`POST /v1/accounts` (a global user creates an account pair
and owns it), `/v1/memberships` (owner and administrators: the account's global members)
and `/v1/user/memberships` (a global user's own accounts; leaving one).
"""

from __future__ import annotations

from typing import Any

from flask import Response, request

from authserver.identity import memberships, tokens
from authserver.platform.models import ROLES, Account, AccountMembership, Role, User

from . import bodies, jsonapi, names, openapi, query
from .accounts import account_resource
from .auth import current_token, require_token
from .blueprint import bp
from .users import ATTRIBUTES as USER_ATTRIBUTES
from .users import _actor, _current, user_resource

MANAGERS = (Role.OWNER, Role.ADMINISTRATOR)
ROLE = bodies.text(32, enum=list(ROLES))
CREATE_ACCOUNT = bodies.Body(
    "Account",
    {"name": bodies.text(255, pattern=bodies.NAME_PATTERN)},
    required=frozenset({"name"}),
)
ADD = bodies.Body(
    "Membership",
    {
        "username": bodies.text(
            255, pattern=bodies.USERNAME_PATTERN, description="The global user's email"
        ),
        "role": ROLE,
    },
    required=frozenset({"username", "role"}),
)
CHANGE = bodies.Body("Membership", {"role": ROLE}, required=frozenset({"role"}), update=True)
SIGN_UP = bodies.Body(
    "User",
    {
        names.attribute_of(field): USER_ATTRIBUTES[names.attribute_of(field)]
        for field in sorted(memberships.SIGN_UP_FIELDS)
    },
    required=frozenset({"username", "password"}),
)


MEMBERSHIP_FIELDS = frozenset(
    {"role", "username", "accountName", "accountMode", "createdAt", "user", "account"}
)
MEMBERSHIPS_QUERY = query.QuerySpec(
    types={"Membership": MEMBERSHIP_FIELDS}, params=frozenset({"page[number]", "page[size]"})
)
MY_MEMBERSHIPS_QUERY = query.QuerySpec(types={"Membership": MEMBERSHIP_FIELDS})


def membership_resource(membership: AccountMembership) -> dict[str, Any]:
    """The wire shape of a membership: who, where, with which role."""
    user: User = membership.user
    account: Account = membership.account
    return jsonapi.resource(
        "Membership",
        membership.id,
        {
            "role": membership.role,
            "username": user.username,
            "accountName": account.name,
            "accountMode": account.mode,
            "createdAt": membership.created_at,
        },
        relationships={
            "user": {"data": {"type": "User", "id": user.id}},
            "account": {"data": {"type": "Account", "id": account.id}},
        },
    )


def _token_user() -> User:
    """The token's user (404 for guest and client tokens)."""
    user, _ = _current()
    return user


# --- POST /v1/global_users -------------------------------------------------------------


@bp.post("/global_users")
def sign_up() -> Response:
    """Sign up as a global user (no token; 404 unless GLOBAL_SIGNUP is on): pending until
    the emailed link verifies the address (201)."""
    attrs = SIGN_UP.read().attributes
    fields = {names.field_of(name): value for name, value in attrs.items()}
    user = memberships.sign_up(fields, ip=request.remote_addr)
    return jsonapi.document(user_resource(user), status=201)


# --- POST /v1/accounts ----------------------------------------------------------------


@bp.post("/accounts")
@require_token(*ROLES)  # a user token; the user must be global (else 403)
def create_account() -> Response:
    """A global user creates a live account and its test account and owns both (201)."""
    user = _token_user()
    name = CREATE_ACCOUNT.read().attributes["name"]
    made = memberships.create_owned_account(user, name)
    return jsonapi.document(
        account_resource(made.live, made.live.default_locale),
        status=201,
        headers={"Location": "/v1/account"},
    )


# --- /v1/memberships ------------------------------------------------------------------


@bp.get("/memberships")
@query.takes(MEMBERSHIPS_QUERY)
@require_token(*MANAGERS)
def list_memberships() -> Response:
    """The token account's global members, oldest membership first, paginated."""
    actor = _actor()
    number = jsonapi.page_param("number", 1, jsonapi.PAGE_NUMBER_MAX)
    size = jsonapi.page_param("size", jsonapi.PAGE_SIZE, jsonapi.PAGE_SIZE_MAX)
    rows, total = memberships.list_memberships(actor.account, page=number, size=size)
    return jsonapi.document(
        [membership_resource(m) for m in rows],
        meta={"totalCount": total},
        links=jsonapi.page_links(number, size, total),
    )


@bp.post("/memberships")
@require_token(*MANAGERS)
def add_membership() -> Response:
    """Add an existing global user, by username, to the account with a role (201)."""
    actor = _actor()
    attrs = ADD.read().attributes
    membership = memberships.add_membership(actor, attrs["username"], attrs["role"])
    return jsonapi.document(
        membership_resource(membership),
        status=201,
        headers={"Location": f"/v1/memberships/{membership.id}"},
    )


@bp.patch("/memberships/<membership_id>")
@require_token(*MANAGERS)
def change_membership(membership_id: str) -> Response:
    """Change a member's role here; the user's tokens stop (they carry the old role)."""
    actor = _actor()
    membership = memberships.get_membership(actor.account, membership_id)  # 404 first
    role = CHANGE.read(require_id=membership.id).attributes["role"]
    membership = memberships.change_role(actor, membership.id, role)
    return jsonapi.document(membership_resource(membership))


@bp.delete("/memberships/<membership_id>")
@require_token(*MANAGERS)
def remove_membership(membership_id: str) -> Response:
    """Remove a global user from the account; every token of the user stops (204)."""
    memberships.remove_membership(_actor(), membership_id)
    return jsonapi.no_content()


# --- /v1/user/memberships -------------------------------------------------------------


@bp.get("/user/memberships")
@query.takes(MY_MEMBERSHIPS_QUERY)
@require_token(*ROLES)
def my_memberships() -> Response:
    """The accounts the current global user belongs to (an account user has none)."""
    user = _token_user()
    rows = memberships.my_memberships(user)
    return jsonapi.document([membership_resource(m) for m in rows], meta={"totalCount": len(rows)})


@bp.delete("/user/memberships/<membership_id>")
@require_token(*ROLES)
def leave_membership(membership_id: str) -> Response:
    """The current global user leaves an account (not its last owner: 409). Their tokens
    stop, but for this one when it is a global login (for no account)."""
    user = _token_user()
    claims = current_token()
    keep = tokens.Survivor.of(claims) if claims.account_id is None else None
    memberships.leave(user, membership_id, keep=keep)
    return jsonapi.no_content()


# --- OpenAPI --------------------------------------------------------------------------

_ATTRIBUTES: dict[str, Any] = {
    "role": {"type": "string", "enum": list(ROLES)},
    "username": {"type": "string", "readOnly": True},
    "accountName": {"type": "string", "readOnly": True},
    "accountMode": {"type": "string", "enum": ["live", "test"], "readOnly": True},
    "createdAt": {"type": "string", "format": "date-time", "readOnly": True},
}
_DOC = {"$ref": "#/components/schemas/MembershipDocument"}
_LIST = {"$ref": "#/components/schemas/MembershipList"}
_ID = {
    "name": "membership_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
_PAGING = [
    {"$ref": "#/components/parameters/pageNumber"},
    {"$ref": "#/components/parameters/pageSize"},
]

OPENAPI: dict[str, Any] = {
    "schemas": {
        "MembershipDocument": openapi.resource_document("Membership", _ATTRIBUTES, with_id=True),
        "MembershipList": openapi.resource_list("Membership", _ATTRIBUTES),
    },
    "paths": {
        "/global_users": {
            "post": {
                "summary": "Sign up as a global user (when GLOBAL_SIGNUP is on)",
                "description": "The username is the email. The user is pending until the "
                "emailed link verifies the address; then it logs in without aid and creates "
                "or joins accounts. At most 20 sign-ups an hour from one IP (429); 404 while "
                "GLOBAL_SIGNUP is off.",
                "operationId": "signUpGlobalUser",
                "requestBody": bodies.request_body(SIGN_UP),
                "responses": {
                    "201": openapi.body({"$ref": "#/components/schemas/UserDocument"}, "The user"),
                    **openapi.error_responses(404, 413, 415, 429),
                },
            }
        },
        "/accounts": {
            "post": {
                "summary": "A global user creates an account pair and becomes its owner",
                "description": "The caller (a global user) becomes owner of the live account "
                "and its test account. At most 10 accounts a user an hour (429).",
                "operationId": "createAccount",
                "requestBody": bodies.request_body(CREATE_ACCOUNT),
                "responses": {
                    "201": openapi.body(
                        {"$ref": "#/components/schemas/AccountDocument"}, "The live account"
                    ),
                    **openapi.error_responses(404, 413, 415, 429),
                },
            }
        },
        "/memberships": {
            "get": {
                "summary": "The account's global members",
                "operationId": "listMemberships",
                "parameters": _PAGING,
                "responses": {"200": openapi.body(_LIST, "One page of memberships")},
            },
            "post": {
                "summary": "Add an existing global user by username with a role",
                "operationId": "addMembership",
                "requestBody": bodies.request_body(ADD),
                "responses": {
                    "201": openapi.body(_DOC, "The membership"),
                    **openapi.error_responses(404, 413, 415),
                },
            },
        },
        "/memberships/{membership_id}": {
            "patch": {
                "summary": "Change a member's role; the user's tokens stop",
                "operationId": "changeMembership",
                "parameters": [_ID],
                "requestBody": bodies.request_body(CHANGE),
                "responses": {
                    "200": openapi.body(_DOC, "The changed membership"),
                    **openapi.error_responses(404, 413, 415),
                },
            },
            "delete": {
                "summary": "Remove a global user from the account; the user's tokens stop",
                "operationId": "removeMembership",
                "parameters": [_ID],
                "responses": {
                    "204": {"description": "Removed"},
                    **openapi.error_responses(404),
                },
            },
        },
        "/user/memberships": {
            "get": {
                "summary": "The accounts the current global user belongs to",
                "operationId": "listMyMemberships",
                "responses": {
                    "200": openapi.body(_LIST, "Memberships"),
                    **openapi.error_responses(404),
                },
            }
        },
        "/user/memberships/{membership_id}": {
            "delete": {
                "summary": "Leave an account (not as its only owner: 409)",
                "operationId": "leaveMembership",
                "parameters": [_ID],
                "responses": {
                    "204": {"description": "Left"},
                    **openapi.error_responses(404, 409),
                },
            }
        },
    },
}
