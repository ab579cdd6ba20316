"""JWT signing keys: a JWKS file in the instance folder, rotated by `authserver keys rotate`.

Each rotation adds one key per algorithm: ES256 (P-256; signs access tokens, about ten
times faster than RSA) and RS256 (RSA 2048; ID tokens, which OpenID Connect requires
every provider to offer). The newest key of an algorithm signs. A key replaced by a newer
one stays published (and verifying) until every token it could have signed has expired;
`rotate` drops keys older than that. Every worker re-reads the file when it changes, so a
rotation reaches all of them; parsed keys are cached per version of the file.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

ALGORITHMS = ("ES256", "RS256")
ACCESS_TOKEN_ALG = "ES256"  # noqa: S105 - an algorithm name, not a secret
ID_TOKEN_ALG = "RS256"  # noqa: S105 - an algorithm name, not a secret
Key = ECKey | RSAKey


class KeysMissing(Exception):
    """No usable signing key file; the message says how to make one."""


@dataclass(frozen=True)
class StoredKey:
    jwk: dict[str, Any]  # private JWK with kid, alg and use
    created_at: datetime
    retired_at: datetime | None  # when a newer key took over signing
    key: Key = field(repr=False, compare=False)  # the JWK imported (and checked) once


class KeyRing:
    """Reads the key file on demand and caches it until the file changes."""

    def __init__(self, path: str, max_token_lifetime: int):
        self.path = path
        self.max_token_lifetime = max_token_lifetime
        self._lock = threading.Lock()
        self._stamp: tuple[int, ...] | None = None
        self._keys: list[StoredKey] = []
        self._private: KeySet | None = None
        self._signing: dict[str, Key] = {}
        self._public: dict[str, Any] = {"keys": []}

    def _load(self) -> list[StoredKey]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise KeysMissing(
                f"no signing keys at {self.path} (AUTHSERVER_SIGNING_KEYS_FILE);"
                " run `authserver keys rotate` to create one"
            ) from None
        # The inode changes on every rotation (the file is replaced, not rewritten), so a
        # rotation is noticed even when size and a coarse mtime stay the same.
        stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                keys = read_key_file(self.path)
                if not keys:
                    raise KeysMissing(
                        f"{self.path} holds no signing key; run `authserver keys rotate`"
                    )
                imported = [k.key for k in keys]
                signing = {key.alg: key for key in imported if key.alg}  # newest last wins
                missing = [alg for alg in ALGORITHMS if alg not in signing]
                if missing:
                    raise KeysMissing(
                        f"{self.path} has no {', '.join(missing)} key; run `authserver keys rotate`"
                    )
                self._keys = keys
                self._private = KeySet(list[Any](imported))
                self._signing = signing
                self._public = {"keys": [k.as_dict(private=False) for k in imported]}
                self._stamp = stamp
            return self._keys

    def check(self) -> None:
        """Raise KeysMissing unless a signing key can be read."""
        self._load()

    def signing_key(self, alg: str = ACCESS_TOKEN_ALG) -> Key:
        """The key that signs new tokens with `alg` (the newest of that algorithm)."""
        self._load()
        return self._signing[alg]

    def verification_keys(self) -> KeySet:
        """Every key that may still have signed a live token."""
        self._load()
        assert self._private is not None
        return self._private

    def newest_created_at(self) -> datetime:
        """When the newest key was made (the metrics' signing key age)."""
        return max(k.created_at for k in self._load())

    def public_jwks(self) -> dict[str, Any]:
        """The JWKS document: public parts of every published key."""
        self._load()
        return self._public


def read_key_file(path: str) -> list[StoredKey]:
    """Read and check the key file; KeysMissing (naming the path) if it is unusable."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        keys = [
            StoredKey(
                jwk=item["jwk"],
                created_at=_aware(item["created_at"]),
                retired_at=_aware(item["retired_at"]) if item["retired_at"] else None,
                key=_private_key(item["jwk"]),
            )
            for item in doc["keys"]
        ]
    except OSError as exc:
        raise KeysMissing(f"cannot read signing key file {path} ({exc.strerror})") from None
    except (ValueError, KeyError, TypeError, JoseError) as exc:
        # A corrupt file must stop start-up with its path, not crash on first use.
        raise KeysMissing(f"{path} is not a valid signing key file ({exc!r})") from None
    return keys


def _private_key(jwk: Any) -> Key:
    if not isinstance(jwk, dict):
        raise TypeError("a key is not a JWK object")
    key = _import(jwk)
    if key.alg not in ALGORITHMS:
        raise ValueError(f"key {jwk.get('kid')} has no supported alg ({', '.join(ALGORITHMS)})")
    if not key.is_private:
        raise ValueError(f"key {jwk.get('kid')} has no private part and cannot sign")
    return key


def _import(jwk: dict[str, Any]) -> Key:
    if jwk.get("kty") not in ("EC", "RSA"):
        raise ValueError(f"key {jwk.get('kid')} is neither EC nor RSA")
    return _import_json(json.dumps(jwk, sort_keys=True))


@functools.lru_cache(maxsize=32)
def _import_json(text: str) -> Key:
    """Import a JWK given as canonical JSON, once per process: checking an RSA private key
    costs ~50 ms, and the file is read again by every app and after every rotation."""
    jwk = json.loads(text)
    return ECKey.import_key(jwk) if jwk["kty"] == "EC" else RSAKey.import_key(jwk)


def _aware(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone")
    return moment


def rotate(path: str, max_token_lifetime: int, now: datetime | None = None) -> list[StoredKey]:
    """Add a new key per algorithm; retire the current ones; drop keys no token can need."""
    now = now or datetime.now(UTC)
    keys = read_key_file(path) if os.path.exists(path) else []
    grace = timedelta(seconds=max_token_lifetime + 60)  # +60 s for clock leeway
    kept = [k for k in keys if k.retired_at is None or k.retired_at + grace > now]
    kept = [replace(k, retired_at=k.retired_at or now) for k in kept]
    stamp = now.strftime("%Y%m%dT%H%M%S") + "-" + os.urandom(4).hex()
    ec = ECKey.generate_key(
        "P-256", parameters={"kid": f"es-{stamp}", "use": "sig", "alg": "ES256"}
    )
    rsa = RSAKey.generate_key(2048, parameters={"kid": f"rs-{stamp}", "use": "sig", "alg": "RS256"})
    new = [StoredKey(k.as_dict(private=True), now, None, k) for k in (ec, rsa)]
    _write(path, [*kept, *new])
    return new


def _write(path: str, keys: list[StoredKey]) -> None:
    """Write atomically with mode 0600, so a reader never sees half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    doc = {
        "keys": [
            {
                "jwk": k.jwk,
                "created_at": k.created_at.isoformat(),
                "retired_at": k.retired_at.isoformat() if k.retired_at else None,
            }
            for k in keys
        ]
    }
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".signing-keys.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
