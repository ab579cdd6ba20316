"""Signing keys: states from dates (publish first, retire, revoke), encryption at rest and
the legacy key file `keys import` reads (CLI, HTTP, two instances: oauth/test_signing_keys)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from joserfc.jwk import ECKey

from authserver.platform import keys
from authserver.platform.keys import CURRENT, NEXT, RETIRED, REVOKED, KeysMissing

LIFETIME = 900
GRACE = timedelta(seconds=LIFETIME + keys.CLOCK_LEEWAY)
T0 = datetime(2030, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)
DELAY = timedelta(seconds=600)


@dataclass
class Row:
    """The columns key_states reads, without a database."""

    kid: str
    activates_at: datetime
    created_at: datetime = T0
    alg: str = "ES256"
    retired_at: datetime | None = None
    revoked_at: datetime | None = None


def _states(rows: list[Row], at: datetime) -> dict[str, tuple[str, bool]]:
    return {k.kid: (k.state, k.published) for k in keys.key_states(rows, at, LIFETIME)}


def test_new_key_is_published_first_and_signs_after_the_delay():
    """A rotated-in key is `next` (published, not signing) until its activation; then it
    signs and the old key is retired, published until its tokens expire, then dropped."""
    old = Row("a", T0)
    new = Row("b", T0 + DELAY, created_at=T0 + 10 * SECOND)
    assert _states([old, new], T0 + 11 * SECOND) == {"a": (CURRENT, True), "b": (NEXT, True)}
    assert _states([old, new], T0 + DELAY) == {"a": (RETIRED, True), "b": (CURRENT, True)}
    info = {k.kid: k for k in keys.key_states([old, new], T0 + DELAY, LIFETIME)}
    assert info["a"].retired_at == T0 + DELAY
    assert _states([old, new], T0 + DELAY + GRACE - SECOND)["a"] == (RETIRED, True)
    assert _states([old, new], T0 + DELAY + GRACE)["a"] == (RETIRED, False)


def test_revoked_current_key_leaves_no_signer_and_older_keys_stay_retired():
    """Revoking the current key never brings an older (retired) key back to sign."""
    old = Row("a", T0)
    cur = Row("b", T0 + DELAY, revoked_at=T0 + 2 * DELAY)
    states = _states([old, cur], T0 + 2 * DELAY)
    assert states == {"a": (RETIRED, True), "b": (REVOKED, False)}


@pytest.mark.parametrize("withdrawn", ["retired_at", "revoked_at"])
def test_next_key_withdrawn_before_activation_never_takes_over(withdrawn):
    """A `next` key retired or revoked before its time leaves the current key signing."""
    old = Row("a", T0)
    new = Row("b", T0 + DELAY, **{withdrawn: T0 + SECOND})
    states = _states([old, new], T0 + 2 * DELAY)
    assert states["a"] == (CURRENT, True)
    assert states["b"][0] == (RETIRED if withdrawn == "retired_at" else REVOKED)


def test_algorithms_rotate_independently():
    """Each algorithm has its own current key."""
    rows = [Row("es", T0), Row("rs", T0, alg="RS256"), Row("es2", T0 + SECOND)]
    assert _states(rows, T0 + DELAY) == {
        "es": (RETIRED, True),
        "es2": (CURRENT, True),
        "rs": (CURRENT, True),
    }


def _jwk() -> dict[str, Any]:
    key = ECKey.generate_key("P-256", parameters={"kid": "k1", "alg": "ES256", "use": "sig"})
    return dict(key.as_dict(private=True))


def test_private_jwk_is_encrypted_and_opens_only_with_its_secret_and_kid():
    """The stored text holds no private member; a wrong secret or another row's kid fails."""
    jwk = _jwk()
    cipher = keys.derive_cipher("s" * 40)
    sealed = keys.encrypt_jwk(cipher, "k1", jwk)
    assert jwk["d"] not in sealed and '"d"' not in sealed
    assert keys.decrypt_jwk(cipher, "k1", sealed) == jwk
    with pytest.raises(KeysMissing, match="KEY_ENCRYPTION_SECRET"):
        keys.decrypt_jwk(keys.derive_cipher("t" * 40), "k1", sealed)
    with pytest.raises(KeysMissing):
        keys.decrypt_jwk(cipher, "k2", sealed)  # a ciphertext copied onto another row
    with pytest.raises(KeysMissing):
        keys.decrypt_jwk(cipher, "k1", "v1.AAAA")


@pytest.mark.parametrize(
    "content",
    [
        "",
        "not json",
        '{"keys": []}',
        '{"keys": [{"jwk": "x", "created_at": "2030-01-01T00:00:00+00:00", "retired_at": null}]}',
        '{"keys": [{"jwk": {"kty": "oct", "k": "AA"}, "created_at": "2030-01-01T00:00:00+00:00",'
        ' "retired_at": null}]}',
    ],
    ids=["empty", "not_json", "no_keys", "jwk_not_object", "symmetric_key"],
)
def test_unusable_legacy_file_is_refused_naming_it(tmp_path, content):
    """`keys import` refuses a corrupt or empty file with a ValueError naming its path."""
    path = str(tmp_path / "signing-keys.json")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(content)
    with pytest.raises(ValueError, match=r"signing-keys\.json"):
        keys.read_key_file(path)


def test_legacy_file_without_private_part_is_refused(tmp_path):
    """A public-only JWK cannot sign, so the file is refused."""
    key = ECKey.generate_key("P-256", parameters={"kid": "k1", "alg": "ES256"})
    path = os.path.join(tmp_path, "keys.json")
    doc = {
        "keys": [
            {"jwk": key.as_dict(private=False), "created_at": T0.isoformat(), "retired_at": None}
        ]
    }
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    with pytest.raises(ValueError, match="no private part"):
        keys.read_key_file(path)
