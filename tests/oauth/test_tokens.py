"""Token rules through HTTP: refresh rotation and families, publishable guest tokens, client
credentials, JWT access tokens and key rotation, the /v1 bearer guard, revocation on
password and status changes, RFC 7009 revocation, RFC 7662 introspection and discovery.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from factories import PASSWORD, World
from joserfc import jwt
from joserfc.jwk import KeySet
from oauth_helpers import (
    access_claims,
    b64url,
    basic,
    bearer,
    introspect,
    jwt_parts,
    login,
    password_grant,
    refresh,
    sign_with_app_key,
    unb64url,
)
from sqlalchemy import select

from authserver.cli import cli
from authserver.identity import accounts
from authserver.platform.extensions import db
from authserver.platform.models import RefreshToken, User, utcnow

NEW_PASSWORD = "a-brand-new-passphrase"


def _row(app: Any, value: str) -> RefreshToken:
    with app.app_context():
        row = db.session.scalar(
            select(RefreshToken).where(
                RefreshToken.token_hash == hashlib.sha256(value.encode()).hexdigest()
            )
        )
        assert row is not None
        db.session.expunge(row)
        return row


def _move_row(app: Any, value: str, **deltas: timedelta) -> None:
    """Shift time columns of one refresh-token row by the given deltas."""
    digest = hashlib.sha256(value.encode()).hexdigest()
    with app.app_context():
        row = db.session.scalar(select(RefreshToken).where(RefreshToken.token_hash == digest))
        assert row is not None
        for column, delta in deltas.items():
            setattr(row, column, getattr(row, column) + delta)
        db.session.commit()


def _error(response: Any, status: int = 400) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()["error"]


def _user_status(client: Any, token: str, headers: dict[str, str] | None = None) -> int:
    return client.get("/v1/user", headers=headers or bearer(token)).status_code


def _assert_invalid_token(response: Any) -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge


def _active(client: Any, world: World, token: str, **extra: str) -> bool:
    response = introspect(client, world, token, **extra)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["active"]


def _revoke(client: Any, token: str, client_id: str, **extra: str) -> Any:
    return client.post("/oauth/revoke", data={"token": token, "client_id": client_id, **extra})


# --- refresh tokens -------------------------------------------------------------------


def test_refresh_token_is_opaque_random_and_stored_only_as_a_digest(app, client, world):
    """A refresh token is >= 128 random bits, not a JWT; its row holds only the SHA-256."""
    value = login(client, world)["refresh_token"]
    assert "." not in value and len(unb64url(value)) >= 16
    row = _row(app, value)
    assert row.token_hash == hashlib.sha256(value.encode()).hexdigest()
    cells = [str(getattr(row, c.key)) for c in RefreshToken.__table__.columns]
    assert not any(value in cell for cell in cells)


def test_refresh_rotates_on_every_use(client, world):
    """Each refresh answers a new refresh token and access token; the used one is dead."""
    first = login(client, world)
    r1 = first["refresh_token"]
    second = refresh(client, r1, world.public_id)
    assert second.status_code == 200, second.get_data(as_text=True)
    r2 = second.get_json()["refresh_token"]
    assert r2 != r1 and second.get_json()["access_token"] != first["access_token"]
    third = refresh(client, r2, world.public_id)
    assert third.status_code == 200
    assert third.get_json()["refresh_token"] not in (r1, r2)
    assert _user_status(client, third.get_json()["access_token"]) == 200


def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(app, client, world):
    """Presenting an already-rotated token (its successor used: no retry) is invalid_grant
    and kills the newest one too."""
    r1 = login(client, world)["refresh_token"]
    r2 = refresh(client, r1, world.public_id).get_json()["refresh_token"]
    r3 = refresh(client, r2, world.public_id).get_json()["refresh_token"]
    assert _error(refresh(client, r1, world.public_id)) == "invalid_grant"
    assert _error(refresh(client, r3, world.public_id)) == "invalid_grant"
    with app.app_context():
        family = _row(app, r1).family_id
        rows = db.session.scalars(select(RefreshToken).where(RefreshToken.family_id == family))
        assert all(row.revoked_at is not None for row in rows)


def test_a_second_login_is_a_separate_family(client, world):
    """Replay in one family leaves another login's refresh token working."""
    r1 = login(client, world)["refresh_token"]
    other = login(client, world)["refresh_token"]
    r2 = refresh(client, r1, world.public_id).get_json()["refresh_token"]
    refresh(client, r2, world.public_id)
    assert _error(refresh(client, r1, world.public_id)) == "invalid_grant"
    assert refresh(client, other, world.public_id).status_code == 200


def test_idle_expired_refresh_token_is_invalid_grant(app, client, world):
    """A refresh token past its expires_at (idle lifetime) is refused."""
    value = login(client, world)["refresh_token"]
    _move_row(app, value, expires_at=-timedelta(days=15))
    assert _error(refresh(client, value, world.public_id)) == "invalid_grant"


def test_absolute_lifetime_caps_expiry_through_rotations(app, make_app, world):
    """With a 60 s absolute lifetime, expiry never passes login + 60 s, however often rotated."""
    short = make_app(REFRESH_TOKEN_ABSOLUTE_LIFETIME=60).test_client()
    r1 = login(short, world)["refresh_token"]
    row1 = _row(app, r1)
    deadline = row1.auth_time + timedelta(seconds=60)
    assert row1.expires_at <= deadline
    r2 = refresh(short, r1, world.public_id).get_json()["refresh_token"]
    row2 = _row(app, r2)
    assert row2.auth_time == row1.auth_time and row2.expires_at <= deadline


def test_refresh_after_the_absolute_lifetime_is_invalid_grant(app, make_app, world):
    """A family whose login lies beyond the absolute lifetime cannot refresh."""
    short = make_app(REFRESH_TOKEN_ABSOLUTE_LIFETIME=60).test_client()
    value = login(short, world)["refresh_token"]
    _move_row(app, value, auth_time=-timedelta(seconds=120), expires_at=-timedelta(seconds=120))
    assert _error(refresh(short, value, world.public_id)) == "invalid_grant"


def test_absolute_lifetime_is_checked_against_the_login_time(app, client, make_app, world):
    """A token whose expires_at is still ahead is refused once login + absolute lifetime passed
    (e.g. after the lifetime was shortened)."""
    value = login(client, world)["refresh_token"]  # 30-day absolute lifetime
    _move_row(app, value, auth_time=-timedelta(seconds=120))
    assert _row(app, value).expires_at > utcnow()
    short = make_app(REFRESH_TOKEN_ABSOLUTE_LIFETIME=60).test_client()
    assert _active(client, world, value)
    assert not _active(short, world, value)
    assert _error(refresh(short, value, world.public_id)) == "invalid_grant"


@pytest.mark.parametrize(("grace", "most"), [(0, 1), (10, 2)])
def test_concurrent_refreshes_of_one_token_succeed_at_most_once(make_app, world, grace, most):
    """Ten threads racing one refresh token get at most one 200 (two with the retry grace:
    the use and its one retry), and no server error."""
    app = make_app(REFRESH_TOKEN_RETRY_GRACE=grace)
    value = login(app.test_client(), world)["refresh_token"]
    barrier = threading.Barrier(10)
    statuses: list[int] = []
    failures: list[BaseException] = []

    def race() -> None:
        client = app.test_client()
        try:
            barrier.wait(timeout=10)
            statuses.append(refresh(client, value, world.public_id).status_code)
        except BaseException as exc:  # reported below, not swallowed
            failures.append(exc)

    threads = [threading.Thread(target=race) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not failures, failures
    assert len(statuses) == 10
    assert statuses.count(200) <= most
    assert set(statuses) <= {200, 400}


def test_refresh_by_another_client_is_invalid_grant_and_burns_nothing(client, world):
    """Another client (other account, or a sibling of the same account) cannot use the token."""
    value = login(client, world)["refresh_token"]
    assert _error(refresh(client, value, world.other_public_id)) == "invalid_grant"
    sibling = client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": value},
        headers=basic(world.conf_id, world.conf_secret),
    )
    assert _error(sibling) == "invalid_grant"
    assert refresh(client, value, world.public_id).status_code == 200


def test_live_user_refresh_with_test_aid_mints_a_test_mode_token(client, world):
    """`scope=aid:<test account>` with a live user's refresh token gives aid=test, mode=test."""
    value = login(client, world)["refresh_token"]
    response = refresh(client, value, world.public_id, scope=f"aid:{world.test_id}")
    assert response.status_code == 200, response.get_data(as_text=True)
    _, claims = jwt_parts(response.get_json()["access_token"])
    assert (claims["aid"], claims["mode"], claims["role"]) == (world.test_id, "test", "owner")
    # The family stays bound to the live account.
    again = refresh(client, response.get_json()["refresh_token"], world.public_id)
    _, claims = jwt_parts(again.get_json()["access_token"])
    assert (claims["aid"], claims["mode"]) == (world.live_id, "live")


def test_test_user_refresh_cannot_switch_to_the_live_account(client, world):
    """A test-account user's refresh token with aid of the live account is refused."""
    value = login(client, world, username="tess")["refresh_token"]
    response = refresh(client, value, world.test_public_id, scope=f"aid:{world.live_id}")
    assert _error(response) in ("invalid_scope", "invalid_grant")


def test_refresh_cannot_switch_to_an_unrelated_account(client, world):
    """A live user's refresh token with aid of another account is refused."""
    value = login(client, world)["refresh_token"]
    response = refresh(client, value, world.public_id, scope=f"aid:{world.other_id}")
    assert _error(response) in ("invalid_scope", "invalid_grant")


def test_refresh_may_narrow_the_scope(client, world):
    """A narrower OIDC scope is granted as asked."""
    value = login(client, world, scope="openid profile email")["refresh_token"]
    response = refresh(client, value, world.public_id, scope="openid")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["scope"] == "openid"
    assert jwt_parts(response.get_json()["access_token"])[1]["scope"] == "openid"


def test_refresh_may_not_widen_the_scope_and_the_token_survives(client, world):
    """A wider scope is invalid_scope, and the refused request does not burn the token."""
    value = login(client, world, scope="openid")["refresh_token"]
    response = refresh(client, value, world.public_id, scope="openid profile")
    assert _error(response) == "invalid_scope"
    assert refresh(client, value, world.public_id).status_code == 200


def test_replay_with_a_wider_scope_still_revokes_the_family(client, world):
    """A rotated token replayed with a wider scope is invalid_grant and kills its family."""
    r1 = login(client, world, scope="openid")["refresh_token"]
    r2 = refresh(client, r1, world.public_id).get_json()["refresh_token"]
    replay = refresh(client, r1, world.public_id, scope="openid profile")
    assert _error(replay) == "invalid_grant"
    assert _error(refresh(client, r2, world.public_id)) == "invalid_grant"


# --- publishable refresh tokens -------------------------------------------------------


def _publishable(client: Any, value: str, **extra: Any) -> Any:
    headers = extra.pop("headers", None)
    data = {"grant_type": "refresh_token", "refresh_token": value, **extra}
    return client.post("/oauth/token", data=data, headers=headers or {})


@pytest.mark.parametrize("mode", ["live", "test"])
def test_publishable_token_without_client_gives_a_reusable_guest_token(client, world, mode):
    """prt-<mode>-... with no client: a guest token of that account and mode, no refresh token,
    and the publishable token works again."""
    value, account = (
        (world.live_prt, world.live_id) if mode == "live" else (world.test_prt, world.test_id)
    )
    for _ in range(2):
        response = _publishable(client, value)
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        assert "refresh_token" not in body
        _, claims = jwt_parts(body["access_token"])
        assert (claims["role"], claims["aid"], claims["mode"]) == ("guest", account, mode)


def test_publishable_token_with_the_accounts_public_client(client, world):
    """With the account's own public client_id the answer is the same guest token."""
    response = _publishable(client, world.live_prt, client_id=world.public_id)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "refresh_token" not in response.get_json()
    _, claims = jwt_parts(response.get_json()["access_token"])
    assert (claims["role"], claims["aid"], claims["client_id"]) == (
        "guest",
        world.live_id,
        world.public_id,
    )


def test_publishable_token_by_another_accounts_client_is_invalid_grant(client, world):
    """A client of another account cannot use the account's publishable token."""
    public = _publishable(client, world.live_prt, client_id=world.other_public_id)
    assert _error(public) == "invalid_grant"
    confidential = _publishable(
        client, world.live_prt, headers=basic(world.other_id_client, world.other_secret)
    )
    assert _error(confidential) == "invalid_grant"


def test_regenerated_publishable_token_replaces_the_old_one(client, runner, world):
    """After `accounts regenerate-publishable-token` the old one is invalid_grant."""
    result = runner.invoke(
        cli, ["accounts", "regenerate-publishable-token", "--account", world.live_id, "--json"]
    )
    assert result.exit_code == 0, result.output
    new = json.loads(result.output)["publishableToken"]
    assert _error(_publishable(client, world.live_prt)) == "invalid_grant"
    assert _publishable(client, new).status_code == 200


def test_guest_token_cannot_read_the_current_user(client, world):
    """A guest token on GET /v1/user is refused (403/404), not a user."""
    token = _publishable(client, world.live_prt).get_json()["access_token"]
    assert _user_status(client, token) in (403, 404)


# --- client credentials ---------------------------------------------------------------


@pytest.mark.parametrize("how", ["basic", "post"])
def test_client_credentials_gives_a_client_token(client, world, how):
    """client_secret_basic / _post: sub = client_id, aid = its account, its role, no refresh."""
    data = {"grant_type": "client_credentials"}
    headers = {}
    if how == "basic":
        headers = basic(world.conf_id, world.conf_secret)
    else:
        data |= {"client_id": world.conf_id, "client_secret": world.conf_secret}
    response = client.post("/oauth/token", data=data, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert "refresh_token" not in body and body["token_type"] == "Bearer"
    _, claims = jwt_parts(body["access_token"])
    assert claims["sub"] == claims["client_id"] == world.conf_id
    assert (claims["aid"], claims["mode"], claims["role"]) == (world.live_id, "live", "developer")


def test_client_credentials_refused_to_a_public_client(client, world):
    """A public client cannot use client_credentials."""
    response = client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_id": world.public_id}
    )
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] in ("unauthorized_client", "invalid_client")


@pytest.mark.parametrize("how", ["basic", "post"])
def test_client_credentials_with_a_wrong_secret_is_401(client, world, how):
    """A wrong secret is 401 invalid_client with a WWW-Authenticate challenge."""
    data = {"grant_type": "client_credentials"}
    headers = {}
    if how == "basic":
        headers = basic(world.conf_id, "wrong-secret")
    else:
        data |= {"client_id": world.conf_id, "client_secret": "wrong-secret"}
    response = client.post("/oauth/token", data=data, headers=headers)
    assert _error(response, 401) == "invalid_client"
    # Our challenge, not Authlib's (which quotes its internal list of method names).
    assert (
        response.headers["WWW-Authenticate"] == 'Basic realm="authserver", error="invalid_client"'
    )


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic !!!not-base64!!!",
        "Basic " + b64url(b"no-colon-here"),
        "Basic ",
        "Basic",
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Basic " + base64.b64encode("cl\u00e9:s\u00e9cret".encode()).decode(),
        "Basic " + base64.b64encode(b"a\x00b:c").decode(),
    ],
)
def test_malformed_basic_header_is_a_client_error_never_500(client, authorization):
    """Bad base64, no colon, nothing, non-UTF-8, non-ASCII or NUL: 400/401 JSON, never 500."""
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": authorization},
    )
    assert response.status_code in (400, 401), response.get_data(as_text=True)
    assert response.get_json()["error"] in ("invalid_client", "invalid_request")
    assert response.headers["Cache-Control"] == "no-store"


def test_non_ascii_secret_in_the_body_is_401(client, world):
    """A non-ASCII client_secret in the form is invalid_client, not a crash."""
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": world.conf_id,
            "client_secret": "s\u00e9cret-\u2603",
        },
    )
    assert _error(response, 401) == "invalid_client"
    assert "WWW-Authenticate" in response.headers


# --- JWT access tokens ----------------------------------------------------------------


def test_access_token_is_an_es256_at_jwt_verifiable_with_the_jwks(app, client, world):
    """typ at+jwt, ES256, kid in the JWKS; verifies with joserfc; every claim present."""
    token = login(client, world)["access_token"]
    header, _ = jwt_parts(token)
    assert (header["typ"], header["alg"]) == ("at+jwt", "ES256")
    jwks = client.get("/oauth/jwks").get_json()
    assert header["kid"] in [k["kid"] for k in jwks["keys"]]
    assert all("d" not in k for k in jwks["keys"])  # public parts only
    decoded = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["ES256"])
    claims = decoded.claims
    assert set(claims) >= {
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "jti",
        "client_id",
        "scope",
        "aid",
        "mode",
        "role",
    }
    assert claims["iss"] == app.config["ISSUER"]
    assert claims["aud"] == app.config["ISSUER"] + "/v1"
    assert (claims["sub"], claims["client_id"]) == (world.alice_id, world.public_id)
    assert (claims["aid"], claims["mode"], claims["role"]) == (world.live_id, "live", "owner")
    assert claims["scope"] == "openid profile email"
    assert claims["exp"] - claims["iat"] == app.config["ACCESS_TOKEN_LIFETIME"]


def test_access_token_lifetime_follows_the_setting(make_app, app, world):
    """exp - iat and expires_in equal ACCESS_TOKEN_LIFETIME when it is changed."""
    body = login(make_app(ACCESS_TOKEN_LIFETIME=120).test_client(), world)
    _, claims = jwt_parts(body["access_token"])
    assert claims["exp"] - claims["iat"] == 120 == body["expires_in"]


def test_old_tokens_survive_key_rotation_and_new_ones_use_the_new_key(client, runner, world):
    """After `keys rotate --now` the old token works, new ones carry the new kid, JWKS lists
    both (the publish delay is tested in tests/test_keys.py)."""
    old = login(client, world)["access_token"]
    old_kid = jwt_parts(old)[0]["kid"]
    result = runner.invoke(cli, ["keys", "rotate", "--now", "--json"])
    assert result.exit_code == 0, result.output
    new_kid = next(k["kid"] for k in json.loads(result.output)["keys"] if k["alg"] == "ES256")
    assert new_kid != old_kid
    kids = [k["kid"] for k in client.get("/oauth/jwks").get_json()["keys"]]
    assert old_kid in kids and new_kid in kids
    assert _user_status(client, old) == 200
    assert _active(client, world, old)
    new = login(client, world)["access_token"]
    assert jwt_parts(new)[0]["kid"] == new_kid
    assert _user_status(client, new) == 200


# --- the /v1 bearer guard -------------------------------------------------------------


def _alice_claims(app: Any, world: World, **overrides: Any) -> dict[str, Any]:
    base = {"sub": world.alice_id, "aid": world.live_id, "client_id": world.public_id, "gen": 0}
    return access_claims(app, **(base | overrides))


def test_valid_token_reads_the_current_user(client, world):
    """GET /v1/user with a valid token answers that user."""
    token = login(client, world)["access_token"]
    response = client.get("/v1/user", headers=bearer(token))
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert (data["id"], data["attributes"]["username"]) == (world.alice_id, "alice")


def test_self_signed_control_token_is_accepted(app, client, world):
    """The forged-token cases below differ from this accepted token only in their defect."""
    token = sign_with_app_key(app, _alice_claims(app, world))
    assert _user_status(client, token) == 200


def _forge(app: Any, world: World, case: str) -> str:
    good = _alice_claims(app, world)
    if case == "tampered_signature":
        token = login(app.test_client(), world)["access_token"]
        head, body, sig = token.split(".")
        raw = bytearray(unb64url(sig))
        raw[10] ^= 0x01
        return f"{head}.{body}.{b64url(bytes(raw))}"
    if case == "tampered_claims":
        token = login(app.test_client(), world)["access_token"]
        head, body, sig = token.split(".")
        claims = json.loads(unb64url(body)) | {"role": "owner", "exp": int(time.time()) + 99999}
        return f"{head}.{b64url(json.dumps(claims).encode())}.{sig}"
    if case == "alg_none":
        head = b64url(json.dumps({"alg": "none", "typ": "at+jwt"}).encode())
        return f"{head}.{b64url(json.dumps(good).encode())}."
    if case == "hs256_with_public_key":
        key = app.extensions["authserver.keys"].signing_key("ES256")
        head = b64url(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": key.kid}).encode())
        signing_input = f"{head}.{b64url(json.dumps(good).encode())}"
        mac = hmac.new(key.as_pem(private=False), signing_input.encode(), hashlib.sha256)
        return f"{signing_input}.{b64url(mac.digest())}"
    if case == "rs256_access_token":
        return sign_with_app_key(app, good, alg="RS256")
    if case == "wrong_typ_es256":
        return sign_with_app_key(app, good, typ="JWT")
    if case == "id_token_like_rs256":
        claims = good | {"aud": world.public_id, "nonce": "n", "auth_time": int(time.time())}
        return sign_with_app_key(app, claims, alg="RS256", typ="JWT")
    if case == "wrong_aud":
        return sign_with_app_key(app, good | {"aud": "https://elsewhere.example/v1"})
    if case == "wrong_iss":
        return sign_with_app_key(app, good | {"iss": "https://evil.example"})
    if case == "expired":
        now = int(time.time())
        return sign_with_app_key(app, good | {"iat": now - 4000, "exp": now - 3600})
    if case == "issued_in_the_future":
        now = int(time.time())
        return sign_with_app_key(app, good | {"iat": now + 3600, "exp": now + 4000})
    if case == "no_jti":
        return sign_with_app_key(app, {k: v for k, v in good.items() if k != "jti"})
    if case == "huge_16k":
        return sign_with_app_key(app, good | {"padding": "x" * 16 * 1024})
    if case == "garbage":
        return "not-a-jwt"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "tampered_signature",
        "tampered_claims",
        "alg_none",
        "hs256_with_public_key",
        "rs256_access_token",
        "wrong_typ_es256",
        "id_token_like_rs256",
        "wrong_aud",
        "wrong_iss",
        "expired",
        "issued_in_the_future",
        "no_jti",
        "huge_16k",
        "garbage",
    ],
)
def test_bad_tokens_get_401_invalid_token(app, client, world, case):
    """Each defective token is 401 with `WWW-Authenticate: Bearer ... error="invalid_token"`."""
    _assert_invalid_token(client.get("/v1/user", headers=bearer(_forge(app, world, case))))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer    "},
        {"Authorization": "Basic YWxpY2U6cGFzc3dvcmQ="},
    ],
)
def test_missing_token_is_401_without_an_error_code(client, headers):
    """No bearer token at all: 401 with a Bearer challenge that names no error."""
    response = client.get("/v1/user", headers=headers)
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and "error=" not in challenge


def test_lowercase_bearer_scheme_is_accepted(client, world):
    """The auth scheme is case-insensitive (RFC 7235)."""
    token = login(client, world)["access_token"]
    assert _user_status(client, token, {"Authorization": f"bearer {token}"}) == 200


def test_token_in_the_query_string_is_ignored(client, world):
    """`?access_token=` is not a way in (RFC 6750 2.3 is not supported)."""
    token = login(client, world)["access_token"]
    response = client.get(f"/v1/user?access_token={token}")
    assert response.status_code == 401
    assert "error=" not in response.headers["WWW-Authenticate"]


# --- revocation on password and status changes ----------------------------------------


def _change(app: Any, world: World, action: str) -> None:
    with app.app_context():
        user = db.session.get(User, world.alice_id)
        if action == "password":
            accounts.set_password(user, NEW_PASSWORD)
        else:
            accounts.set_status(user, action)


def test_password_change_revokes_earlier_tokens_at_once(app, client, world):
    """set_password: old access token 401 and inactive, old refresh invalid_grant; a token
    obtained right after the change works."""
    old = login(client, world)
    assert _user_status(client, old["access_token"]) == 200
    _change(app, world, "password")
    _assert_invalid_token(client.get("/v1/user", headers=bearer(old["access_token"])))
    assert not _active(client, world, old["access_token"])
    assert not _active(client, world, old["refresh_token"])
    assert _error(refresh(client, old["refresh_token"], world.public_id)) == "invalid_grant"
    assert _error(password_grant(client, world, "alice", PASSWORD)) == "invalid_grant"
    new = login(client, world, password=NEW_PASSWORD)
    assert _user_status(client, new["access_token"]) == 200
    assert _active(client, world, new["access_token"])
    assert refresh(client, new["refresh_token"], world.public_id).status_code == 200


def test_second_revocation_in_the_same_second_voids_the_token_between(app, client, world):
    """Revoke, log in, revoke again within one second: the token in between is refused."""
    left = 1 - time.time() % 1
    if left < 0.6:  # start early in a second, so all three steps share it
        time.sleep(left + 0.01)
    _change(app, world, "password")
    middle = login(client, world, password=NEW_PASSWORD)
    with app.app_context():
        accounts.set_password(db.session.get(User, world.alice_id), PASSWORD)
    _assert_invalid_token(client.get("/v1/user", headers=bearer(middle["access_token"])))
    assert not _active(client, world, middle["access_token"])
    assert _error(refresh(client, middle["refresh_token"], world.public_id)) == "invalid_grant"


@pytest.mark.parametrize("status", ["disabled", "deleted"])
def test_leaving_active_status_revokes_every_token(app, client, world, status):
    """set_status disabled/deleted: old tokens die at once, and logging in is refused."""
    old = login(client, world)
    _change(app, world, status)
    _assert_invalid_token(client.get("/v1/user", headers=bearer(old["access_token"])))
    assert not _active(client, world, old["access_token"])
    assert _error(refresh(client, old["refresh_token"], world.public_id)) == "invalid_grant"
    assert _error(password_grant(client, world, "alice", PASSWORD)) == "invalid_grant"


def test_reactivated_user_keeps_old_tokens_dead_and_can_log_in_again(app, client, world):
    """After disabled -> active the earlier tokens stay void; a fresh login works at once."""
    old = login(client, world)
    _change(app, world, "disabled")
    _change(app, world, "active")
    _assert_invalid_token(client.get("/v1/user", headers=bearer(old["access_token"])))
    assert _error(refresh(client, old["refresh_token"], world.public_id)) == "invalid_grant"
    new = login(client, world)
    assert _user_status(client, new["access_token"]) == 200


def test_refresh_token_reuse_kills_the_access_tokens_of_that_login(client, world):
    """Replaying a rotated refresh token revokes every access token of that login too."""
    first = login(client, world)
    second = refresh(client, first["refresh_token"], world.public_id).get_json()
    refresh(client, second["refresh_token"], world.public_id)  # the successor is used
    other_login = login(client, world)  # a separate login of the same user stays alive
    assert refresh(client, first["refresh_token"], world.public_id).status_code == 400
    for token in (first["access_token"], second["access_token"]):
        _assert_invalid_token(client.get("/v1/user", headers=bearer(token)))
        assert not _active(client, world, token)
    assert _user_status(client, other_login["access_token"]) == 200


def test_revoking_a_refresh_token_kills_the_access_tokens_of_that_login(client, world):
    """/oauth/revoke on a refresh token ends its login: its access tokens get 401 too."""
    tokens = login(client, world)
    assert _revoke(client, tokens["refresh_token"], world.public_id).status_code == 200
    _assert_invalid_token(client.get("/v1/user", headers=bearer(tokens["access_token"])))


# --- /oauth/revoke (RFC 7009) ---------------------------------------------------------


def test_revoking_a_refresh_token_ends_its_family(client, world):
    """Revoking the rotated token kills its successor too; the answer is 200."""
    r1 = login(client, world)["refresh_token"]
    r2 = refresh(client, r1, world.public_id).get_json()["refresh_token"]
    response = _revoke(client, r1, world.public_id)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert _error(refresh(client, r2, world.public_id)) == "invalid_grant"


def test_revoking_an_access_token_denies_it(client, world):
    """A revoked access token is 401 on /v1/user and inactive on introspection."""
    token = login(client, world)["access_token"]
    assert _revoke(client, token, world.public_id).status_code == 200
    _assert_invalid_token(client.get("/v1/user", headers=bearer(token)))
    assert not _active(client, world, token)


def test_revoking_by_a_confidential_client_with_basic_auth(client, world):
    """The confidential client revokes its own client-credentials token."""
    token = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(world.conf_id, world.conf_secret),
    ).get_json()["access_token"]
    assert _active(client, world, token)
    response = client.post(
        "/oauth/revoke", data={"token": token}, headers=basic(world.conf_id, world.conf_secret)
    )
    assert response.status_code == 200
    assert not _active(client, world, token)


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 5000, "prt-live-unknown"])
def test_revoking_an_unknown_token_is_200(client, world, token):
    """Unknown or garbage tokens answer 200 (RFC 7009 2.2)."""
    response = _revoke(client, token, world.public_id)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_revoking_another_clients_refresh_token_is_refused(client, world):
    """Another client's refresh token: 400 invalid_grant, and the token keeps working."""
    value = login(client, world)["refresh_token"]
    assert _error(_revoke(client, value, world.other_public_id)) == "invalid_grant"
    assert refresh(client, value, world.public_id).status_code == 200


@pytest.mark.parametrize("kind", ["refresh_token", "access_token"])
def test_revocation_hint_of_the_wrong_type_still_finds_the_token(client, world, kind):
    """A token_type_hint naming the other type does not stop the revocation."""
    body = login(client, world)
    wrong = "access_token" if kind == "refresh_token" else "refresh_token"
    response = _revoke(client, body[kind], world.public_id, token_type_hint=wrong)
    assert response.status_code == 200
    if kind == "refresh_token":
        assert _error(refresh(client, body[kind], world.public_id)) == "invalid_grant"
    else:
        _assert_invalid_token(client.get("/v1/user", headers=bearer(body[kind])))


def test_revocation_parameter_errors(client, world):
    """Missing token is invalid_request; an unknown hint is unsupported_token_type."""
    missing = client.post("/oauth/revoke", data={"client_id": world.public_id})
    assert _error(missing) == "invalid_request"
    value = login(client, world)["refresh_token"]
    hint = _revoke(client, value, world.public_id, token_type_hint="id_token")
    assert _error(hint) == "unsupported_token_type"
    assert refresh(client, value, world.public_id).status_code == 200


# --- /oauth/introspect (RFC 7662) -----------------------------------------------------


def test_introspection_requires_a_confidential_client(client, world):
    """A public client or no client at all: 401 invalid_client."""
    token = login(client, world)["access_token"]
    public = client.post("/oauth/introspect", data={"token": token, "client_id": world.public_id})
    assert _error(public, 401) == "invalid_client"
    anonymous = client.post("/oauth/introspect", data={"token": token})
    assert _error(anonymous, 401) == "invalid_client"
    assert "WWW-Authenticate" in anonymous.headers


def test_introspection_of_a_live_access_token(app, client, world):
    """An access token of the client's own account: active with every RFC 7662 field."""
    token = login(client, world)["access_token"]
    response = introspect(client, world, token)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    _, claims = jwt_parts(token)
    assert body["active"] is True
    for name in ("iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "aid"):
        assert body[name] == claims[name], name
    assert (body["mode"], body["role"], body["username"]) == ("live", "owner", "alice")
    assert body["iss"] == app.config["ISSUER"]


def test_introspection_of_a_refresh_token(client, world):
    """A live refresh token introspects as active; once rotated it is inactive."""
    value = login(client, world)["refresh_token"]
    body = introspect(client, world, value).get_json()
    assert body["active"] is True
    assert (body["sub"], body["username"], body["aid"]) == (world.alice_id, "alice", world.live_id)
    refresh(client, value, world.public_id)
    assert not _active(client, world, value)


def test_introspection_of_inactive_tokens(app, client, world):
    """Expired, revoked, garbage and other accounts' tokens are all `active: false`."""
    now = int(time.time())
    expired = sign_with_app_key(app, _alice_claims(app, world, iat=now - 4000, exp=now - 3600))
    revoked = login(client, world)["access_token"]
    _revoke(client, revoked, world.public_id)
    foreign = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(world.other_id_client, world.other_secret),
    ).get_json()["access_token"]
    for token in (expired, revoked, "garbage", "a.b.c", foreign):
        assert not _active(client, world, token), token
    # And the other account's client cannot look at ours.
    ours = login(client, world)["access_token"]
    response = client.post(
        "/oauth/introspect",
        data={"token": ours},
        headers=basic(world.other_id_client, world.other_secret),
    )
    assert response.status_code == 200 and response.get_json() == {"active": False}


# --- discovery ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"]
)
def test_discovery_documents_describe_the_token_service(app, client, path):
    """Issuer, endpoints, grants, auth methods and scopes are listed; every URL answers."""
    response = client.get(path)
    assert response.status_code == 200
    doc = response.get_json()
    issuer = app.config["ISSUER"]
    assert doc["issuer"] == issuer
    assert doc["token_endpoint"] == issuer + "/oauth/token"
    assert doc["jwks_uri"] == issuer + "/oauth/jwks"
    assert doc["revocation_endpoint"] == issuer + "/oauth/revoke"
    assert doc["introspection_endpoint"] == issuer + "/oauth/introspect"
    assert {"password", "refresh_token", "client_credentials"} <= set(doc["grant_types_supported"])
    assert {"client_secret_basic", "client_secret_post", "none"} <= set(
        doc["token_endpoint_auth_methods_supported"]
    )
    assert "openid" in doc["scopes_supported"]
    urls = [v for v in doc.values() if isinstance(v, str) and v.startswith(issuer + "/")]
    assert len(urls) >= 4
    for url in urls:
        path_only = urlsplit(url).path
        if url == doc["jwks_uri"]:
            assert client.get(path_only).status_code == 200
            continue
        answer = client.post(path_only, data={})
        if url == doc.get("authorization_endpoint"):  # a browser endpoint: an HTML error page
            assert answer.status_code == 400 and answer.mimetype == "text/html"
            continue
        if url == doc.get("end_session_endpoint"):  # nobody signed in: our signed-out page
            assert answer.status_code == 200 and answer.mimetype == "text/html"
            continue
        if url == doc.get("userinfo_endpoint"):  # RFC 6750 3.1: no token, no error code
            assert answer.status_code == 401 and "Bearer" in answer.headers["WWW-Authenticate"]
            continue
        assert answer.status_code in (400, 401), (url, answer.status_code)
        assert "error" in answer.get_json()
