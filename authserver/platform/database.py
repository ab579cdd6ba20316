"""How a use case ends its unit of work: one commit, rolled back on any failure, with a
constraint violation turned into a domain Conflict unless the caller says otherwise."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from authserver.platform.errors import Conflict
from authserver.platform.extensions import db


def commit(conflict: Conflict | bool = True) -> None:
    """Commit the session's transaction; on any failure roll it back and re-raise.

    A constraint that refuses the write (an IntegrityError: a value taken meanwhile, a row
    deleted meanwhile) becomes `conflict` if it is a Conflict, a generic Conflict (409) for
    True, and stays the database's own error for False. The caller emits its event only
    after this returns, so nothing is announced for work that rolled back.
    """
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        if conflict is False:
            raise
        if conflict is True:
            conflict = Conflict("The change conflicts with existing data.")
        raise conflict from None
    except BaseException:
        db.session.rollback()
        raise
