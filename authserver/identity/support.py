"""Support login (seed 004 `allow_support_login`): a support specialist obtains a short
token for a user of the same account, through RFC 8693 token exchange, only while the
user allows it. Never for an owner, never across accounts, never from a token that is
itself a support login (no chains). Each one is in the user's login history (who, when)
and mailed to them; turning the permission off ends every such token at once.

Each support login's tokens form their own family, `support:<login record id>`, so
ending them is `revoke_family` on the recent support logins of the user: the user's own
logins go on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from authserver.identity import tokens, users
from authserver.platform.database import commit
from authserver.platform.errors import Forbidden, NotFound
from authserver.platform.events import stage
from authserver.platform.extensions import db
from authserver.platform.models import (
    Account,
    AccountStatus,
    LoginMethod,
    LoginRecord,
    Role,
    User,
    UserStatus,
    utcnow,
)

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN
EVENT = "identity.support_login.create.success"
AGENT_ROLE = Role.SUPPORT_SPECIALIST


@dataclass(frozen=True)
class SupportLogin:
    """A granted support login: who for, with which role, the principal of its tokens."""

    principal: tokens.Principal
    lifetime: int


def lifetime() -> int:
    """SUPPORT_LOGIN_LIFETIME, but never longer than an ordinary access token: a revoked
    family's deny-list row lasts ACCESS_TOKEN_LIFETIME, and must outlive the token."""
    config = current_app.config
    return min(int(config["SUPPORT_LOGIN_LIFETIME"]), int(config["ACCESS_TOKEN_LIFETIME"]))


def family_of(record_id: int) -> str:
    return f"support:{record_id}"


def start(
    actor_token: str,
    subject_id: str,
    *,
    client_id: str,
    client_account_id: str,
    ip: str | None,
    user_agent: str | None,
) -> SupportLogin:
    """Check the agent's access token and the user's consent; record the login, mail the
    user and return the principal of the short token. The requesting client must be one
    of the agent's account (`client_account_id`). Raises Unauthenticated (bad actor
    token), Forbidden (not allowed) or NotFound (no such user in the agent's account)."""
    agent = tokens.validate_access_token(actor_token)
    if agent.claims.get("act") is not None:
        raise Forbidden("A support login cannot start another one.", code="support_chain")
    if agent.role != AGENT_ROLE or agent.user_id is None or agent.account_id is None:
        raise Forbidden("Only a support specialist's token may log in as a user.")
    account = db.session.get(Account, agent.account_id)
    if account is None or account.status != AccountStatus.ACTIVE or account.id != client_account_id:
        raise Forbidden("This client does not serve the support specialist's account.")
    member = users.get_member(account, subject_id)  # NotFound for other accounts' users
    user = member.user
    if user.id == agent.user_id:
        raise Forbidden("Log in as yourself with your own password.", code="support_self")
    if member.role == Role.OWNER:
        raise Forbidden("An owner cannot be logged in as.", code="support_owner")
    if user.status != UserStatus.ACTIVE:
        raise NotFound("No such user.")
    if not user.allow_support_login:
        raise Forbidden("The user does not allow support login.", code="support_not_allowed")
    record = LoginRecord(
        account_id=account.id,
        user_id=user.id,
        client_id=client_id,
        ip=ip,
        user_agent=(user_agent or "")[:512] or None,
        method=LoginMethod.SUPPORT,
        success=True,
        actor_id=agent.user_id,
    )
    db.session.add(record)
    db.session.flush()  # the id names the family
    principal = replace(
        tokens.user_principal(user, account, member.role, ()),
        family_id=family_of(record.id),
        actor_id=agent.user_id,
    )
    agent_user = db.session.get(User, agent.user_id)
    # In the login's own transaction: the record and the user's mail commit together.
    stage(EVENT, user=user, account=account, agent=agent_user.username if agent_user else "")
    commit()
    return SupportLogin(principal, lifetime())


def end_all(user: User) -> int:
    """End every support login of the user that may still have a live token; returns how
    many. Each is a `revoke_family` (durable, commits)."""
    since = utcnow() - timedelta(seconds=lifetime() + tokens.LEEWAY)
    ids = list(
        db.session.scalars(
            select(LoginRecord.id).where(
                LoginRecord.user_id == user.id,
                LoginRecord.method == LoginMethod.SUPPORT,
                LoginRecord.created_at >= since,
            )
        )
    )
    for record_id in ids:
        tokens.revoke_family(family_of(record_id), user.id)
    return len(ids)
