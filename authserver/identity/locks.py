"""Row locks that serialise the checks one account's writes must not race past."""

from __future__ import annotations

from sqlalchemy import select

from authserver.platform.extensions import db
from authserver.platform.models import Account


def lock_account(account: Account) -> None:
    """Serialise username and email checks within one account (a row lock until commit on
    PostgreSQL), so two concurrent creations cannot both pass them. SQLite has no row
    locks: there the unique indexes refuse the loser at its flush or commit."""
    db.session.execute(select(Account.id).where(Account.id == account.id).with_for_update())
