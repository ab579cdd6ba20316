"""The `/v1` blueprint that every resource module adds its routes to, with the JSON:API
hooks (content negotiation, error rendering) installed on it."""

from __future__ import annotations

from flask import Blueprint

from . import jsonapi, query

bp = Blueprint("api", __name__, url_prefix="/v1")
# Hooks go on at import: a blueprint cannot take new hooks once an app has registered it.
jsonapi.install(bp)
bp.before_request(query.read)  # after negotiation: sort, fields[...], include
