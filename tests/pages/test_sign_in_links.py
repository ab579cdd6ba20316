"""Every way back to the sign-in page keeps the account: logout, an ended login, the error
page's link and the forgot-password page (a bare /login signs in global users only)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from factories import PASSWORD, make_user
from pages_helpers import signed_in, submit

from authserver.identity import accounts, browser_login
from authserver.platform.extensions import db
from authserver.platform.models import User

SIGN_IN_LINK = re.compile(r'<a class="link" href="([^"]*)">Go to the sign-in page</a>')


def _sign_in(client, path: str, username: str = "alice") -> None:
    response = submit(client, path, {"username": username, "password": PASSWORD})
    assert response.status_code == 303, response.get_data(as_text=True)[:300]


def _query(location: str) -> dict[str, list[str]]:
    parts = urlsplit(location)
    assert parts.path == "/login", location
    return parse_qs(parts.query)


def test_logout_goes_to_the_sign_in_page_of_the_login_account(web, world):
    """POST /logout of an account user's login: 303 to /login?aid=<that account>, where the
    same user can sign in again."""
    client = web.test_client()
    _sign_in(client, f"/login?aid={world.live_id}")
    response = submit(client, "/logout", {}, token_from="/account")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/login?aid={world.live_id}"
    _sign_in(client, response.headers["Location"])
    assert signed_in(client)


def test_logout_of_a_global_login_goes_to_the_bare_sign_in_page(web, world):
    """A global user's logout: the bare /login (theirs)."""
    make_user(web, None, "gus")
    client = web.test_client()
    _sign_in(client, "/login", "gus")
    response = submit(client, "/logout", {}, token_from="/account")
    assert response.status_code == 303 and response.headers["Location"] == "/login"


def _end_by_idling(web, client, user_id: str) -> None:
    with client.session_transaction() as session:  # as if the browser slept past the limit
        data = session[browser_login.KEY]
        data["seen"] -= browser_login.IDLE_TIMEOUT + 1
        session[browser_login.KEY] = data


def _end_by_password_change(web, client, user_id: str) -> None:
    with web.app_context():
        accounts.set_password(db.session.get(User, user_id), "changed-elsewhere-1")


@pytest.mark.parametrize("end", [_end_by_idling, _end_by_password_change])
def test_ended_login_sends_to_its_account_sign_in_page(web, world, end):
    """A login that ended (idle timeout, password changed elsewhere): /account sends to the
    sign-in page of the login's account, coming back to /account."""
    client = web.test_client()
    _sign_in(client, f"/login?aid={world.live_id}")
    end(web, client, world.alice_id)
    response = client.get("/account")
    assert response.status_code == 303
    assert _query(response.headers["Location"]) == {"aid": [world.live_id], "next": ["/account"]}


def test_nobody_signed_in_goes_to_the_bare_sign_in_page(web):
    """A browser that never signed in has no account to keep: the bare /login."""
    response = web.test_client().get("/account")
    assert response.status_code == 303
    assert _query(response.headers["Location"]) == {"next": ["/account"]}


def _sign_in_link(response) -> str:
    match = SIGN_IN_LINK.search(response.get_data(as_text=True))
    assert match, response.get_data(as_text=True)[:500]
    return match.group(1).replace("&amp;", "&")


def test_error_page_sign_in_link_keeps_the_account(web, world):
    """The error page's "Go to the sign-in page" keeps `aid` from the query or the
    session's login; with neither it is the bare /login."""
    client = web.test_client()
    assert _sign_in_link(client.get("/no-such-page")) == "/login"
    assert (
        _sign_in_link(client.get(f"/no-such-page?aid={world.live_id}"))
        == f"/login?aid={world.live_id}"
    )
    _sign_in(client, f"/login?aid={world.live_id}")
    assert _sign_in_link(client.get("/no-such-page")) == f"/login?aid={world.live_id}"


def test_bare_sign_in_page_offers_no_forgot_password_link(web, world):
    """The global sign-in page has no "Forgot your password?" (a reset is looked up in an
    account: the link could only lead to a dead end); an account's page has one for its
    account, also when the account comes from the app's authorization request."""
    client = web.test_client()
    assert "/forgot-password" not in client.get("/login").get_data(as_text=True)
    page = client.get(f"/login?aid={world.live_id}").get_data(as_text=True)
    assert f'href="/forgot-password?aid={world.live_id}"' in page
    flow = quote(f"/oauth/authorize?client_id={world.public_id}&response_type=code", safe="")
    page = client.get(f"/login?next={flow}").get_data(as_text=True)
    assert f'href="/forgot-password?aid={world.live_id}"' in page


def test_forgot_password_page_links_back_to_the_account_sign_in_page(web, world):
    """The forgot-password page links back to its account's sign-in page and says, like
    its answer, that it takes a username or an email address."""
    page = web.test_client().get(f"/forgot-password?aid={world.live_id}")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert f'<a class="link" href="/login?aid={world.live_id}">Back to sign in</a>' in body
    assert "username or email address" in body
    done = submit(web.test_client(), f"/forgot-password?aid={world.live_id}", {"username": "x"})
    assert "If there is an account with this username or email address" in done.get_data(
        as_text=True
    )
