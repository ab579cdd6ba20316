"""Signing keys through the CLI and HTTP on the real database: publish-first rotation, retire,
revoke, `keys import` of a key file and encryption at rest, with two app instances (empty
instance folders of their own) on one database and Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from factories import World
from faults import through_proxy
from flask import Flask
from joserfc import jwt
from oauth_helpers import access_claims, bearer, jwt_parts, login, password_grant

from authserver.cli import cli
from authserver.platform import keys
from authserver.platform.extensions import db
from authserver.platform.models import SigningKey, utcnow

TTL = 1  # KEYS_CACHE_TTL of both instances, seconds
# As conftest's FAST_DATABASE_FAULTS: a cut database is noticed within about 2 s.
FAST_FAULTS = {
    "DATABASE_CONNECT_TIMEOUT": 2,
    "DATABASE_STATEMENT_TIMEOUT": 1,
    "DATABASE_POOL_TIMEOUT": 1,
}


def _wait_for_ttl() -> None:
    time.sleep(TTL + 0.2)


@pytest.fixture
def pair(
    app: Flask, make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> tuple[Flask, Flask]:
    """Two instances on the same database and Redis, each with its own empty instance
    folder (no key file anywhere) and a 1 s key cache."""
    instances = []
    for name in ("instance-a", "instance-b"):
        folder = tmp_path / name
        folder.mkdir()
        monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", str(folder))
        instances.append(make_app(KEYS_CACHE_TTL=TTL))
    a, b = instances
    assert a.instance_path != b.instance_path
    return a, b


def _cli(app: Flask, *args: str) -> Any:
    """Run `authserver <args> --json` against `app` and return its JSON."""
    result = app.test_cli_runner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _jwks_kids(app: Flask) -> set[str]:
    response = app.test_client().get("/oauth/jwks")
    assert response.status_code == 200
    return {k["kid"] for k in response.get_json()["keys"]}


def _status(app: Flask, token: str) -> int:
    return app.test_client().get("/v1/user", headers=bearer(token)).status_code


def _token(app: Flask, world: World) -> tuple[str, str]:
    """A fresh access token from `app` and the kid that signed it."""
    token = login(app.test_client(), world)["access_token"]
    return token, jwt_parts(token)[0]["kid"]


def _time_passes(app: Flask, kids: list[str]) -> None:
    """The publish delay of `kids` is over: their activation moves into the past (and a
    retirement or revocation made while they waited stays before it)."""
    with app.app_context():
        activates = utcnow() - timedelta(seconds=1)
        for row in db.session.scalars(sa.select(SigningKey).where(SigningKey.kid.in_(kids))):
            row.activates_at = activates
            if row.retired_at is not None:
                row.retired_at = activates - timedelta(seconds=1)
        db.session.commit()


def _current(app: Flask, alg: str = "ES256") -> str:
    listed = _cli(app, "keys", "list")["keys"]
    (kid,) = [k["kid"] for k in listed if k["alg"] == alg and k["state"] == "current"]
    return str(kid)


def test_keys_list_shows_each_key_with_state_and_dates(pair):
    """`keys list --json` gives kid, alg, state, published and the dates; text lists kids."""
    a, _ = pair
    listed = _cli(a, "keys", "list")["keys"]
    assert sorted((k["alg"], k["state"], k["published"]) for k in listed) == [
        ("ES256", "current", True),
        ("RS256", "current", True),
    ]
    assert set(listed[0]) == {
        "kid",
        "alg",
        "state",
        "published",
        "createdAt",
        "activatesAt",
        "retiredAt",
        "revokedAt",
    }
    text = a.test_cli_runner().invoke(cli, ["keys", "list"]).output
    assert all(k["kid"] in text for k in listed)


def test_tokens_of_one_instance_are_accepted_by_the_other(pair, world):
    """Both instances sign with the same database key and accept each other's tokens."""
    a, b = pair
    token_a, kid_a = _token(a, world)
    token_b, kid_b = _token(b, world)
    assert kid_a == kid_b
    assert _status(b, token_a) == _status(a, token_b) == 200
    assert _jwks_kids(a) == _jwks_kids(b)


def test_rotation_publishes_first_then_signs_on_both_instances_without_restart(pair, world):
    """A rotated-in key is in both JWKS before it signs; once its delay is over both
    instances sign with it, and tokens of the old key stay valid everywhere."""
    a, b = pair
    old_token, old_kid = _token(a, world)
    new = _cli(a, "keys", "rotate")["keys"]
    new_es = next(k["kid"] for k in new if k["alg"] == "ES256")
    assert {k["state"] for k in new} == {"next"}
    assert new_es in _jwks_kids(a)
    _wait_for_ttl()
    assert new_es in _jwks_kids(b)
    # Publish first: nobody signs with it yet.
    assert _token(a, world)[1] == _token(b, world)[1] == old_kid

    _time_passes(a, [k["kid"] for k in new])
    _wait_for_ttl()
    token_a, kid_a = _token(a, world)
    token_b, kid_b = _token(b, world)
    assert kid_a == kid_b == new_es
    assert _status(b, token_a) == _status(a, token_b) == 200
    assert _status(a, old_token) == _status(b, old_token) == 200
    states = {k["kid"]: k["state"] for k in _cli(b, "keys", "list")["keys"]}
    assert (states[old_kid], states[new_es]) == ("retired", "current")
    assert old_kid in _jwks_kids(b)  # published until its tokens have expired


def test_revoked_key_leaves_the_jwks_and_its_tokens_are_refused_everywhere(pair, world):
    """`keys revoke` (a leak): the key leaves both JWKS and every token it signed is refused
    by both instances; signing then answers 503 until `keys rotate --now`."""
    a, b = pair
    token, kid = _token(a, world)
    id_kid = _current(a, "RS256")
    assert _status(b, token) == 200
    revoked = _cli(a, "keys", "revoke", kid)
    assert (revoked["state"], revoked["published"]) == ("revoked", False)
    assert revoked["unsignedAlgorithms"] == ["ES256"]
    assert kid not in _jwks_kids(a) and id_kid in _jwks_kids(a)
    assert _status(a, token) == 401
    _wait_for_ttl()
    assert kid not in _jwks_kids(b)
    assert _status(b, token) == 401
    # No ES256 key signs now: a clear 503, never a 500 or a token from an older key.
    response = password_grant(b.test_client(), world, scope="")
    assert response.status_code == 503, response.get_data(as_text=True)

    fresh = _cli(a, "keys", "rotate", "--now")["keys"]
    assert {k["state"] for k in fresh} == {"current"}
    new_token, new_kid = _token(a, world)
    assert new_kid == next(k["kid"] for k in fresh if k["alg"] == "ES256")
    _wait_for_ttl()
    assert _status(b, new_token) == 200
    assert _status(b, token) == 401


def test_revoke_says_how_to_sign_again(pair):
    """The text form of `keys revoke` of the current key names `keys rotate --now`."""
    a, _ = pair
    result = a.test_cli_runner().invoke(cli, ["keys", "revoke", _current(a)])
    assert result.exit_code == 0, result.output
    assert "authserver keys rotate --now" in result.output


def test_retire_refuses_the_current_key_and_unknown_kids(pair):
    """Retiring the current key (nothing would sign) or an unknown kid is exit 1, one line,
    and changes nothing."""
    a, _ = pair
    runner = a.test_cli_runner()
    before = _cli(a, "keys", "list")
    current = _current(a)
    result = runner.invoke(cli, ["keys", "retire", current])
    assert result.exit_code == 1
    assert "keys rotate" in result.output and len(result.output.strip().splitlines()) == 1
    result = runner.invoke(cli, ["keys", "retire", "no-such-kid"])
    assert result.exit_code == 1 and "No signing key no-such-kid" in result.output
    result = runner.invoke(cli, ["keys", "revoke", "no-such-kid"])
    assert result.exit_code == 1 and "No signing key no-such-kid" in result.output
    assert _cli(a, "keys", "list") == before


def test_retired_next_key_never_signs(pair, world):
    """A `next` key retired before its time never signs; the current key keeps signing."""
    a, _ = pair
    old_kid = _current(a)
    new = _cli(a, "keys", "rotate")["keys"]
    new_es = next(k["kid"] for k in new if k["alg"] == "ES256")
    assert _cli(a, "keys", "retire", new_es)["state"] == "retired"
    _time_passes(a, [k["kid"] for k in new])
    _wait_for_ttl()
    assert _token(a, world)[1] == old_kid
    states = {k["kid"]: k["state"] for k in _cli(a, "keys", "list")["keys"]}
    assert states[new_es] == "retired" and states[old_kid] == "current"


def _legacy_file(tmp_path: Any) -> tuple[str, list[keys.Key]]:
    """A key file as instances wrote before the keys moved into the database."""
    now = utcnow()
    file_keys = [keys.generate(alg, now) for alg in keys.ALGORITHMS]
    path = str(tmp_path / "signing-keys.json")
    keys.write_key_file(path, file_keys, now)
    return path, file_keys


def test_import_moves_a_key_file_in_and_its_tokens_verify_everywhere(pair, world, tmp_path):
    """`keys import PATH`: the file's keys verify on both instances (retired, as keys already
    sign); a second import skips them."""
    a, b = pair
    path, (es, _) = _legacy_file(tmp_path)
    with a.app_context():
        claims = access_claims(a, sub=world.alice_id, aid=world.live_id, client_id=world.public_id)
    claims["gen"] = 0
    old_token = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": es.kid}, claims, es)
    assert _status(a, old_token) == 401  # a key no instance knows yet
    result = _cli(a, "keys", "import", path)
    assert {k["kid"]: (k["state"], k["published"]) for k in result["imported"]} == {
        str(k.kid): ("retired", True) for k in _legacy_file_keys(path)
    }
    assert result["skipped"] == []
    assert _status(a, old_token) == 200
    _wait_for_ttl()
    assert _status(b, old_token) == 200
    again = _cli(a, "keys", "import", path)
    assert again["imported"] == [] and len(again["skipped"]) == 2


def _legacy_file_keys(path: str) -> list[keys.Key]:
    return [entry.key for entry in keys.read_key_file(path)]


def test_import_into_an_empty_database_makes_the_file_keys_sign(pair, world, tmp_path):
    """On a database without keys the file's signing keys become current: tokens of the
    old deployment and new ones share a key."""
    a, _ = pair
    with a.app_context():
        db.session.execute(sa.delete(SigningKey))
        db.session.commit()
    path, (es, rs) = _legacy_file(tmp_path)
    result = _cli(a, "keys", "import", path)
    assert {k["state"] for k in result["imported"]} == {"current"}
    assert _token(a, world)[1] == es.kid
    assert _current(a, "RS256") == rs.kid


def test_import_of_a_bad_file_is_one_line_and_changes_nothing(pair, tmp_path):
    """A missing or corrupt key file ends `keys import` with exit 1 and one line."""
    a, _ = pair
    before = _cli(a, "keys", "list")
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    for path in (str(bad), str(tmp_path / "missing.json")):
        result = a.test_cli_runner().invoke(cli, ["keys", "import", path])
        assert result.exit_code == 1
        assert len(result.output.strip().splitlines()) == 1 and path in result.output
    assert _cli(a, "keys", "list") == before


def test_private_keys_are_encrypted_in_the_database(pair, world, make_app):
    """The stored private JWK holds no private member in the clear; an instance with another
    KEY_ENCRYPTION_SECRET cannot sign (503) yet still serves the JWKS and verifies tokens."""
    a, _ = pair
    _cli(a, "keys", "rotate", "--now")
    with a.app_context():
        key = keys.keyring().signing_key("ES256")
        row = db.session.get(SigningKey, key.kid)
        assert row is not None
        stored = row.private_jwk + json.dumps(row.public_jwk)
    private = key.as_dict(private=True)
    assert private["d"] not in stored and '"d"' not in stored
    token, _ = _token(a, world)
    stranger = make_app(KEY_ENCRYPTION_SECRET="another-secret-of-at-least-32-characters")
    response = password_grant(stranger.test_client(), world, scope="")
    assert response.status_code == 503
    assert _jwks_kids(stranger) == _jwks_kids(a)
    assert _status(stranger, token) == 200


def test_keys_unreadable_when_the_database_is_cut_is_503_not_stale_keys(
    make_app, database_url, pg_proxy, world
):
    """When the key cache expires while the database is unreachable, the JWKS (which reads
    nothing else) and token checks answer 503: keys that may have been revoked meanwhile
    are not trusted any longer than the TTL."""
    cut_off = make_app(
        DATABASE_URL=through_proxy(database_url, pg_proxy),
        KEYS_CACHE_TTL=TTL,
        **FAST_FAULTS,
    )
    token, _ = _token(cut_off, world)
    assert _status(cut_off, token) == 200
    pg_proxy.cut()
    _wait_for_ttl()
    response = cut_off.test_client().get("/v1/user", headers=bearer(token))
    assert response.status_code == 503
    assert cut_off.test_client().get("/oauth/jwks").status_code == 503
    pg_proxy.restore()
    assert _status(cut_off, token) == 200


def test_jwks_bytes_and_etag_follow_a_rotation_made_on_another_instance(pair):
    """The JWKS is served from prebuilt bytes, yet a rotation made on another instance
    changes them (and the ETag) within KEYS_CACHE_TTL; without a change they stay put."""
    a, b = pair
    before = b.test_client().get("/oauth/jwks")
    again = b.test_client().get("/oauth/jwks")
    assert before.data == again.data and before.headers["ETag"] == again.headers["ETag"]
    new = {k["kid"] for k in _cli(a, "keys", "rotate")["keys"]}
    _wait_for_ttl()
    after = b.test_client().get("/oauth/jwks")
    assert after.status_code == 200
    assert new <= {k["kid"] for k in after.get_json()["keys"]}
    assert after.headers["ETag"] != before.headers["ETag"]
    # A client holding the old ETag gets the new document, not a 304.
    stale = b.test_client().get("/oauth/jwks", headers={"If-None-Match": before.headers["ETag"]})
    assert stale.status_code == 200 and stale.data == after.data
