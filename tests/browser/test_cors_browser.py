"""CORS for /v1 in a real Chromium: a page served from another loopback origin reads
`/v1/user` with a bearer token when the account lists its origin, and cannot when it
does not (the browser itself withholds the answer)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from factories import PASSWORD, World
from faults import free_port
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from authserver.identity import accounts
from authserver.platform.extensions import db
from authserver.platform.models import Account

# Reads /v1/user the way a browser app built on seed 003's SDK would.
READ_USER = """async ([api, token]) => {
  try {
    const r = await fetch(api + "/v1/user", {
      headers: {Authorization: "Bearer " + token, Accept: "application/vnd.api+json"},
    });
    const body = await r.json();
    return {status: r.status, username: body.data.attributes.username,
            contentType: r.headers.get("Content-Type")};
  } catch (e) {
    return {error: String(e)};
  }
}"""


def _serve_page(port: int) -> Iterator[str]:
    """A static page at http://localhost:<port>/: another origin than the API's."""

    @Request.application
    def app(request: Request) -> Response:
        return Response("<!doctype html><title>shop</title><p>shop", mimetype="text/html")

    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def shop() -> Iterator[str]:
    yield from _serve_page(free_port())


@pytest.fixture
def stranger() -> Iterator[str]:
    yield from _serve_page(free_port())


def _token(page: Any, base: str, world: World) -> str:
    """alice's access token from the live server's token endpoint (its issuer)."""
    form = {
        "grant_type": "password",
        "username": "alice",
        "password": PASSWORD,
        "client_id": world.public_id,
        "scope": f"aid:{world.live_id}",
    }
    answer = page.request.post(f"{base}/oauth/token", form=form)
    assert answer.status == 200, answer.text()
    return str(answer.json()["access_token"])


def test_a_listed_origin_reads_v1_user_and_an_unlisted_one_cannot(
    app, world, live_server, shop, stranger, page
):
    """The account lists the shop's origin: its page reads /v1/user with alice's token.
    A page of an origin nobody lists sends the same request and gets nothing to read."""
    with app.app_context():
        accounts.update_account(db.session.get(Account, world.live_id), {"allowed_origins": [shop]})
    token = _token(page, live_server, world)

    page.goto(f"{shop}/")
    read = page.evaluate(READ_USER, [live_server, token])
    assert read == {
        "status": 200,
        "username": "alice",
        "contentType": "application/vnd.api+json",
    }

    page.goto(f"{stranger}/")
    refused = page.evaluate(READ_USER, [live_server, token])
    assert "error" in refused and "Failed to fetch" in refused["error"]
