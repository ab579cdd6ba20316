"""Extension objects shared by the app (database, CSRF, migrations) and accessors for the
per-app services (`store()`, `passwords()`) that `create_app` sets up (`keyring()` is in
platform/keys.py, which reads its table through these).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

if TYPE_CHECKING:
    from authserver.platform.security import Passwords
    from authserver.platform.store import Store

# Stable constraint names, so Alembic (and SQLite batch mode) can find them again.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


db = SQLAlchemy(model_class=Base)
csrf = CSRFProtect()
migrate = Migrate()


def store() -> Store:
    """The app's short-lived store."""
    return current_app.extensions["authserver.store"]


def passwords() -> Passwords:
    """The app's password hasher."""
    return current_app.extensions["authserver.passwords"]
