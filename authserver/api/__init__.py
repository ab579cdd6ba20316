"""The identity API under /v1 (JSON:API). Resource modules add routes to `bp`;
`jsonapi` owns the wire format, negotiation and error rendering.
"""

from __future__ import annotations

from flask import Blueprint, Flask

from authserver.platform.extensions import csrf

from . import jsonapi

bp = Blueprint("api", __name__, url_prefix="/v1")
# Hooks go on at import: a blueprint cannot take new hooks once an app has registered it.
jsonapi.install(bp)


from . import accounts, logins, openapi, tfa, users, verification  # noqa: E402, F401 - register their routes on bp


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    # Callers authenticate with bearer tokens, not cookies, and bodies must be declared
    # JSON, which a cross-site form or CORS-simple request cannot send: no CSRF token needed.
    csrf.exempt(bp)
    jsonapi.init_app(app)
