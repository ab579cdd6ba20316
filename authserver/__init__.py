"""authserver: an OAuth 2.0 / OpenID Connect authorization server with two-factor login.

`create_app` is the app factory: a short list of setup steps.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from flask import Flask

from authserver import api, oauth, pages
from authserver.identity import token_cache
from authserver.platform import (
    background,
    database,
    delivery,
    i18n,
    logs,
    metrics,
    notifications,
    web,
    webhooks,
)
from authserver.platform import models as _models  # noqa: F401 - registers the tables on db.metadata
from authserver.platform.config import ConfigError, load_config
from authserver.platform.database import DatabaseUnavailable
from authserver.platform.extensions import csrf, db, migrate
from authserver.platform.hashgate import HashGate, auto_permits
from authserver.platform.keys import KeyRing, KeysMissing
from authserver.platform.security import Argon2Params, Passwords
from authserver.platform.store import Store, StoreUnavailable

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(PACKAGE_DIR)
__all__ = ["ConfigError", "create_app"]


def _bundled(name: str) -> str:
    """The folder `templates` or `static`: inside the package in an installed wheel (the build
    maps them there), else at the top level of the checkout, where they are kept."""
    packaged = os.path.join(PACKAGE_DIR, name)
    return packaged if os.path.isdir(packaged) else os.path.join(ROOT, name)


def _default_instance_path() -> str | None:
    """`instance/` of the checkout; for an installed wheel, Flask's default for an installed
    package (`<venv>/var/authserver-instance`) rather than a folder inside site-packages."""
    if os.path.isdir(os.path.join(PACKAGE_DIR, "templates")):
        return None
    return os.path.join(ROOT, "instance")


def create_app(test_config: dict[str, Any] | None = None, *, require_keys: bool = True) -> Flask:
    """Build the app. Raises ConfigError for bad or unsafe settings.

    `require_keys=False` is for the CLI, so `authserver keys rotate` can make the first key.
    """
    app = Flask(
        __name__,
        instance_path=os.environ.get("AUTHSERVER_INSTANCE_PATH") or _default_instance_path(),
        instance_relative_config=True,
        template_folder=_bundled("templates"),
        static_folder=_bundled("static"),
    )
    load_config(app, test_config)
    logs.init_app(app)
    metrics.init_app(app)  # early: its after_request runs last and sees the final status
    db.init_app(app)
    database.init_app(app)  # bounded waits, faults -> DatabaseUnavailable
    migrate.init_app(
        app,
        db,
        directory=os.path.join(os.path.dirname(__file__), "platform", "migrations"),
        render_as_batch=True,
    )
    csrf.init_app(app)
    app.extensions["authserver.store"] = store = Store.from_url(
        app.config["REDIS_URL"], app.config["REDIS_PREFIX"], app.instance_path
    )
    if store.is_memory and "gunicorn" in sys.modules:
        # A gunicorn worker claims memory:// at boot, so a second worker refuses to start
        # (and gunicorn stops) instead of serving from a diverging copy.
        try:
            store.claim()
        except StoreUnavailable as exc:
            raise ConfigError(exc.detail) from None
    app.extensions["authserver.passwords"] = Passwords(
        Argon2Params(
            app.config["ARGON2_TIME_COST"],
            app.config["ARGON2_MEMORY_COST"],
            app.config["ARGON2_PARALLELISM"],
        ),
        HashGate(
            app.config["PASSWORD_HASH_CONCURRENCY"] or auto_permits(),
            app.config["PASSWORD_HASH_WAIT_MS"] / 1000,
        ),
    )
    with app.app_context():
        engine = db.engine
    app.extensions["authserver.keys"] = KeyRing(
        engine,
        app.config["KEY_ENCRYPTION_SECRET"] or app.config["SECRET_KEY"],
        max(app.config["ACCESS_TOKEN_LIFETIME"], app.config["ID_TOKEN_LIFETIME"]),
        app.config["KEY_PUBLISH_DELAY"],
        app.config["KEYS_CACHE_TTL"],
    )
    if require_keys and not (app.debug or app.testing):
        try:
            app.extensions["authserver.keys"].check()
        except KeysMissing as exc:
            raise ConfigError(exc.detail) from None
        except DatabaseUnavailable:
            # Not a configuration fault: the instance answers 503 until the database is
            # back, like every other request that needs it.
            pass
        finally:
            # No connection opened here may outlive the check: gunicorn forks after it.
            engine.dispose()
    token_cache.init_app(app, engine.dialect.name)
    i18n.init_app(app)
    notifications.init_app(app)  # stages mail and SMS, then
    webhooks.init_app(app)  # webhook deliveries, for every event
    delivery.init_app(app)  # the in-process delivery thread (OUTBOX_IN_PROCESS)
    background.init_app(app)
    web.init_app(app)
    oauth.init_app(app)
    api.init_app(app)
    pages.init_app(app)  # last: its error pages take every path the others do not own
    return app
