"""Known devices (OWASP "device cookies"): a signed token handed to a browser or app at a
successful login, which later lets that device past the per-user lockout that strangers
exhausted, within a small failure budget of its own (the login throttle uses it).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from itsdangerous import BadData, URLSafeTimedSerializer

from authserver.platform.models import User
from authserver.platform.security import random_token

LIFETIME = 365 * 24 * 3600  # seconds a device stays known without a new login
TOKEN_MAX = 512  # longer input is not a device token (ours are about 150 characters)
SALT = "authserver.device"  # keeps these signatures apart from the session cookie's


@dataclass(frozen=True)
class Device:
    id: str  # random, names the device's own failure counter
    user_id: str  # the user whose correct login made the token


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def issue(user: User, device_id: str | None = None) -> str:
    """A new device token for `user`, to hand to the device that just logged in; it keeps
    naming `device_id` (a device seen before) or else a new random device."""
    return _serializer().dumps({"d": device_id or random_token(16), "u": user.id})


def read(token: object) -> Device | None:
    """The device a token names, if we signed it for a login within LIFETIME; else None
    (absent, forged, expired or malformed tokens are simply not a known device)."""
    if not isinstance(token, str) or not token or len(token) > TOKEN_MAX or not token.isascii():
        return None  # ours are short ASCII; anything else is not worth decoding
    try:
        data = _serializer().loads(token, max_age=LIFETIME)
    except BadData:
        return None
    if not isinstance(data, dict):
        return None
    device_id, user_id = data.get("d"), data.get("u")
    if not isinstance(device_id, str) or not isinstance(user_id, str):
        return None
    return Device(device_id, user_id)
