"""The `pages` blueprint that the page modules add their routes to, with the hooks of
every page (language, headers); domain errors that a view does not handle itself render
as an HTML error page."""

from __future__ import annotations

from flask import Blueprint

from authserver.platform.errors import DomainError

from . import common

bp = Blueprint("pages", __name__)
bp.register_error_handler(DomainError, common.render_domain_error)
# The page's language and headers; only page requests pay for them. An error page for a
# path no route matched gets both from common.render_http_error.
bp.before_request(common.choose_locale)
bp.after_request(common.page_headers)
