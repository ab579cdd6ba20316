"""The OpenID Connect authorization endpoint: GET or POST /oauth/authorize (OIDC Core
3.1.2.1: the parameters in the query string, or in a form body), and the consent
decision at POST /oauth/authorize/consent.

Parsing only: the request is checked parameter by parameter, then `authorization.decide`
says whether to send the browser to the login page, show the consent page or issue a
code. Until the client and its redirect URI are known, an error is an HTML page (400)
and never a redirect (RFC 6749 4.1.2.1); after that, errors go to the redirect URI with
`state` and `iss` (RFC 9207). An app's POST comes from its own site, so the request path
is exempt from CSRF and never reads a decision: approving is only possible at the
consent path, whose POST carries the request in its query string (checked again in
full) and the session's CSRF token, which Flask-WTF checks before the view runs.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlencode

from authlib.common.urls import add_params_to_uri
from flask import Blueprint, Response, current_app, g, render_template, request, session
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from authserver.identity import authorization, browser_login, consents
from authserver.identity.authorization import AuthorizationError, Member, Step
from authserver.identity.browser_login import current_login
from authserver.identity.clients import SCOPES
from authserver.identity.consents import scope_words
from authserver.platform import i18n
from authserver.platform.errors import ServiceUnavailable
from authserver.platform.i18n import gettext as _
from authserver.platform.web import MalformedInput, no_store

from .clients import ClientInfo

bp = Blueprint("authorize", __name__)

PATH = "/oauth/authorize"
CONSENT_PATH = "/oauth/authorize/consent"
FORM = "application/x-www-form-urlencoded"
SINGLE = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
    "id_token_hint",
    "ui_locales",
    "response_mode",
)
PROMPTS = ("none", "login", "consent", "select_account")
CHALLENGE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
LIMITS = {"state": 2048, "nonce": 512, "login_hint": 255, "ui_locales": 255, "id_token_hint": 8192}
# RFC 6749 error_description: printable ASCII without '"' and '\'.
UNSUPPORTED = {
    "request": "request_not_supported",
    "request_uri": "request_uri_not_supported",
    "registration": "registration_not_supported",
}


class PageError(Exception):
    """An error shown on our own page: the client or its redirect URI is not known."""

    def __init__(self, description: str):
        super().__init__(description)
        self.description = description


def _params() -> MultiDict[str, str]:
    """The request's parameters: the form body of a POST to PATH (OIDC Core 3.1.2.1),
    else the query string (a GET, or the consent POST carrying the original request)."""
    if request.method == "POST" and request.path == PATH:
        return request.form
    return request.args


def _arg(name: str) -> str | None:
    """A parameter of the request; an empty value counts as absent (RFC 6749 3.1)."""
    value = _params().get(name)
    return value or None


def _client_and_redirect() -> tuple[ClientInfo, str, str | None]:
    """(client, redirect URI to use, redirect_uri as sent). Raises PageError."""
    if (
        request.method == "POST"
        and request.path == PATH
        and (request.mimetype != FORM or request.args)
    ):
        raise PageError(_("Send the request's parameters in a form body."))
    for key, values in _params().lists():
        if "\x00" in key or any("\x00" in v for v in values):
            raise PageError(_("The request holds a NUL character."))
    for name in ("client_id", "redirect_uri"):
        if len(_params().getlist(name)) > 1:
            raise PageError(_("A parameter was repeated."))
    client_id = _arg("client_id")
    if client_id is None:
        raise PageError(_("The request has no client_id."))
    client = current_app.extensions["authserver.clients"].get(client_id)
    if client is None:
        raise PageError(_("The application is not known."))
    sent = _arg("redirect_uri")
    if sent is not None:
        if not client.check_redirect_uri(sent):
            raise PageError(_("The redirect_uri is not registered for this application."))
        return client, sent, sent
    default = client.get_default_redirect_uri()
    if default is None:
        raise PageError(_("The request has no redirect_uri."))
    return client, default, None


def _hinted_subject(hint: str | None, client: ClientInfo) -> str | None:
    """The `sub` of an ID token we issued to this client (expired ones are fine as hints)."""
    if hint is None:
        return None
    claims = authorization.read_id_token_hint(hint)
    if client.client_id not in authorization.audiences(claims):
        raise AuthorizationError("invalid_request", "The id_token_hint is not for this client.")
    return str(claims["sub"])


def _checked_request(client: ClientInfo) -> authorization.Request:
    """The rest of the request, once errors may go to the client. Raises AuthorizationError."""
    if not client.check_grant_type("authorization_code"):
        raise AuthorizationError(
            "unauthorized_client", "The client may not use the authorization code flow."
        )
    if any(len(_params().getlist(name)) > 1 for name in SINGLE):
        raise AuthorizationError("invalid_request", "A parameter was repeated.")
    for name, error in UNSUPPORTED.items():
        if _arg(name) is not None:
            raise AuthorizationError(error, f"The {name} parameter is not supported.")
    for name, limit in LIMITS.items():
        if len(_params().get(name, "")) > limit:
            raise AuthorizationError("invalid_request", f"The {name} parameter is too long.")
    response_type = _arg("response_type")
    if response_type is None:
        raise AuthorizationError("invalid_request", "The request has no response_type.")
    if response_type != "code":
        raise AuthorizationError("unsupported_response_type", "Only response_type=code is offered.")
    if _arg("response_mode") not in (None, "query"):
        raise AuthorizationError("invalid_request", "Only response_mode=query is offered.")
    scope = _scope(client)
    challenge, method = _arg("code_challenge"), _arg("code_challenge_method")
    if challenge is None:
        raise AuthorizationError("invalid_request", "PKCE is required: send a code_challenge.")
    if method != "S256":
        raise AuthorizationError("invalid_request", "The code_challenge_method must be S256.")
    if not CHALLENGE.match(challenge):
        raise AuthorizationError("invalid_request", "The code_challenge is malformed.")
    prompt = frozenset((_arg("prompt") or "").split())
    if not prompt <= set(PROMPTS):
        raise AuthorizationError("invalid_request", "Unknown prompt value.")
    if "none" in prompt and len(prompt) > 1:
        raise AuthorizationError("invalid_request", "prompt=none cannot be combined.")
    max_age = _arg("max_age")
    if max_age is not None and not (max_age.isascii() and max_age.isdigit() and len(max_age) < 10):
        raise AuthorizationError("invalid_request", "The max_age must be whole seconds.")
    nonce = _arg("nonce")
    if nonce is not None and authorization.nonce_seen(client.client_id, nonce):
        raise AuthorizationError("invalid_request", "The nonce was already used.")
    if "offline_access" in scope.split() and "consent" not in prompt:
        # OIDC Core 11: without prompt=consent, offline_access is ignored.
        scope = " ".join(s for s in scope.split() if s != "offline_access")
    return authorization.Request(
        scope=scope,
        prompt=prompt,
        max_age=int(max_age) if max_age is not None else None,
        hinted_subject=_hinted_subject(_arg("id_token_hint"), client),
        fingerprint=browser_login.fingerprint(_request_url()),
    )


def _scope(client: ClientInfo) -> str:
    requested = (_arg("scope") or "").split()
    if len(requested) > len(SCOPES) or any(
        s not in SCOPES or s not in client.scopes for s in requested
    ):
        raise AuthorizationError("invalid_scope", "The client may not ask for this scope.")
    return " ".join(dict.fromkeys(requested))


def _to_client(redirect_uri: str, params: dict[str, str]) -> Response:
    state = _arg("state")
    if state is not None and len(_params().getlist("state")) == 1:
        params["state"] = state
    params["iss"] = current_app.config["ISSUER"]
    return _redirect(add_params_to_uri(redirect_uri, list(params.items())))


def _redirect(location: str) -> Response:
    return Response(status=302, headers={"Location": location})


def page(template: str, status: int, **context: Any) -> Response:
    return no_store(Response(render_template(template, **context), status=status))


def error_page(description: str, status: int = 400) -> Response:
    return page("pages/authorize_error.html", status, description=description)


def _request_url() -> str:
    """The request as a GET URL of PATH (a POSTed or consent request included)."""
    pairs = [(k, v) for k, v in _params().items(multi=True) if v]
    return f"{PATH}?{urlencode(pairs)}"


def _login_redirect() -> Response:
    """To the login page, coming back here with the whole request: prompt=login and
    max_age stay, and only a login made for this request meets them (no loop, no skip)."""
    return _redirect("/login?" + urlencode({"next": _request_url()}))


def _consent_page(client: ClientInfo, member: Member, scope: str) -> Response:
    words = scope_words()
    g.locale = i18n.best_request_locale(_arg("ui_locales"), member.account.default_locale)
    return page(
        "pages/consent.html",
        200,
        page_locale=g.locale,
        account_name=member.account.name,
        client_name=client.name,
        username=member.user.username,
        scopes=[words[s] for s in scope.split() if s in words],
        action=f"{CONSENT_PATH}?{urlencode(list(_params().items(multi=True)))}",
    )


def _policy_client(client: ClientInfo) -> authorization.Client:
    return authorization.Client(
        pk=client.pk,
        client_id=client.client_id,
        account_id=client.account_id,
        skip_consent=client.skip_consent,
    )


@bp.route(PATH, methods=["GET", "POST"])
def authorize() -> Response:
    """OIDC Core 3.1.2: the authorization request (GET, or POST with a form body)."""
    return _handle(None)


@bp.post(CONSENT_PATH)
def consent() -> Response:
    """The consent page's decision (CSRF checked by Flask-WTF before this runs)."""
    decision = request.form.get("decision")
    if decision not in ("allow", "deny"):
        return error_page(_("The consent form was not filled in."))
    return _handle(decision)


def _handle(decision: str | None) -> Response:
    """Check the request, then log in, ask for consent, or answer the client."""
    g.locale = i18n.best_request_locale(_arg("ui_locales"), None)
    try:
        client, redirect_uri, sent_uri = _client_and_redirect()
    except PageError as exc:
        return error_page(exc.description)
    except ServiceUnavailable:
        return error_page(_("The service is temporarily unavailable."), 503)
    try:
        checked = _checked_request(client)
        if decision == "deny":
            raise AuthorizationError("access_denied", "The user did not allow access.")
        policy_client = _policy_client(client)
        step, member = authorization.decide(
            policy_client,
            checked,
            current_login(session, int(time.time())),
            int(time.time()),
            consent_given=decision == "allow",
        )
        if step is Step.LOGIN:
            return _login_redirect()
        assert member is not None
        if step is Step.CONSENT:
            return _consent_page(client, member, checked.scope)
        if decision == "allow":
            consents.remember(member.user.id, client.pk, checked.scope)
        code = authorization.issue_code(
            policy_client,
            member,
            redirect_uri=sent_uri,
            scope=checked.scope,
            nonce=_arg("nonce"),
            code_challenge=str(_arg("code_challenge")),
        )
        if member.login.made_for == checked.fingerprint:
            browser_login.spend_made_for(session)  # a new login answers one request
    except AuthorizationError as exc:
        return _to_client(redirect_uri, {"error": exc.code, "error_description": exc.description})
    except ServiceUnavailable:
        return _to_client(
            redirect_uri,
            {"error": "temporarily_unavailable", "error_description": "Try again later."},
        )
    return _to_client(redirect_uri, {"code": code})


@bp.after_request
def never_cached(response: Response) -> Response:
    return no_store(response, pragma=True)


def owns_path(path: str) -> bool:
    return path in (PATH, CONSENT_PATH)


def http_error(error: HTTPException) -> Response:
    """405, a failed CSRF check (400)... on the authorization endpoint: an HTML page."""
    status = error.code or 500
    if isinstance(error, MalformedInput):
        description = _("The request holds a form part without a name or a NUL character.")
    elif status == 400:
        description = _("The form has expired or was not sent from this page. Please try again.")
    elif status == 405:
        description = _("Method not allowed.")
    elif status == 503:
        description = _("The service is temporarily unavailable.")
    else:
        description = _("The request could not be handled.")
    response = error_page(description, status)
    for name, value in error.get_headers():
        if name.lower() in ("allow", "retry-after"):
            response.headers[name] = value
    return response
