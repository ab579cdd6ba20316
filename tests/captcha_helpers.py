"""A fake siteverify service (a real local HTTP server) and ways to pass the hosted pages'
proof-of-work check, for the CAPTCHA tests."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

import altcha
import pytest
from http_helpers import serving

GOOD = "good-captcha-token"  # the one token the fake verifier accepts
SECRET = "captcha-test-secret"


class Verifier:
    """What the fake verifier received and how it answers: `mode` "ok" (siteverify JSON),
    "garbage" (200 with no JSON), "error" (HTTP 500)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, list[str]]] = []
        self.mode = "ok"
        self.url = ""


@pytest.fixture
def verifier() -> Iterator[Verifier]:
    """A siteverify-compatible HTTP server on 127.0.0.1: `success` only for GOOD sent with
    SECRET."""
    sink = Verifier()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            form = parse_qs(raw.decode())
            sink.requests.append(form)
            if sink.mode == "error":
                body, status = b"oops", 500
            elif sink.mode == "garbage":
                body, status = b"<html>not json</html>", 200
            else:
                ok = form.get("secret") == [SECRET] and form.get("response") == [GOOD]
                answer = {"success": ok} | ({} if ok else {"error-codes": ["invalid-input"]})
                body, status = json.dumps(answer).encode(), 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as base:
        sink.url = f"{base}/siteverify"
        yield sink


def solved(client: Any) -> str:
    """Fetch a challenge from /captcha/challenge and solve it as static/captcha.js does."""
    response = client.get("/captcha/challenge")
    assert response.status_code == 200, response.get_data(as_text=True)
    challenge = response.get_json()
    solution = altcha.solve_challenge_v1(
        challenge["challenge"], challenge["salt"], challenge["algorithm"], challenge["maxNumber"]
    )
    assert solution is not None
    payload = {
        "algorithm": challenge["algorithm"],
        "challenge": challenge["challenge"],
        "number": solution.number,
        "salt": challenge["salt"],
        "signature": challenge["signature"],
    }
    return base64.b64encode(json.dumps(payload).encode()).decode()
