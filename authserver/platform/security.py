"""Pure security helpers: password hashing (argon2id, and verifying imported bcrypt and
Django PBKDF2 hashes), random tokens and codes, digests, TOTP (RFC 6238) matching,
otpauth:// URIs and their QR codes.

Nothing here touches the app, the database or Redis; callers pass in what is needed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from dataclasses import dataclass

import bcrypt
import pyotp
import qrcode
from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError
from qrcode.image.svg import SvgPathImage

from authserver.platform import attempts
from authserver.platform.hashgate import HashGate

TOTP_STEP = 30  # seconds (RFC 6238 5.2 default)
OTPAUTH_NAME_MAX = 64  # characters of issuer and account name in an otpauth:// label


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int
    memory_cost: int
    parallelism: int


class Passwords:
    """argon2id hashing with a precomputed dummy hash, so an unknown user costs the same time.

    Every hash and verify holds a slot of `gate` (hashgate.py), which bounds how many run at
    once in this process; without one, nothing is bounded (scripts, the CLI)."""

    def __init__(self, params: Argon2Params, gate: HashGate | None = None):
        self._hasher = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_cost,
            parallelism=params.parallelism,
        )
        started = time.perf_counter()
        self._dummy_hash = self._hasher.hash(random_token(16))
        self.gate = gate
        if gate is not None:
            # A hash costs what a verify does: the gate's first estimate of a check's length.
            gate.expect_hold(time.perf_counter() - started)

    def hash(self, password: str) -> str:
        # A new password is hashed once the request was decided (set, changed, rehashed
        # after a right one): it waits for its slot rather than fail half-way.
        if self.gate is None:
            return self._hasher.hash(password)
        with self.gate.slot(may_refuse=False):
            return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True if `password` matches; with no hash, still spends one verify and says False.
        Imported bcrypt and Django PBKDF2 hashes verify too (`needs_rehash` is then True).

        The attempt was judged: its throttle counts stand even if the request fails later.
        Raises PasswordCheckBusy (503) when the gate's line is too long: that comes before
        the check, so the counts are given back then."""
        if self.gate is None:
            return self._verify(password_hash, password)
        with self.gate.slot():
            return self._verify(password_hash, password)

    def _verify(self, password_hash: str | None, password: str) -> bool:
        attempts.settle()
        if password_hash and not password_hash.startswith("$argon2"):
            return verify_legacy(password_hash, password)
        try:
            return self._hasher.verify(password_hash or self._dummy_hash, password) and bool(
                password_hash
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True if the hash was made with other argon2 parameters than this hasher's (older
        or stronger settings alike), or is not argon2id at all (an imported bcrypt, PBKDF2,
        argon2i or argon2d hash): after a right password, hash it again and store that."""
        if not password_hash.startswith("$argon2id$"):
            return True
        return self._hasher.check_needs_rehash(password_hash)


# --- imported password hashes -----------------------------------------------------------
# Hashes made elsewhere, accepted by `users import` and verified at login until the first
# right password replaces them with argon2id. The upper bounds keep one login from costing
# seconds of CPU (or gigabytes of memory) whatever a file said.
BCRYPT_RE = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
BCRYPT_COST_MAX = 15
DJANGO_PBKDF2_RE = re.compile(r"^pbkdf2_sha256\$(\d{1,9})\$([^$]{1,128})\$([A-Za-z0-9+/]{43}=)$")
PBKDF2_ITERATIONS_MAX = 2_000_000
ARGON2_LIMITS = {"time_cost": 16, "memory_cost": 262_144, "parallelism": 16}  # 256 MiB
BCRYPT_MAX_BYTES = 72  # bcrypt reads no further; bcrypt>=5 refuses longer input instead


def password_hash_scheme(password_hash: str) -> str:
    """`argon2`, `bcrypt` or `pbkdf2_sha256` for a hash this server can verify; raises
    ValueError saying what is wrong with anything else (or with out-of-bounds costs)."""
    if password_hash.startswith("$argon2"):
        try:
            params = extract_parameters(password_hash)
        except (InvalidHashError, ValueError):
            raise ValueError("not a valid argon2 hash") from None
        for name, limit in ARGON2_LIMITS.items():
            if getattr(params, name) > limit:
                raise ValueError(f"argon2 {name} is above {limit}")
        return "argon2"
    if match := BCRYPT_RE.match(password_hash):
        if not 4 <= int(match.group(1)) <= BCRYPT_COST_MAX:
            raise ValueError(f"bcrypt cost must be 4..{BCRYPT_COST_MAX}")
        return "bcrypt"
    if match := DJANGO_PBKDF2_RE.match(password_hash):
        if not 1 <= int(match.group(1)) <= PBKDF2_ITERATIONS_MAX:
            raise ValueError(f"PBKDF2 iterations must be 1..{PBKDF2_ITERATIONS_MAX}")
        return "pbkdf2_sha256"
    raise ValueError("must be an argon2, bcrypt ($2b$) or Django pbkdf2_sha256$ hash")


def verify_legacy(password_hash: str, password: str) -> bool:
    """Check `password` against an imported bcrypt or Django PBKDF2 hash (False for any
    other or malformed hash)."""
    try:
        scheme = password_hash_scheme(password_hash)
    except ValueError:
        return False
    raw = password.encode("utf-8")
    if scheme == "bcrypt":
        # The system that made the hash used only the first 72 bytes; do the same.
        return bcrypt.checkpw(raw[:BCRYPT_MAX_BYTES], password_hash.encode("ascii"))
    if scheme == "pbkdf2_sha256":
        _, iterations, salt, expected = password_hash.split("$")
        derived = hashlib.pbkdf2_hmac("sha256", raw, salt.encode("utf-8"), int(iterations))
        try:
            return hmac.compare_digest(derived, base64.b64decode(expected, validate=True))
        except binascii.Error:
            return False
    return False


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
    """Constant-time comparison of two strings (any characters). Like a password verify,
    it settles the request's throttle counts (attempts.py): a secret was checked."""
    attempts.settle()
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


def totp_step_matching(secret: str, otp: str, now: float) -> int | None:
    """The time step (T-1, T or T+1, RFC 6238 5.2) whose 6-digit code is `otp`, or None."""
    totp = pyotp.TOTP(secret, interval=TOTP_STEP)
    current = int(now // TOTP_STEP)
    matched = None
    for step in (current - 1, current, current + 1):
        # Check every candidate: the time taken does not depend on which one matched.
        if same(totp.at(step * TOTP_STEP), otp):
            matched = step
    return matched


def otpauth_uri(secret: str, account_name: str, issuer: str) -> str:
    """The Key URI authenticator apps scan: otpauth://totp/<issuer>:<name>?secret=...&issuer=...

    The label may hold no colon (it separates issuer from name) and a slash would end the
    path, so both become spaces; long names are cut so the QR code stays easy to scan.
    """

    def clean(text: str) -> str:
        text = " ".join(text.replace(":", " ").replace("/", " ").split())
        return text[:OTPAUTH_NAME_MAX] or "-"

    return pyotp.TOTP(secret, interval=TOTP_STEP).provisioning_uri(
        name=clean(account_name), issuer_name=clean(issuer)
    )


def qr_svg(text: str) -> str:
    """`text` as a QR code in a standalone SVG document (one path; medium error correction)."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(text)
    code.make(fit=True)
    image = code.make_image(image_factory=SvgPathImage)
    return str(image.to_string(encoding="unicode"))
