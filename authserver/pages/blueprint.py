"""The `pages` blueprint that the page modules add their routes to; domain errors that a
view does not handle itself render as an HTML error page."""

from __future__ import annotations

from flask import Blueprint

from authserver.platform.errors import DomainError

from . import common

bp = Blueprint("pages", __name__)
bp.register_error_handler(DomainError, common.render_domain_error)
