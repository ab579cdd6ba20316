"""Helpers for the verification and password API tests: users with tokens of any role,
guest and client tokens, JSON:API requests, and the mail/SMS that came out of them.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

from factories import World, make_user
from flask import Flask
from flask.testing import FlaskClient
from oauth_helpers import basic, bearer, login

from authserver.platform import background
from authserver.platform.events import signal
from authserver.platform.extensions import db
from authserver.platform.models import ROLES, User

MEDIA = "application/vnd.api+json"
OTHER_ROLES = tuple(r for r in ROLES if r not in ("owner", "administrator"))


@dataclass(frozen=True)
class Person:
    """A user made for a test, and a password-grant token pair of theirs."""

    id: str
    username: str
    email: str | None
    access: str
    refresh: str


def person(
    app: Flask,
    client: FlaskClient,
    world: World,
    role: str = "customer",
    *,
    username: str | None = None,
    account_id: str | None = None,
    **attrs: Any,
) -> Person:
    """A user of the live (or given) account with `role` and an email, logged in."""
    account_id = account_id or world.live_id
    username = username or f"{role}-{account_id[:8]}"
    email = attrs.pop("email", f"{username}@example.com")
    user_id = make_user(app, account_id, username, role=role, email=email, **attrs)
    public = world.test_public_id if account_id == world.test_id else world.public_id
    body = login(client, world, username=username, aid=account_id, client_id=public)
    return Person(user_id, username, email, body["access_token"], body["refresh_token"])


def role_token(
    app: Flask, client: FlaskClient, world: World, role: str, account_id: str | None = None
) -> str:
    """The access token of a new user with `role` and no email, of the live (or given) account."""
    return person(app, client, world, role, account_id=account_id, email=None).access


def guest_token(client: FlaskClient, publishable: str) -> str:
    """An access token made from an account's publishable token (role guest)."""
    response = client.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": publishable}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.get_json()["access_token"])


def client_token(client: FlaskClient, world: World) -> str:
    """A client_credentials token of the live account's confidential client (no user)."""
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(world.conf_id, world.conf_secret),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.get_json()["access_token"])


def call(
    client: FlaskClient,
    method: str,
    path: str,
    body: Any,
    token: str | None = None,
    *,
    ip: str = "198.51.100.7",
    **kwargs: Any,
) -> Any:
    """A JSON:API request with an optional bearer token, from `ip`."""
    headers = {**(bearer(token) if token else {}), **kwargs.pop("headers", {})}
    return client.open(
        path,
        method=method,
        data=body if isinstance(body, str | bytes) else json.dumps(body),
        content_type=kwargs.pop("content_type", MEDIA),
        headers=headers,
        environ_base={"REMOTE_ADDR": ip},
        **kwargs,
    )


def document(type_: str, **attributes: Any) -> dict[str, Any]:
    return {"data": {"type": type_, "attributes": attributes}}


def one_error(response: Any, status: int, code: str, pointer: str | None = None) -> dict[str, Any]:
    """Assert a one-error JSON:API document; return the error."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == MEDIA
    [error] = response.get_json()["errors"]
    assert error["code"] == code, error
    if pointer is not None:
        assert error["source"] == {"pointer": pointer}, error
    return dict(error)


def assert_no_content(response: Any) -> None:
    assert response.status_code == 204, response.get_data(as_text=True)
    assert response.get_data() == b""
    assert "Content-Type" not in response.headers
    assert "Set-Cookie" not in response.headers


def outbox(app: Flask) -> Any:
    """What the memory: senders delivered, after every background job has run."""
    assert background.jobs(app).drain()
    return app.extensions["authserver.outbox"]


def mails(app: Flask, event: str | None = None) -> list[Any]:
    return [m for m in outbox(app).of("email") if event is None or m.event == event]


def link_token(text: str, path: str) -> str:
    """The token of the `path` link in an email body."""
    found = re.search(rf"(\S+{re.escape(path)}\?\S+)", text)
    assert found, text
    return parse_qs(urlsplit(found.group(1)).query)["token"][0]


def user_row(app: Flask, user_id: str) -> User:
    """A fresh, detached copy of the user's row."""
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        db.session.expunge(user)
        return user


def committed_column(app: Flask, user_id: str, column: str) -> Any:
    """A user's column as another connection sees it (i.e. what was committed)."""
    with app.app_context(), db.engine.connect() as conn:
        return conn.execute(db.select(getattr(User, column)).where(User.id == user_id)).scalar_one()


def record_events(app: Flask, name: str, look: Callable[[dict[str, Any]], Any]) -> list[Any]:
    """Connect to `name` for this app; each emit appends `look(payload)`, run in the
    emitting thread (so it can check what was committed at that moment)."""
    seen: list[Any] = []

    def receive(sender: Flask, **payload: Any) -> None:
        seen.append(look(payload))

    signal(name).connect(receive, sender=app)  # weak: it goes when the app goes
    app.extensions.setdefault("test_receivers", []).append(receive)
    return seen


def race(fn: Callable[[], Any], n: int = 2) -> list[Any]:
    """Run `fn` in `n` threads released together; their results."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        results[i] = fn()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def body_of(message: EmailMessage) -> str:
    """The plain-text part, with the wire's CRLF line ends made LF."""
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")
