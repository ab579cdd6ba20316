"""CORS (Fetch standard) headers, written in one place for every front door: the OAuth
endpoints answer any origin (`*`: they are public by design), /v1 echoes an origin its
account allows. Also what an allowed origin may look like (`check_origin`)."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from authserver.platform.errors import ValidationFailed

# How long a browser may reuse a preflight answer (Chromium caps it at 7200).
MAX_AGE = 600
ORIGIN_MAX = 255
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def response_headers(allow_origin: str, *, expose: Iterable[str]) -> dict[str, str]:
    """What an actual (non-preflight) response carries for a permitted cross-origin read:
    `allow_origin` is `*` or the request's own Origin (then the response must also say
    `Vary: Origin`, which the caller adds to whatever Vary it has)."""
    return {
        "Access-Control-Allow-Origin": allow_origin,
        "Access-Control-Expose-Headers": ", ".join(expose),
    }


def preflight_headers(
    allow_origin: str, *, methods: Iterable[str], headers: Iterable[str]
) -> dict[str, str]:
    """The answer to a permitted preflight (OPTIONS with Access-Control-Request-Method)."""
    return {
        "Access-Control-Allow-Origin": allow_origin,
        "Access-Control-Allow-Methods": ", ".join(methods),
        "Access-Control-Allow-Headers": ", ".join(headers),
        "Access-Control-Max-Age": str(MAX_AGE),
    }


def check_origin(value: object, field: str = "allowed_origins") -> str:
    """A web origin as browsers send it: `scheme://host[:port]`, https unless the host is
    loopback, no path, query, fragment or user; returned lower-cased, default port dropped,
    so it compares equal to the Origin header."""
    if not isinstance(value, str):
        raise ValidationFailed("An origin must be a string.", field=field, code="invalid_type")
    bad = ValidationFailed(
        "An origin is scheme://host[:port] (https, or http on a loopback host), nothing more.",
        field=field,
        code="invalid_origin",
    )
    if len(value) > ORIGIN_MAX or not value.isascii() or any(c in value for c in " \\\t"):
        raise bad
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise bad from None
    host = (parts.hostname or "").lower()
    scheme = parts.scheme.lower()
    if (
        scheme not in _DEFAULT_PORTS
        or not host
        or parts.path
        or parts.query
        or parts.fragment
        or "?" in value
        or "#" in value
        or parts.username is not None
        or parts.password is not None
        or value.endswith(":")
    ):
        raise bad
    if ":" in host:  # IPv6 literal: keep the brackets, as the Origin header does
        host = f"[{host}]"
    if scheme == "http" and host not in LOOPBACK_HOSTS:
        raise ValidationFailed(
            "An origin must be https (http only for localhost, 127.0.0.1 or [::1]).",
            field=field,
            code="insecure_origin",
        )
    shown_port = f":{port}" if port is not None and port != _DEFAULT_PORTS[scheme] else ""
    return f"{scheme}://{host}{shown_port}"
