"""Validation rules shared by every front door: usernames, emails, phones, passwords, URIs.

Each `check_*` returns the normalised value or raises ValidationFailed naming the field
(its domain name: `phone_number`, not a wire name).
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
from urllib.parse import urlsplit

from authserver.platform.errors import ValidationFailed
from authserver.platform.models import AUTH_METHODS, ROLES
from authserver.platform.security import is_loopback_host

USERNAME_RE = re.compile(r"^[a-z0-9@.+_-]+$")  # ASCII only: no confusable look-alikes
EMAIL_RE = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")
PHONE_RE = re.compile(r"^\+[1-9][0-9]{1,14}$")  # E.164
PASSWORD_MIN = 8
PASSWORD_MAX = 128
NAME_MAX = 255
CUSTOM_DATA_MAX = 16 * 1024  # bytes of JSON


def check_username(value: object, field: str = "username") -> str:
    if not isinstance(value, str):
        raise ValidationFailed("Username must be a string.", field=field, code="invalid_type")
    username = value.strip().lower()
    if not username:
        raise ValidationFailed("Username is required.", field=field, code="required")
    if len(username) > NAME_MAX:
        raise ValidationFailed("Username is too long (255 at most).", field=field, code="too_long")
    if not USERNAME_RE.match(username):
        raise ValidationFailed(
            "Username may contain only letters, digits and - @ . + _",
            field=field,
            code="invalid_username",
        )
    return username


def check_email(value: object, field: str = "email") -> str:
    if not isinstance(value, str):
        raise ValidationFailed("Email must be a string.", field=field, code="invalid_type")
    email = value.strip()
    local, _, domain = email.rpartition("@")
    # Lengths are checked on the stored form: lower-casing may lengthen the domain
    # (U+0130 becomes two code points), and the column holds 254.
    normalised = f"{local}@{domain.lower()}"
    if len(normalised) > 254 or len(local) > 64 or not EMAIL_RE.match(email):
        raise ValidationFailed("Email is not a valid address.", field=field, code="invalid_email")
    return normalised


def check_phone(value: object, field: str = "phone_number") -> str:
    if not isinstance(value, str):
        raise ValidationFailed("Phone number must be a string.", field=field, code="invalid_type")
    phone = value.strip()
    if not PHONE_RE.match(phone):
        raise ValidationFailed(
            "Phone number must be in E.164 form, e.g. +15551234567.",
            field=field,
            code="invalid_phone_number",
        )
    return phone


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords (loaded once, on first use)."""
    path = os.path.join(os.path.dirname(__file__), "data", "common-passwords.txt.gz")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return frozenset(line.strip() for line in fh if line.strip())


def check_password(value: object, *, username: str | None, email: str | None, field: str) -> str:
    """NIST 800-63B: length 8..128, no composition rules, not a common password, not the
    username or email."""
    if not isinstance(value, str):
        raise ValidationFailed("Password must be a string.", field=field, code="invalid_type")
    if len(value) < PASSWORD_MIN:
        raise ValidationFailed(
            f"Password must be at least {PASSWORD_MIN} characters.", field=field, code="too_short"
        )
    if len(value) > PASSWORD_MAX:
        raise ValidationFailed(
            f"Password must be at most {PASSWORD_MAX} characters.", field=field, code="too_long"
        )
    if "\x00" in value:
        raise ValidationFailed("Password must not contain NUL.", field=field, code="invalid")
    lowered = value.strip().lower()
    if lowered in common_passwords():
        raise ValidationFailed(
            "This password is too common: choose another.", field=field, code="too_common"
        )
    if lowered in {x.lower() for x in (username, email) if x}:
        raise ValidationFailed(
            "Password must differ from the username and email.", field=field, code="too_common"
        )
    return value


def check_choice(value: object, choices: tuple[str, ...], field: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValidationFailed(
            f"Must be one of: {', '.join(choices)}.", field=field, code="invalid_choice"
        )
    return value


def check_role(value: object, field: str = "role") -> str:
    return check_choice(value, ROLES, field)


def check_auth_method(value: object, field: str = "auth_method") -> str:
    return check_choice(value, AUTH_METHODS, field)


def check_name(value: object, field: str, max_len: int = NAME_MAX) -> str:
    if not isinstance(value, str):
        raise ValidationFailed("Must be a string.", field=field, code="invalid_type")
    text = value.strip()
    if not text:
        raise ValidationFailed("Must not be empty.", field=field, code="required")
    if len(text) > max_len or any(ord(c) < 32 for c in text):
        raise ValidationFailed(
            f"Must be at most {max_len} printable characters.", field=field, code="invalid"
        )
    return text


def check_custom_data(value: object, field: str = "custom_data") -> dict[str, object]:
    """A JSON object of at most CUSTOM_DATA_MAX bytes (user-defined data)."""
    if not isinstance(value, dict) or len(json.dumps(value)) > CUSTOM_DATA_MAX:
        raise ValidationFailed(
            f"Must be an object of at most {CUSTOM_DATA_MAX} bytes of JSON.",
            field=field,
            code="invalid",
        )
    return value


def check_redirect_uri(value: object, field: str = "redirect_uris") -> str:
    """Absolute, no fragment or userinfo; http only for loopback (RFC 8252); no script schemes."""
    if not isinstance(value, str) or len(value) > 2048 or any(ord(c) <= 32 for c in value):
        raise ValidationFailed("Redirect URI is not valid.", field=field, code="invalid_uri")
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if not scheme or parts.fragment or "#" in value or parts.username or parts.password:
        raise ValidationFailed(
            "Redirect URI must be absolute, without fragment or user info.",
            field=field,
            code="invalid_uri",
        )
    if scheme in ("javascript", "data", "vbscript", "file", "blob", "about"):
        raise ValidationFailed(
            "Redirect URI scheme is not allowed.", field=field, code="invalid_uri"
        )
    if scheme in ("http", "https") and not parts.hostname:
        raise ValidationFailed("Redirect URI needs a host.", field=field, code="invalid_uri")
    if scheme == "http" and not is_loopback_host(parts.hostname or ""):
        raise ValidationFailed(
            "Redirect URI must use https unless it is a loopback address.",
            field=field,
            code="invalid_uri",
        )
    if scheme not in ("http", "https") and "." not in scheme:
        # RFC 8252 7.1: private-use schemes are reverse domain names, e.g. com.example.app.
        raise ValidationFailed(
            "A custom redirect URI scheme must be a reverse domain name (com.example.app:/cb).",
            field=field,
            code="invalid_uri",
        )
    return value


def check_web_url(value: object, field: str) -> str:
    """An absolute http(s) URL with a host, at most 2048 characters."""
    if not isinstance(value, str) or len(value) > 2048 or any(ord(c) <= 32 for c in value):
        raise ValidationFailed("Must be an http(s) URL.", field=field, code="invalid_uri")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        raise ValidationFailed("Must be an http(s) URL.", field=field, code="invalid_uri")
    return value
