"""RP-initiated logout's policy (OpenID Connect RP-Initiated Logout 1.0): which client
asks, where the browser may go afterwards, and whether the person must confirm first.

Redirection only ever goes to a `post_logout_redirect_uri` registered, byte for byte, for
the client the request names (by `client_id` or by the audience of its `id_token_hint`),
so the endpoint is never an open redirector; any error is shown on our page instead
(section 4: no redirection after an error). The login ends without a question only when
the request proves it comes from the signed-in person's app: an ID token we issued to
that client for this very login (same `sub` and `auth_time`). Anything less (no hint, a
hint of someone else or of an earlier login) asks for a confirmation POST with a CSRF
token, so a foreign page cannot sign people out (section 6).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from authlib.common.urls import add_params_to_uri

from authserver.identity import authorization
from authserver.identity.authorization import AuthorizationError
from authserver.identity.browser_login import BrowserLogin


class LogoutRefused(Exception):
    """A logout request we will not redirect for; the description goes on the page."""

    def __init__(self, description: str):
        super().__init__(description)
        self.description = description


class LogoutClient(Protocol):
    client_id: str
    name: str
    post_logout_redirect_uris: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """What the endpoint does with a valid request."""

    client_name: str | None
    target: str | None  # the post-logout redirect (with `state`); None: our own page
    confirm: bool  # ask the person before ending their login


def plan(
    *,
    client_id: str | None,
    id_token_hint: str | None,
    post_logout_redirect_uri: str | None,
    state: str | None,
    login: BrowserLogin | None,
    find_client: Callable[[str], LogoutClient | None],
) -> Plan:
    """Check a logout request (RP-Initiated Logout 2-3). Raises LogoutRefused."""
    claims: dict[str, Any] | None = None
    if id_token_hint is not None:
        try:
            claims = authorization.read_id_token_hint(id_token_hint)
        except AuthorizationError:
            raise LogoutRefused("The id_token_hint is not an ID token from this server.") from None
    client: LogoutClient | None = None
    if client_id is not None:
        client = find_client(client_id)
        if client is None:
            raise LogoutRefused("The application is not known.")
        if claims is not None and client_id not in authorization.audiences(claims):
            # Section 2: client_id must be an audience of the hint.
            raise LogoutRefused("The id_token_hint was issued to another application.")
    elif claims is not None:
        hinted = authorization.audiences(claims)
        client = find_client(hinted[0]) if len(hinted) == 1 else None
    target = None
    if post_logout_redirect_uri is not None:
        if client is None:
            raise LogoutRefused("Name the application (client_id) to be sent back to it.")
        if post_logout_redirect_uri not in client.post_logout_redirect_uris:
            raise LogoutRefused("The post_logout_redirect_uri is not registered for this app.")
        params = {"state": state} if state is not None else {}
        target = add_params_to_uri(post_logout_redirect_uri, params)
    proven = (
        claims is not None
        and client is not None
        and login is not None
        and claims.get("sub") == login.user_id
        and claims.get("auth_time") == login.auth_time
    )
    return Plan(
        client_name=client.name if client is not None else None,
        target=target,
        confirm=login is not None and not proven,
    )
