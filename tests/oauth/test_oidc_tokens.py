"""The code exchange at /oauth/token, the ID token as a relying party checks it (Authlib's
client-side CodeIDToken with the published JWKS), replayed codes, userinfo by scope,
and the discovery documents."""

from __future__ import annotations

from typing import Any

import pytest
from authlib.oidc.core import CodeIDToken
from authlib.oidc.discovery import OpenIDProviderMetadata
from factories import WEB_CB, OidcWorld
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry
from oauth_helpers import basic, bearer
from oidc_helpers import (
    approve,
    assert_replay_ends_the_login,
    auth_params,
    exchange,
    pkce,
    query_of,
    sign_in,
)

from authserver.platform.extensions import db
from authserver.platform.models import User
from authserver.platform.security import digest


def _code(web: Any, browser: Any, oidc_world: OidcWorld, **extra: Any) -> tuple[str, str, dict]:
    """Sign alice in, consent, return (code, verifier, params)."""
    amr = extra.pop("amr", ("pwd",))
    sign_in(web, browser, oidc_world.base.alice_id, oidc_world.base.live_id, amr=amr)
    verifier, challenge = pkce()
    params = auth_params(extra.pop("client_id", oidc_world.spa_id), challenge, **extra)
    response = approve(browser, params)
    return query_of(response)["code"], verifier, params


def _relying_party_check(browser: Any, token: dict, client_id: str, nonce: str) -> Any:
    """What an RP does: discovery, JWKS, signature with the advertised algs, then Authlib's
    CodeIDToken claims validation (iss, aud, exp, iat, nonce, at_hash)."""
    meta = browser.get("/.well-known/openid-configuration").get_json()
    keys = KeySet.import_key_set(browser.get("/oauth/jwks").get_json())
    decoded = jwt.decode(
        token["id_token"],
        keys,
        registry=JWSRegistry(algorithms=meta["id_token_signing_alg_values_supported"]),
    )
    claims = CodeIDToken(
        decoded.claims,
        decoded.header,
        {"iss": {"values": [meta["issuer"]]}, "aud": {"values": [client_id]}},
        {"nonce": nonce, "client_id": client_id, "access_token": token["access_token"]},
    )
    claims.validate(leeway=5)
    return decoded


def test_happy_path_public_client_gets_a_valid_id_token(browser, web, oidc_world):
    """A public client exchanges its code with the verifier; the ID token passes an RP's
    checks and carries iss sub aud exp iat auth_time nonce amr acr at_hash and a kid."""
    code, verifier, params = _code(web, browser, oidc_world)
    response = exchange(browser, code, verifier, oidc_world.spa_id)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    token = response.get_json()
    assert "refresh_token" not in token
    decoded = _relying_party_check(browser, token, oidc_world.spa_id, params["nonce"])
    assert decoded.header["alg"] == "RS256" and decoded.header["kid"].startswith("rs-")
    claims = decoded.claims
    for name in ("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "acr", "at_hash"):
        assert name in claims, name
    assert claims["sub"] == oidc_world.base.alice_id and claims["amr"] == ["pwd"]
    assert claims["acr"].endswith("/aal/1")


def test_mfa_login_shows_in_amr_and_acr(browser, web, oidc_world):
    """A login with a second factor gives amr [pwd, otp, mfa] and the AAL2 acr."""
    code, verifier, _ = _code(web, browser, oidc_world, amr=("pwd", "otp", "mfa"))
    token = exchange(browser, code, verifier, oidc_world.spa_id).get_json()
    claims = jwt.decode(
        token["id_token"],
        KeySet.import_key_set(browser.get("/oauth/jwks").get_json()),
        algorithms=["RS256"],
    ).claims
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"].endswith("/aal/2")


def test_confidential_client_must_authenticate(browser, web, oidc_world):
    """A confidential client's code needs its secret: without it 401, with it 200."""
    code, verifier, _ = _code(
        web, browser, oidc_world, client_id=oidc_world.web_id, redirect_uri=WEB_CB
    )
    bare = exchange(browser, code, verifier, oidc_world.web_id, redirect_uri=WEB_CB)
    assert bare.status_code == 401 and bare.get_json()["error"] == "invalid_client"
    good = browser.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": WEB_CB,
        },
        headers=basic(oidc_world.web_id, oidc_world.web_secret),
    )
    assert good.status_code == 200 and "id_token" in good.get_json()


def test_replayed_code_fails_and_revokes_its_tokens(browser, web, oidc_world):
    """A second exchange of a code: invalid_grant, and the first access and refresh
    tokens stop working."""
    code, verifier, _ = _code(
        web, browser, oidc_world, scope="openid offline_access", prompt="consent"
    )
    assert_replay_ends_the_login(browser, code, verifier, oidc_world.spa_id)


def test_replay_with_a_wrong_verifier_revokes_nothing(browser, web, oidc_world):
    """Someone replaying a used code without the verifier gets invalid_grant and cannot
    end the user's tokens."""
    code, verifier, _ = _code(web, browser, oidc_world)
    first = exchange(browser, code, verifier, oidc_world.spa_id).get_json()
    wrong, _ = pkce()
    replay = exchange(browser, code, wrong, oidc_world.spa_id)
    assert replay.get_json()["error"] == "invalid_grant"
    assert browser.get("/oauth/userinfo", headers=bearer(first["access_token"])).status_code == 200


def test_wrong_or_missing_verifier_does_not_burn_the_code(browser, web, oidc_world):
    """A wrong verifier: invalid_grant; none: invalid_request; the right one still works."""
    code, verifier, _ = _code(web, browser, oidc_world)
    wrong, _ = pkce()
    assert exchange(browser, code, wrong, oidc_world.spa_id).get_json()["error"] == "invalid_grant"
    missing = exchange(browser, code, None, oidc_world.spa_id)
    assert missing.get_json()["error"] == "invalid_request"
    assert exchange(browser, code, verifier, oidc_world.spa_id).status_code == 200


def test_code_is_bound_to_client_and_redirect_uri(browser, web, oidc_world):
    """Another client, or another redirect_uri, cannot redeem the code; it still works after."""
    code, verifier, _ = _code(web, browser, oidc_world)
    other = exchange(browser, code, verifier, oidc_world.first_party_id)
    assert other.get_json()["error"] == "invalid_grant"
    moved = exchange(
        browser, code, verifier, oidc_world.spa_id, redirect_uri="https://spa.example/other"
    )
    assert moved.get_json()["error"] == "invalid_grant"
    assert exchange(browser, code, verifier, oidc_world.spa_id).status_code == 200


def test_codes_live_in_redis_for_the_configured_lifetime(browser, web, oidc_world):
    """The code is stored under its digest with a TTL of AUTHORIZATION_CODE_LIFETIME."""
    code, _, _ = _code(web, browser, oidc_world)
    store = web.extensions["authserver.store"]  # the app that issued it (memory:// is per app)
    ttl = store.ttl(f"authz-code:{digest(code)}")
    assert ttl is not None and 0 < ttl <= web.config["AUTHORIZATION_CODE_LIFETIME"] <= 600
    assert store.get(f"authz-code:{code}") is None  # never stored in the clear


def test_unknown_code_is_invalid_grant(browser, oidc_world):
    """A code that was never issued: invalid_grant."""
    verifier, _ = pkce()
    response = exchange(browser, "x" * 43, verifier, oidc_world.spa_id)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"


def test_offline_access_needs_prompt_consent(browser, web, oidc_world):
    """offline_access without prompt=consent is dropped (no refresh token); with it the
    refresh token works through the existing rotation."""
    code, verifier, _ = _code(web, browser, oidc_world, scope="openid offline_access")
    plain = exchange(browser, code, verifier, oidc_world.spa_id).get_json()
    assert "refresh_token" not in plain and "offline_access" not in plain["scope"]
    code, verifier, _ = _code(
        web, browser, oidc_world, scope="openid offline_access", prompt="consent"
    )
    token = exchange(browser, code, verifier, oidc_world.spa_id).get_json()
    refreshed = browser.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": oidc_world.spa_id,
        },
    )
    assert refreshed.status_code == 200 and refreshed.get_json()["refresh_token"]


def test_a_disabled_user_cannot_redeem_a_code(browser, web, oidc_world, app):
    """The user disabled between consent and exchange: invalid_grant."""
    code, verifier, _ = _code(web, browser, oidc_world)
    with app.app_context():
        db.session.get(User, oidc_world.base.alice_id).status = "disabled"
        db.session.commit()
    assert (
        exchange(browser, code, verifier, oidc_world.spa_id).get_json()["error"] == "invalid_grant"
    )


@pytest.mark.parametrize(
    ("scope", "present", "absent"),
    [
        ("openid", {"sub"}, {"email", "preferred_username", "phone_number"}),
        ("openid profile", {"sub", "preferred_username", "name"}, {"email", "phone_number"}),
        ("openid email", {"sub", "email", "email_verified"}, {"preferred_username"}),
        ("openid phone", {"sub", "phone_number", "phone_number_verified"}, {"email"}),
    ],
)
def test_userinfo_gives_what_the_scopes_allow(
    browser, web, oidc_world, app, scope, present, absent
):
    """GET and POST userinfo return the claims of the granted scopes, and no others."""
    with app.app_context():
        alice = db.session.get(User, oidc_world.base.alice_id)
        alice.email, alice.phone_number, alice.name = "a@example.com", "+15550001111", "Alice"
        db.session.commit()
    code, verifier, _ = _code(web, browser, oidc_world, scope=scope)
    token = exchange(browser, code, verifier, oidc_world.spa_id).get_json()["access_token"]
    for method in (browser.get, browser.post):
        claims = method("/oauth/userinfo", headers=bearer(token)).get_json()
        assert present <= set(claims) and not (absent & set(claims))
        assert claims["sub"] == oidc_world.base.alice_id


def test_userinfo_refuses_missing_and_bad_tokens(browser, web, oidc_world):
    """No token: 401 without an error code; a bad one: 401 invalid_token; a token in the
    query string is not read."""
    none = browser.get("/oauth/userinfo")
    assert (
        none.status_code == 401 and none.headers["WWW-Authenticate"] == 'Bearer realm="authserver"'
    )
    bad = browser.get("/oauth/userinfo", headers=bearer("x.y.z"))
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
    code, verifier, _ = _code(web, browser, oidc_world)
    token = exchange(browser, code, verifier, oidc_world.spa_id).get_json()["access_token"]
    assert browser.get("/oauth/userinfo", query_string={"access_token": token}).status_code == 401


@pytest.mark.parametrize(
    "path", ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"]
)
def test_discovery_lists_the_provider(browser, path):
    """Both documents validate as OpenID Provider metadata and list code + S256 only."""
    doc = browser.get(path).get_json()
    OpenIDProviderMetadata(doc).validate()
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["authorization_endpoint"].endswith("/oauth/authorize")
    assert doc["userinfo_endpoint"].endswith("/oauth/userinfo")
    assert "authorization_code" in doc["grant_types_supported"]
    assert "none" not in doc["id_token_signing_alg_values_supported"]
