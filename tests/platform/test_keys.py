"""Signing keys: the JWKS file, rotation with a grace period, hot reload and corrupt files."""

from __future__ import annotations

import json
import os
import re
import stat
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from authserver import create_app
from authserver.platform.config import ConfigError
from authserver.platform.keys import KeyRing, KeysMissing, read_key_file, rotate

LIFETIME = 900
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def path(tmp_path: Any) -> str:
    return str(tmp_path / "keys" / "signing-keys.json")


def _sign(ring: KeyRing, sub: str = "user-1", alg: str = "ES256") -> str:
    key = ring.signing_key(alg)
    return jwt.encode({"alg": alg, "kid": key.kid}, {"sub": sub}, key, algorithms=[alg])


def _verify(ring: KeyRing, token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, ring.verification_keys(), algorithms=["ES256", "RS256"]).claims)


def _kids(ring: KeyRing) -> list[str]:
    return [k["kid"] for k in ring.public_jwks()["keys"]]


def test_rotate_creates_private_file_with_working_keys(path):
    """The first rotate writes a 0600 file with an ES256 and an RS256 key that both sign."""
    new = rotate(path, LIFETIME)
    assert [k.jwk["alg"] for k in new] == ["ES256", "RS256"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    ring = KeyRing(path, LIFETIME)
    assert ring.signing_key().kid == new[0].jwk["kid"]
    assert ring.signing_key("RS256").kid == new[1].jwk["kid"]
    assert _verify(ring, _sign(ring)) == {"sub": "user-1"}
    assert _verify(ring, _sign(ring, alg="RS256")) == {"sub": "user-1"}


def test_second_rotate_publishes_both_and_signs_with_new(path):
    """After a second rotate both keys are published, the new one signs, old tokens verify."""
    first = rotate(path, LIFETIME, now=T0)
    ring = KeyRing(path, LIFETIME)
    old_token = _sign(ring, "old")
    second = rotate(path, LIFETIME, now=T0 + timedelta(hours=1))
    assert _kids(ring) == [k.jwk["kid"] for k in (*first, *second)]
    assert ring.signing_key().kid == second[0].jwk["kid"]
    new_token = _sign(ring, "new")
    header = jwt.decode(new_token, ring.verification_keys(), algorithms=["ES256"]).header
    assert header["kid"] == second[0].jwk["kid"]
    assert _verify(ring, old_token) == {"sub": "old"}
    assert _verify(ring, new_token) == {"sub": "new"}
    stored = read_key_file(path)
    assert [k.retired_at for k in stored] == [T0 + timedelta(hours=1)] * 2 + [None] * 2


def test_retired_key_kept_through_grace_then_dropped(path):
    """A retired key stays for token lifetime + 60 s, and a rotate after that drops it."""
    first = rotate(path, LIFETIME, now=T0)
    ring = KeyRing(path, LIFETIME)
    old_token = _sign(ring)
    retired_at = T0 + timedelta(minutes=5)
    rotate(path, LIFETIME, now=retired_at)
    rotate(path, LIFETIME, now=retired_at + timedelta(seconds=LIFETIME + 59))
    assert first[0].jwk["kid"] in _kids(ring)
    assert _verify(ring, old_token) == {"sub": "user-1"}

    third_signer = ring.signing_key().kid
    rotate(path, LIFETIME, now=T0 + timedelta(days=365))
    kids = _kids(ring)
    assert first[0].jwk["kid"] not in kids
    assert third_signer in kids  # retired just now: still in its grace period
    with pytest.raises(JoseError):
        _verify(ring, old_token)


def test_keyring_picks_up_rotation_without_restart(path):
    """A KeyRing created before a rotation signs with the new key after it."""
    rotate(path, LIFETIME)
    ring = KeyRing(path, LIFETIME)
    before = ring.signing_key().kid
    new = rotate(path, LIFETIME)
    assert ring.signing_key().kid == new[0].jwk["kid"] != before
    assert len(ring.public_jwks()["keys"]) == 4


def test_keyring_notices_replacement_with_same_size_and_mtime(path, tmp_path):
    """A replaced key file is noticed even if size and (coarse) mtime are unchanged."""
    rotate(path, LIFETIME, now=T0)
    with open(path, encoding="utf-8") as fh:
        original = fh.read()
    kid = json.loads(original)["keys"][0]["jwk"]["kid"]
    twin_kid = kid[:-1] + ("0" if kid[-1] != "0" else "1")  # same length, another key id
    other = tmp_path / "other.json"
    other.write_text(original.replace(kid, twin_kid), encoding="utf-8")
    assert other.stat().st_size == os.path.getsize(path)
    ring = KeyRing(path, LIFETIME)
    assert ring.signing_key().kid == kid
    old_stat = os.stat(path)
    os.replace(other, path)
    os.utime(path, ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns))
    assert ring.signing_key().kid == twin_kid


def test_missing_file_says_how_to_make_one(path):
    """A missing key file gives KeysMissing naming the path, the setting and the command."""
    with pytest.raises(KeysMissing) as info:
        KeyRing(path, LIFETIME).check()
    message = str(info.value)
    assert path in message
    assert "AUTHSERVER_SIGNING_KEYS_FILE" in message
    assert "authserver keys rotate" in message


def _valid_entry(jwk: dict[str, Any]) -> dict[str, Any]:
    return {"jwk": jwk, "created_at": T0.isoformat(), "retired_at": None}


def _corrupt_files() -> dict[str, Any]:
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    public = key.as_dict(private=False)
    return {
        "truncated": '{"keys": [',
        "not-utf8": b"\xff\xfe\x00\x01",
        "empty-file": "",
        "a-list": "[1, 2]",
        "no-keys": '{"keys": []}',
        "jwk-not-object": json.dumps({"keys": [_valid_entry("nope")]}),
        "rsa-missing-members": json.dumps({"keys": [_valid_entry({"kty": "RSA", "n": "abc"})]}),
        "wrong-key-type": json.dumps({"keys": [_valid_entry({"kty": "oct", "k": "AAAA"})]}),
        "public-only": json.dumps({"keys": [_valid_entry(public)]}),
        "bad-date": json.dumps(
            {"keys": [{**_valid_entry(key.as_dict(private=True)), "created_at": "yesterday"}]}
        ),
        "naive-date": json.dumps(
            {
                "keys": [
                    {
                        **_valid_entry(key.as_dict(private=True)),
                        "retired_at": "2030-01-01T00:00:00",
                    },
                    _valid_entry(key.as_dict(private=True)),
                ]
            }
        ),
    }


CORRUPT = _corrupt_files()


@pytest.mark.parametrize("content", list(CORRUPT.values()), ids=list(CORRUPT))
def test_corrupt_file_gives_keys_missing_with_path(path, content):
    """Every way of reading a corrupt key file gives KeysMissing naming the file."""
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as fh:
        fh.write(content if isinstance(content, bytes) else content.encode())
    ring = KeyRing(path, LIFETIME)
    for use in (ring.check, ring.signing_key, ring.verification_keys, ring.public_jwks):
        with pytest.raises(KeysMissing, match=re.escape(path)):
            use()


def test_corrupt_file_refused_at_production_start(make_config, instance_path, monkeypatch):
    """Production start-up with a corrupt key file fails with a ConfigError naming the file."""
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", instance_path)
    bad = os.path.join(instance_path, "bad-keys.json")
    with open(bad, "w", encoding="utf-8") as fh:
        fh.write(CORRUPT["rsa-missing-members"])
    config = make_config(TESTING=False, SECRET_KEY="s" * 40, SIGNING_KEYS_FILE=bad)
    with pytest.raises(ConfigError, match=r"bad-keys\.json"):
        create_app(config)


def test_public_jwks_has_no_private_members(path):
    """The published JWKS holds only public members, with kid, alg and use."""
    rotate(path, LIFETIME, now=T0)
    rotate(path, LIFETIME, now=T0 + timedelta(minutes=1))
    ring = KeyRing(path, LIFETIME)
    document = ring.public_jwks()
    assert len(document["keys"]) == 4
    public = {"EC": {"crv", "x", "y"}, "RSA": {"n", "e"}}
    for jwk in document["keys"]:
        assert not PRIVATE_MEMBERS & set(jwk), jwk
        assert {"kty", "kid", "alg", "use", *public[jwk["kty"]]} <= set(jwk)
        assert (jwk["kty"], jwk["use"]) == ({"ES256": "EC", "RS256": "RSA"}[jwk["alg"]], "sig")
    # The private file, by contrast, does hold them: the check above is not vacuous.
    assert "d" in read_key_file(path)[0].jwk
