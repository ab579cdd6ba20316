"""Discovery and JWKS from prebuilt bytes: no SQL once warm, a strong ETag with 304 for
a matching If-None-Match, the caching headers, and a document that follows the issuer."""

from __future__ import annotations

import pytest
from sql_helpers import statements

DOCUMENTS = [
    "/oauth/jwks",
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
]


@pytest.mark.parametrize("path", DOCUMENTS)
def test_documents_run_no_sql_once_warm(app, path):
    """After the first request (which reads the keys) a document costs no SQL at all."""
    client = app.test_client()
    assert client.get(path).status_code == 200
    with statements(app) as seen:
        for _ in range(5):
            response = client.get(path)
            assert response.status_code == 200
    assert seen == []


@pytest.mark.parametrize("path", DOCUMENTS)
def test_documents_carry_an_etag_and_answer_304_to_it(app, path):
    """Each document has a strong ETag, public caching and CORS; the same ETag back gets
    a bodiless 304 with the same headers, another ETag the full document."""
    client = app.test_client()
    first = client.get(path)
    etag = first.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert first.headers["Cache-Control"].startswith("public, max-age=")
    assert first.headers["Access-Control-Allow-Origin"] == "*"
    assert first.mimetype == "application/json" and first.get_json()
    cached = client.get(path, headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.data == b""
    assert cached.headers["ETag"] == etag
    assert cached.headers["Cache-Control"] == first.headers["Cache-Control"]
    other = client.get(path, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.data == first.data


def test_discovery_follows_a_change_of_the_issuer(app):
    """The prebuilt discovery bytes are rebuilt when the app's ISSUER changes."""
    client = app.test_client()
    before = client.get("/.well-known/openid-configuration")
    app.config["ISSUER"] = "https://changed.example"
    after = client.get("/.well-known/openid-configuration")
    assert after.get_json()["issuer"] == "https://changed.example"
    assert after.get_json()["jwks_uri"] == "https://changed.example/oauth/jwks"
    assert after.headers["ETag"] != before.headers["ETag"]


def test_jwks_bytes_are_the_published_keys(app):
    """The prebuilt JWKS bytes hold exactly the keyring's published public keys."""
    ring = app.extensions["authserver.keys"]
    body = app.test_client().get("/oauth/jwks").get_json()
    assert body == ring.public_jwks()
    assert all("d" not in key for key in body["keys"])  # public parts only
