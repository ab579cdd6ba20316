"""The end_session_endpoint (OpenID Connect RP-Initiated Logout 1.0): GET or POST
/oauth/logout from the app, POST /oauth/logout/confirm from our confirmation page.

Parsing and rendering only; `end_session.plan` decides. The app's request may come from
any site (a form POST too), so /oauth/logout carries no CSRF token and ends a login only
when the plan says the request proves it is the signed-in person's app; otherwise it
shows a confirmation page whose POST goes to a separate path that Flask-WTF checks for
the session's CSRF token. Errors are HTML pages and never redirect.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, g, request, session
from werkzeug.datastructures import MultiDict

from authserver.identity import browser_login
from authserver.identity.end_session import LogoutRefused, Plan, plan
from authserver.platform import i18n
from authserver.platform.errors import ServiceUnavailable
from authserver.platform.extensions import db
from authserver.platform.i18n import gettext as _
from authserver.platform.models import Account, User

from .authorize import error_page, never_cached, page

bp = Blueprint("logout", __name__)

PATH = "/oauth/logout"
CONFIRM_PATH = "/oauth/logout/confirm"
LIMITS = {
    "id_token_hint": 8192,
    "client_id": 64,
    "post_logout_redirect_uri": 2048,
    "state": 2048,
    "logout_hint": 255,
    "ui_locales": 255,
}
FORM = "application/x-www-form-urlencoded"


class BadRequest(Exception):
    """A malformed logout request (shown on the page)."""


def _params() -> dict[str, str]:
    """The request's parameters: the form body of an app's POST, else the query string.
    Empty values count as absent; repeats, NULs and oversized values are refused."""
    source: MultiDict[str, str] = request.args
    if request.method == "POST" and request.path == PATH:
        if request.mimetype != FORM and request.get_data(cache=True):
            raise BadRequest(_("The request could not be understood."))
        source = request.form
    params: dict[str, str] = {}
    for name, limit in LIMITS.items():
        values = source.getlist(name)
        if len(values) > 1 or any(len(v) > limit or "\x00" in v for v in values):
            raise BadRequest(_("The request could not be understood."))
        if values and values[0]:
            params[name] = values[0]
    return params


def _signed_out(target: str | None, account_id: str | None) -> Response:
    if target is not None:
        return Response(status=303, headers={"Location": target})
    # The sign-in page of the account the ended login was for (a bare /login is global).
    login_url = "/login" + (f"?{urlencode({'aid': account_id})}" if account_id else "")
    return page(
        "pages/message.html",
        200,
        title=_("Signed out"),
        message=_("You are signed out."),
        login_url=login_url,
    )


def _plan(params: dict[str, str], login: browser_login.BrowserLogin | None) -> Plan:
    cache = current_app.extensions["authserver.clients"]
    return plan(
        client_id=params.get("client_id"),
        id_token_hint=params.get("id_token_hint"),
        post_logout_redirect_uri=params.get("post_logout_redirect_uri"),
        state=params.get("state"),
        login=login,
        find_client=cache.get,
    )


def _handle(confirmed: bool) -> Response:
    try:
        params = _params()
        g.locale = i18n.best_request_locale(params.get("ui_locales"), None)
        account_id = browser_login.account_of(session)  # read before a stale one is cleared
        login = browser_login.current_login(session, int(time.time()))
        decided = _plan(params, login)
    except BadRequest as exc:
        return error_page(str(exc))
    except LogoutRefused as exc:
        return error_page(exc.description)
    except ServiceUnavailable:
        return error_page(_("The service is temporarily unavailable."), 503)
    if login is not None and decided.confirm and not confirmed:
        user = db.session.get(User, login.user_id)
        account = db.session.get(Account, login.account_id) if login.account_id else None
        return page(
            "pages/logout_confirm.html",
            200,
            page_locale=g.locale,
            account_name=account.name if account is not None else None,
            client_name=decided.client_name,
            username=user.username if user is not None else "",
            action=f"{CONFIRM_PATH}?{urlencode(params)}",
        )
    if login is not None:
        browser_login.end_login(session)
    return _signed_out(decided.target, account_id)


@bp.route(PATH, methods=["GET", "POST"])
def end_session() -> Response:
    """RP-Initiated Logout 2: the app's logout request (GET, or a form POST)."""
    return _handle(confirmed=False)


@bp.post(CONFIRM_PATH)
def confirm() -> Response:
    """The confirmation page's POST (CSRF checked by Flask-WTF before this runs)."""
    return _handle(confirmed=True)


bp.after_request(never_cached)  # the same no-store as the authorization pages


def owns_path(path: str) -> bool:
    """Errors on these paths are pages (authorize.http_error renders them)."""
    return path in (PATH, CONFIRM_PATH)
