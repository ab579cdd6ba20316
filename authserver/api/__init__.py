"""The identity API under /v1 (JSON:API). Resource modules add routes to the blueprint in
`blueprint.py`; `jsonapi` owns the wire format, negotiation and error rendering.
"""

from __future__ import annotations

from flask import Flask

from authserver.platform.extensions import csrf

from . import (  # noqa: F401 - routes
    accounts,
    apis,
    audit,
    clients,
    cors,
    email_codes,
    jsonapi,
    logins,
    memberships,
    openapi,
    passkeys,
    tfa,
    users,
    verification,
    webhooks,
)
from .blueprint import bp


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    # Callers authenticate with bearer tokens, not cookies, and bodies must be declared
    # JSON, which a cross-site form or CORS-simple request cannot send: no CSRF token needed.
    csrf.exempt(bp)
    jsonapi.init_app(app)
    cors.init_app(app)
    webhooks.init_app(app)
