"""HTTP framing of the OAuth front door: CORS preflight and JSON errors on unknown paths."""

from __future__ import annotations

import pytest

PREFLIGHT = {
    "Origin": "https://shop.example",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


@pytest.mark.parametrize("path", ["/oauth/token", "/v1/token", "/oauth/revoke"])
def test_cors_preflight_is_answered(client, path):
    """A browser's preflight gets 204 with the CORS allow headers, not Flask's bare OPTIONS."""
    response = client.options(path, headers=PREFLIGHT)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    assert "X-OTP" in response.headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/oauth/nothing", 404),
        ("GET", "/oauth/authorize-typo", 404),
        ("GET", "/.well-known/nothing", 404),
        ("POST", "/oauth/jwks", 405),
        ("DELETE", "/.well-known/openid-configuration", 405),
    ],
)
def test_unknown_oauth_paths_answer_json_not_html(client, method, path, status):
    """Unknown OAuth paths and wrong methods answer RFC 6749-style JSON, never an HTML page."""
    response = client.open(path, method=method)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.json["error"] == "invalid_request"
    assert "<" not in response.get_data(as_text=True)
    if status == 405:
        assert "GET" in response.headers["Allow"]
