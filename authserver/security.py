"""Pure security helpers: password hashing (argon2id), random tokens and codes, digests.

Nothing here touches the app, the database or Redis; callers pass in what is needed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int
    memory_cost: int
    parallelism: int


class Passwords:
    """argon2id hashing with a precomputed dummy hash, so an unknown user costs the same time."""

    def __init__(self, params: Argon2Params):
        self._hasher = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_cost,
            parallelism=params.parallelism,
        )
        self._dummy_hash = self._hasher.hash(random_token(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True if `password` matches; with no hash, still spends one verify and says False."""
        try:
            return self._hasher.verify(password_hash or self._dummy_hash, password) and bool(
                password_hash
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


def random_token(nbytes: int = 32) -> str:
    """URL-safe random string with `nbytes` bytes (default 256 bits) from the OS CSPRNG."""
    return secrets.token_urlsafe(nbytes)


def random_digits(length: int = 6) -> str:
    """A code of `length` decimal digits, uniformly drawn (CSPRNG)."""
    return "".join(str(secrets.randbelow(10)) for _ in range(length))


def digest(value: str) -> str:
    """SHA-256 hex digest for looking up high-entropy secrets (tokens) stored hashed."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def keyed_digest(key: str, value: str) -> str:
    """HMAC-SHA256 for low-entropy codes (6 digits): without the key a leaked hash is useless."""
    return hmac.new(key.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two strings (any characters)."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def is_loopback_host(host: str) -> bool:
    """localhost or a loopback IP (RFC 8252 lets those use plain http)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mask_address(address: str) -> str:
    """An email or phone fit for logs and screens: `j***@example.com`, `+1***67`."""
    if "@" in address:
        local, _, domain = address.rpartition("@")
        return f"{local[:1]}***@{domain}"
    return f"{address[:2]}***{address[-2:]}" if len(address) > 6 else "***"
