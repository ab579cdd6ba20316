"""JWT signing keys: rows in the database shared by every instance, private parts encrypted.

Each rotation adds one key per algorithm: ES256 (P-256; signs access tokens, about ten
times faster than RSA) and RS256 (RSA 2048; ID tokens, which OpenID Connect requires
every provider to offer). Publish first, sign later: a new key is in the JWKS for
KEY_PUBLISH_DELAY seconds (at least the JWKS max-age) before it signs, unless no key of its
algorithm signs yet or `rotate --now`. A key replaced by a newer one is "retired": still
published, still verifying, until every token it could have signed has expired. A revoked
key is gone from the JWKS and from verification at once. Each process caches the keys for
KEYS_CACHE_TTL seconds, so every instance sees a change within that time.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from authserver.platform.database import commit
from authserver.platform.errors import Conflict, NotFound, ServiceUnavailable
from authserver.platform.extensions import db
from authserver.platform.models import SigningKey

ALGORITHMS = ("ES256", "RS256")
ACCESS_TOKEN_ALG = "ES256"  # noqa: S105 - an algorithm name, not a secret
ID_TOKEN_ALG = "RS256"  # noqa: S105 - an algorithm name, not a secret
CLOCK_LEEWAY = 60  # seconds a retired key stays published beyond the longest token lifetime
Key = ECKey | RSAKey

NEXT, CURRENT, RETIRED, REVOKED = "next", "current", "retired", "revoked"
log = logging.getLogger("authserver.keys")


class KeysMissing(ServiceUnavailable):
    """No key can sign (none made yet, the one that signed was revoked, or it cannot be
    decrypted); the message says what to run. A 503 in every front door."""

    code = "signing_keys_missing"
    title = "No signing key"


@dataclass(frozen=True)
class KeyInfo:
    """What a key is at one moment: the dates stored and the state that follows from them."""

    kid: str
    alg: str
    state: str
    created_at: datetime
    activates_at: datetime
    retired_at: datetime | None  # explicit retirement, or when a newer key took over
    revoked_at: datetime | None
    published: bool  # in the JWKS and accepted when verifying

    def as_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "kid": self.kid,
            "alg": self.alg,
            "state": self.state,
            "published": self.published,
            "createdAt": iso(self.created_at),
            "activatesAt": iso(self.activates_at),
            "retiredAt": iso(self.retired_at),
            "revokedAt": iso(self.revoked_at),
        }


def key_states(rows: Iterable[Any], now: datetime, max_token_lifetime: int) -> list[KeyInfo]:
    """The state of every key, from its dates alone (so no job has to flip states).

    Per algorithm, the newest key (by activates_at) that reached activates_at before being
    retired or revoked has taken over; it is `current` unless withdrawn since. A revoked
    current key leaves no signer: older keys are never brought back to sign.
    """
    grace = timedelta(seconds=max_token_lifetime + CLOCK_LEEWAY)
    out: list[KeyInfo] = []
    by_alg: dict[str, list[Any]] = {}
    for row in rows:
        by_alg.setdefault(row.alg, []).append(row)
    for alg_rows in by_alg.values():
        alg_rows.sort(key=lambda r: (r.activates_at, r.created_at, r.kid))

        def withdrawn(r: Any) -> datetime | None:
            dates = [d for d in (r.retired_at, r.revoked_at) if d is not None]
            return min(dates) if dates else None

        def took_over(r: Any) -> bool:
            w = withdrawn(r)
            return r.activates_at <= now and (w is None or w > r.activates_at)

        leaders = [r for r in alg_rows if took_over(r)]
        current = leaders[-1] if leaders else None
        if current is not None and (w := withdrawn(current)) is not None and w <= now:
            current = None
        for i, r in enumerate(alg_rows):
            successor = next((s.activates_at for s in alg_rows[i + 1 :] if took_over(s)), None)
            ends = [d for d in (r.retired_at, successor) if d is not None and d <= now]
            retired_at = min(ends) if ends else None
            if r.revoked_at is not None and r.revoked_at <= now:
                state = REVOKED
            elif r is current:
                state = CURRENT
            elif r.activates_at > now and retired_at is None:
                state = NEXT
            else:
                state = RETIRED
                # Not reached by the commands' dates; if ever, the key leaves the JWKS
                # once tokens from its activation have expired, never stays forever.
                retired_at = retired_at or r.activates_at
            published = state in (NEXT, CURRENT) or (
                state == RETIRED and retired_at is not None and retired_at + grace > now
            )
            out.append(
                KeyInfo(
                    r.kid,
                    r.alg,
                    state,
                    r.created_at,
                    r.activates_at,
                    retired_at if state == RETIRED else r.retired_at,
                    r.revoked_at,
                    published,
                )
            )
    out.sort(key=lambda k: (k.created_at, k.alg), reverse=True)
    return out


# ------------------------------------------------------------------ encryption at rest


def derive_cipher(secret: str) -> AESGCM:
    """AES-256-GCM with a key derived (HKDF-SHA256) from KEY_ENCRYPTION_SECRET or SECRET_KEY,
    so the stored secret is never used as a key directly and means nothing elsewhere."""
    material = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"authserver signing keys",
        info=b"private JWK encryption v1",
    ).derive(secret.encode())
    return AESGCM(material)


def encrypt_jwk(cipher: AESGCM, kid: str, jwk: dict[str, Any]) -> str:
    """Encrypt a private JWK; the kid is bound in as associated data, so a ciphertext
    copied onto another row does not decrypt."""
    nonce = os.urandom(12)
    sealed = cipher.encrypt(nonce, json.dumps(jwk, sort_keys=True).encode(), kid.encode())
    return "v1." + base64.urlsafe_b64encode(nonce + sealed).decode()


def decrypt_jwk(cipher: AESGCM, kid: str, token: str) -> dict[str, Any]:
    """The private JWK, or KeysMissing if the secret does not open it."""
    try:
        version, _, body = token.partition(".")
        if version != "v1":
            raise ValueError(version)
        raw = base64.urlsafe_b64decode(body)
        jwk: dict[str, Any] = json.loads(cipher.decrypt(raw[:12], raw[12:], kid.encode()))
    except (InvalidTag, ValueError, TypeError):
        raise KeysMissing(
            f"cannot decrypt signing key {kid}: AUTHSERVER_KEY_ENCRYPTION_SECRET (or"
            " SECRET_KEY) is not the one it was stored with; run `authserver keys rotate"
            " --now` to make keys this secret opens"
        ) from None
    return jwk


# ------------------------------------------------------------------ the per-process cache


@dataclass(frozen=True)
class Published:
    """The published keys, built once per change of the set (not per cache refresh)."""

    fingerprint: tuple[tuple[str, str], ...]  # (kid, public JWK text) of each, oldest first
    verifying: KeySet  # their public keys
    document: dict[str, Any]  # the JWKS document
    body: bytes  # the document as served: compact JSON, keys sorted
    etag: str  # a strong validator of `body`


@dataclass(frozen=True)
class _Snapshot:
    signing: dict[str, tuple[str, str]]  # alg -> (kid, encrypted private JWK) of the current key
    published: Published
    signing_since: datetime | None  # when the newest current key was made (for metrics)


class KeyRing:
    """Reads the keys from the database at most once per `ttl` seconds per process.

    Between reads a token check costs a clock read: no query, no lock. A read that fails
    (the database is down) raises rather than keep using keys that may have been revoked
    meanwhile: a revocation must take effect within `ttl` on every instance.
    """

    def __init__(
        self,
        engine: sa.Engine,
        secret: str,
        max_token_lifetime: int,
        publish_delay: int,
        ttl: float,
    ):
        self.engine = engine  # the app's; reads use their own short connection
        self.cipher = derive_cipher(secret)
        self.max_token_lifetime = max_token_lifetime
        self.publish_delay = publish_delay
        self.ttl = ttl
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._expires = 0.0
        self._private: dict[tuple[str, str], Key] = {}  # (kid, ciphertext) -> private key

    def invalidate(self) -> None:
        """Read the database again on next use (after a change made by this process)."""
        self._expires = 0.0

    def _load(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and time.monotonic() < self._expires:
            return snapshot
        if snapshot is None:
            with self._lock:
                return self._reload()
        if not self._lock.acquire(blocking=False):
            # Another thread is reading the keys: use the ones it replaces meanwhile (no
            # older than the TTL plus one query) rather than queue every request behind it.
            return snapshot
        try:
            return self._reload()
        finally:
            self._lock.release()

    def _reload(self) -> _Snapshot:
        """Read the keys unless another thread just did (call with the lock held)."""
        if self._snapshot is not None and time.monotonic() < self._expires:
            return self._snapshot
        started = time.monotonic()
        with self.engine.connect() as conn:
            rows = list(conn.execute(sa.select(SigningKey.__table__)))
        previous = self._snapshot.published if self._snapshot is not None else None
        self._snapshot = _build(rows, self.max_token_lifetime, previous)
        self._expires = started + self.ttl
        return self._snapshot

    def check(self) -> None:
        """Raise KeysMissing unless every algorithm has a key that signs."""
        for alg in ALGORITHMS:
            self.signing_key(alg)

    def signing_key(self, alg: str = ACCESS_TOKEN_ALG) -> Key:
        """The key that signs new tokens with `alg` (its private part, decrypted)."""
        found = self._load().signing.get(alg)
        if found is None:
            missing = KeysMissing(
                f"no {alg} signing key is current; run `authserver keys rotate` (after a"
                " revocation: `authserver keys rotate --now`)"
            )
            log.error("%s", missing.detail)  # clients only see a 503: say it to operators
            raise missing
        key = self._private.get(found)
        if key is None:
            # Decrypt and import once per process and ciphertext: checking an RSA private
            # key costs ~50 ms, far too much for every token signed.
            try:
                key = _import(decrypt_jwk(self.cipher, *found))
            except KeysMissing as exc:
                log.error("%s", exc.detail)
                raise
            self._private = {found: key, **self._private}
        return key

    def verification_keys(self) -> KeySet:
        """Every published key (public parts): current, next and retired, never revoked."""
        return self._load().published.verifying

    def newest_created_at(self) -> datetime:
        """When the newest signing (current) key was made: the metrics' signing key age."""
        since = self._load().signing_since
        if since is None:
            raise KeysMissing("No signing key is current.")
        return since

    def public_jwks(self) -> dict[str, Any]:
        """The JWKS document: public parts of every published key."""
        return self._load().published.document

    def published(self) -> Published:
        """The published keys with the JWKS document's bytes and ETag, ready to serve."""
        return self._load().published


def keyring() -> KeyRing:
    """The app's signing keys."""
    ring: KeyRing = current_app.extensions["authserver.keys"]
    return ring


def _build(rows: list[Any], max_token_lifetime: int, previous: Published | None) -> _Snapshot:
    states = {k.kid: k for k in key_states(rows, datetime.now(UTC), max_token_lifetime)}
    signing: dict[str, tuple[str, str]] = {}
    public: list[tuple[str, str]] = []
    since: datetime | None = None
    for row in sorted(rows, key=lambda r: (r.created_at, r.kid)):
        info = states[row.kid]
        if info.state == CURRENT:
            signing[row.alg] = (row.kid, row.private_jwk)
            since = row.created_at  # rows go oldest first: the last current one is newest
        if info.published:
            public.append((row.kid, json.dumps(row.public_jwk, sort_keys=True)))
    fingerprint = tuple(public)
    # The keys are read again every KEYS_CACHE_TTL, but the published set rarely changes:
    # the same set keeps its parsed keys, bytes and ETag (so clients' caches stay valid).
    if previous is None or previous.fingerprint != fingerprint:
        previous = _publish(fingerprint)
    return _Snapshot(signing=signing, published=previous, signing_since=since)


def _publish(fingerprint: tuple[tuple[str, str], ...]) -> Published:
    keys = [_import(json.loads(text)) for _kid, text in fingerprint]
    document = {"keys": [k.as_dict(private=False) for k in keys]}
    body = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return Published(
        fingerprint=fingerprint,
        verifying=KeySet(list[Any](keys)),
        document=document,
        body=body,
        etag=hashlib.sha256(body).hexdigest()[:32],
    )


def _import(jwk: dict[str, Any]) -> Key:
    if not isinstance(jwk, dict) or jwk.get("kty") not in ("EC", "RSA"):
        raise ValueError(f"key {jwk.get('kid') if isinstance(jwk, dict) else '?'} is not EC/RSA")
    return _import_json(json.dumps(jwk, sort_keys=True))


@functools.lru_cache(maxsize=64)
def _import_json(text: str) -> Key:
    """Import a JWK given as canonical JSON, once per process (every reload re-reads all)."""
    jwk = json.loads(text)
    return ECKey.import_key(jwk) if jwk["kty"] == "EC" else RSAKey.import_key(jwk)


# ------------------------------------------------------------------ management (the CLI's)


def generate(alg: str, now: datetime) -> Key:
    """A new private key for `alg` with a kid that sorts by time."""
    stamp = now.strftime("%Y%m%dT%H%M%S") + "-" + os.urandom(4).hex()
    if alg == "ES256":
        return ECKey.generate_key(
            "P-256", parameters={"kid": f"es-{stamp}", "use": "sig", "alg": alg}
        )
    return RSAKey.generate_key(2048, parameters={"kid": f"rs-{stamp}", "use": "sig", "alg": alg})


def list_keys(ring: KeyRing, now: datetime | None = None) -> list[KeyInfo]:
    """Every stored key with its state, newest first."""
    rows = db.session.execute(sa.select(SigningKey)).scalars().all()
    return key_states(rows, now or datetime.now(UTC), ring.max_token_lifetime)


def _info(ring: KeyRing, kid: str, now: datetime) -> KeyInfo:
    return next(k for k in list_keys(ring, now) if k.kid == kid)


def store(ring: KeyRing, key: Key, activates_at: datetime, now: datetime, **dates: Any) -> None:
    """Add a private key (encrypted) and its public part; the caller commits."""
    kid = str(key.kid)
    db.session.add(
        SigningKey(
            kid=kid,
            alg=str(key.alg),
            public_jwk=key.as_dict(private=False),
            private_jwk=encrypt_jwk(ring.cipher, kid, key.as_dict(private=True)),
            created_at=dates.pop("created_at", now),
            activates_at=activates_at,
            **dates,
        )
    )


# Called with the kids a change touched, inside its transaction just before the commit: the
# front door records the change in the audit log there (identity code, which this layer
# may not import), so the key and its audit row commit together.
Note = Callable[[list[str]], None]


def _no_note(kids: list[str]) -> None:
    pass


def rotate(
    ring: KeyRing, *, immediate: bool = False, now: datetime | None = None, audit: Note = _no_note
) -> list[KeyInfo]:
    """Add a new key per algorithm. It signs after the publish delay, at once with
    `immediate` or when no key of its algorithm is current (a fresh install, a revocation)."""
    now = now or datetime.now(UTC)
    current = {k.alg for k in list_keys(ring, now) if k.state == CURRENT}
    new = []
    for alg in ALGORITHMS:
        key = generate(alg, now)
        wait = immediate or alg not in current
        store(ring, key, now if wait else now + timedelta(seconds=ring.publish_delay), now)
        new.append(str(key.kid))
    audit(new)
    commit()
    ring.invalidate()
    return [_info(ring, kid, now) for kid in new]


def _row(kid: str) -> SigningKey:
    row = db.session.get(SigningKey, kid)
    if row is None:
        raise NotFound(f"No signing key {kid}.", field="kid")
    return row


def retire(ring: KeyRing, kid: str, now: datetime | None = None, audit: Note = _no_note) -> KeyInfo:
    """Stop a key from signing (it stays published until its tokens expire). The current
    key is refused: retiring it would leave nothing to sign; `rotate` replaces it."""
    now = now or datetime.now(UTC)
    row = _row(kid)
    info = _info(ring, kid, now)
    if info.state == REVOKED:
        raise Conflict(f"Signing key {kid} is revoked already.", field="kid")
    if info.state == CURRENT:
        raise Conflict(
            f"Signing key {kid} is the current {row.alg} key; `authserver keys rotate` replaces"
            " it (it is retired when the new key starts signing).",
            field="kid",
        )
    if row.retired_at is None:
        row.retired_at = now
        audit([kid])
        commit()
    ring.invalidate()
    return _info(ring, kid, now)


def revoke(ring: KeyRing, kid: str, now: datetime | None = None, audit: Note = _no_note) -> KeyInfo:
    """Withdraw a compromised key at once: out of the JWKS, every token it signed refused."""
    now = now or datetime.now(UTC)
    row = _row(kid)
    if row.revoked_at is None:
        row.revoked_at = now
        audit([kid])
        commit()
    ring.invalidate()
    return _info(ring, kid, now)


def import_file(
    ring: KeyRing, path: str, now: datetime | None = None, audit: Note = _no_note
) -> tuple[list[KeyInfo], list[str]]:
    """Move the keys of a legacy key file in: (imported, kids already present). A key the
    file had signing becomes current only if its algorithm has no current key; otherwise
    it is imported retired, published for verification of the tokens it signed."""
    now = now or datetime.now(UTC)
    entries = read_key_file(path)
    current = {k.alg for k in list_keys(ring, now) if k.state == CURRENT}
    imported, skipped = [], []
    # Newest first, so only the file's own signer of an algorithm can become current.
    for entry in sorted(entries, key=lambda e: e.created_at, reverse=True):
        kid = str(entry.key.kid)
        if db.session.get(SigningKey, kid) is not None:
            skipped.append(kid)
            continue
        alg = str(entry.key.alg)
        retired_at = entry.retired_at
        if retired_at is None and alg in current:
            retired_at = now
        store(
            ring,
            entry.key,
            entry.created_at,
            now,
            created_at=entry.created_at,
            retired_at=retired_at,
        )
        if retired_at is None:
            current.add(alg)
        imported.append(kid)
    if imported:
        audit(imported)
    commit()
    ring.invalidate()
    return [_info(ring, kid, now) for kid in imported], skipped


@dataclass(frozen=True)
class FileKey:
    key: Key
    created_at: datetime
    retired_at: datetime | None


def read_key_file(path: str) -> list[FileKey]:
    """Read and check a legacy key file (`{"keys": [{"jwk", "created_at", "retired_at"}]}`);
    ValueError naming the path if it is unusable."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        keys = [
            FileKey(
                key=_file_private_key(item["jwk"]),
                created_at=_aware(item["created_at"]),
                retired_at=_aware(item["retired_at"]) if item["retired_at"] else None,
            )
            for item in doc["keys"]
        ]
    except OSError as exc:
        raise ValueError(f"cannot read key file {path} ({exc.strerror})") from None
    except (ValueError, KeyError, TypeError, JoseError) as exc:
        raise ValueError(f"{path} is not a valid signing key file ({exc!r})") from None
    if not keys:
        raise ValueError(f"{path} holds no signing key")
    return keys


def _file_private_key(jwk: Any) -> Key:
    if not isinstance(jwk, dict):
        raise TypeError("a key is not a JWK object")
    key = _import(jwk)
    if key.alg not in ALGORITHMS:
        raise ValueError(f"key {jwk.get('kid')} has no supported alg ({', '.join(ALGORITHMS)})")
    if not key.is_private:
        raise ValueError(f"key {jwk.get('kid')} has no private part and cannot sign")
    if not key.kid or len(str(key.kid)) > 64:
        raise ValueError("a key has no kid, or one longer than 64 characters")
    return key


def _aware(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone")
    return moment


def write_key_file(path: str, keys: list[Key], now: datetime) -> None:
    """Write a legacy-format key file (mode 0600): for tests of `keys import`."""
    doc = {
        "keys": [
            {"jwk": k.as_dict(private=True), "created_at": now.isoformat(), "retired_at": None}
            for k in keys
        ]
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
