"""Which browser origins may read /v1 with an account's tokens: the account's
`allowed_origins` (exact origins; see `platform.cors.check_origin` for their form)."""

from __future__ import annotations

from sqlalchemy import String, cast, select

from authserver.platform.cors import check_origin
from authserver.platform.errors import ValidationFailed
from authserver.platform.extensions import db
from authserver.platform.models import Account, AccountStatus

MAX_ORIGINS = 20
FIELD = "allowed_origins"


def check_origins(value: object) -> list[str]:
    """The new list: each a valid origin, at most MAX_ORIGINS, duplicates dropped."""
    if not isinstance(value, list):
        raise ValidationFailed("Must be a list of origins.", field=FIELD, code="invalid_type")
    if len(value) > MAX_ORIGINS:
        raise ValidationFailed(f"At most {MAX_ORIGINS} origins.", field=FIELD, code="too_many")
    clean: list[str] = []
    for item in value:
        origin = check_origin(item, FIELD)
        if origin not in clean:
            clean.append(origin)
    return clean


def canonical(origin: str) -> str | None:
    """The Origin header's value if it is an origin an account could list, else None.
    Browsers send the canonical form; anything else (`null`, a path) matches nothing."""
    try:
        return origin if check_origin(origin) == origin else None
    except ValidationFailed:
        return None


def allowed_for(account_id: str, origin: str) -> bool:
    """Whether the (active) account lists `origin`."""
    account = db.session.get(Account, account_id)
    return (
        account is not None
        and account.status == AccountStatus.ACTIVE
        and origin in (account.allowed_origins or [])
    )


def listed_anywhere(origin: str) -> bool:
    """Whether some active account lists `origin` (the preflight's question: it carries
    no token, so no account). The text match narrows the rows; the list decides."""
    if canonical(origin) is None:
        return False
    rows = db.session.scalars(
        select(Account.allowed_origins)
        .where(
            Account.status == AccountStatus.ACTIVE,
            cast(Account.allowed_origins, String).contains(f'"{origin}"', autoescape=True),
        )
        .limit(20)
    )
    return any(origin in (listed or []) for listed in rows)
