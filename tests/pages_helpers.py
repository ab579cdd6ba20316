"""Helpers for the hosted-page tests: the CSRF token of a page, form posts the way a browser
sends them, recovery codes, emailed codes and login records.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from authserver.identity import twofactor
from authserver.platform.extensions import db
from authserver.platform.models import LoginRecord, User

CSRF_RE = re.compile(r'name="(?:[\w-]*-)?csrf_token" type="hidden" value="([^"]+)"')


def csrf(response: Any) -> str:
    """The CSRF token of the first form on a page."""
    match = CSRF_RE.search(response.get_data(as_text=True))
    assert match, response.get_data(as_text=True)[:500]
    return match.group(1)


def submit(
    client: FlaskClient, path: str, data: dict[str, str], *, token_from: str | None = None
) -> Any:
    """GET the form page (`token_from`, else `path`, following redirects such as an emailed
    link's move of its token into the session), then POST `data` with its CSRF token."""
    page = client.get(token_from or path, follow_redirects=True)
    return client.post(path, data={"csrf_token": csrf(page), **data})


def recovery_codes(app: Flask, user_id: str) -> list[str]:
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        return twofactor.regenerate_recovery_codes(user)


def emailed_code(app: Flask) -> str:
    """The 6-digit code in the newest email of the app's memory outbox."""
    mails = app.extensions["authserver.outbox"].of("email")
    assert mails, "no email was sent"
    match = re.search(r"\b(\d{6})\b", mails[-1].text)
    assert match, mails[-1].text
    return match.group(1)


def login_records(app: Flask, user_id: str) -> list[tuple[str, bool]]:
    with app.app_context():
        rows = db.session.scalars(
            db.select(LoginRecord).where(LoginRecord.user_id == user_id)
        ).all()
        return [(r.method, r.success) for r in rows]


def signed_in(client: FlaskClient) -> bool:
    """Whether /account shows a signed-in page (not a redirect to the login page)."""
    return client.get("/account").status_code == 200
