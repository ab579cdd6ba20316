"""The hosted HTML pages (blueprint `pages`): login with its second step, logout, the
signed-in landing page, and the pages the emailed links open (reset, activation,
email verification). Views parse a form, call one use case and render.
"""

from __future__ import annotations

from flask import Flask

from authserver.identity import passkeys as passkey_rules
from authserver.platform.web import add_error_renderer, guard_input, same_origin_posts

from . import captcha, common, passkeys, security, selfservice, signin  # noqa: F401 - register their routes
from .blueprint import bp


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    # Templates offer passkeys only where browsers allow them (not on an IP origin).
    app.jinja_env.globals["passkeys_available"] = passkey_rules.available
    # Last: the API and OAuth renderers claim their own prefixes first.
    add_error_renderer(app, common.owns_path, common.render_http_error)
    # Page forms pass their text straight to the use cases: NULs stop here, as a 400 page.
    guard_input(app, common.owns_path)
    # Every page form is ours: a POST that another site sent is refused (Origin check).
    same_origin_posts(app, common.owns_path)
    # The page hooks (language, headers) are the blueprint's own (blueprint.py): no other
    # request pays for them. The CSRF check stays app-wide: a form is protected by
    # default, and exempt requests (/v1, the token endpoint) leave it after one lookup.
