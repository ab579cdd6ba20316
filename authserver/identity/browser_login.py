"""The browser login of the hosted pages, kept in Flask's signed session cookie.

One login per browser: who (user, account), how (`amr`), when (`auth_time`). It is
written only once every factor passed, into a session cleared first (nothing from before
the login survives it), and read back only while it is still good: within the idle and
absolute timeouts, the user and account still active, and the user's token generation
unchanged, so a password change, a disable or "sign out everywhere" (which raise it, see
tokens.revoke_user_tokens) ends browser logins as well as tokens. The cookie also names a
login id kept in Redis: logout deletes it, so a copy of the cookie taken before logout
is no login afterwards (a signed cookie alone cannot be taken back).

The authorization endpoint and the self-service pages use `current_login`; only the
login flow calls `start_login`, and logout `end_login`. A page whose change ended every
login of the user but its own (a second-factor change) calls `keep_login`.

A login made to serve one authorization request (the login page's `next`) names that
request by its fingerprint (`made_for`): a request that demands a new login (prompt=login,
max_age) accepts only a login made for it, so its `next` can keep those parameters and
the round trip neither loops nor can be skipped by opening the `next` URL directly.
"""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from authserver.platform.extensions import db, store
from authserver.platform.models import Account, AccountStatus, User, UserStatus
from authserver.platform.security import random_token

KEY = "login"
IDLE_TIMEOUT = 30 * 60  # NIST 800-63B rev 3 AAL2: reauthenticate after 30 minutes idle
ABSOLUTE_TIMEOUT = 12 * 3600  # ... and after 12 hours in any case
SEEN_RESOLUTION = 60  # the idle clock is moved at most once a minute (fewer new cookies)


@dataclass(frozen=True)
class BrowserLogin:
    user_id: str
    account_id: str | None  # the account the person logged into; None: a global login
    amr: tuple[str, ...]  # RFC 8176 methods: pwd, otp, sms, rc, mfa
    auth_time: int  # when the factors were checked (seconds since the epoch)
    made_for: str | None = None  # fingerprint of the request this login was made for


def fingerprint(target: str) -> str:
    """A digest naming a URL's path and query, whatever their order and encoding: the
    login page's `next` and the request that later arrives there have the same one."""
    parts = urlsplit(target)
    pairs = sorted(parse_qsl(parts.query))  # blank values dropped, as the redirect drops them
    return hashlib.sha256(f"{parts.path}?{urlencode(pairs)}".encode()).hexdigest()[:32]


def start_login(
    session: MutableMapping[str, Any],
    user: User,
    account_id: str | None,
    amr: Sequence[str],
    now: int,
    made_for: str | None = None,
) -> BrowserLogin:
    """Record a finished login (every factor passed) in a freshly cleared session;
    `made_for` is the fingerprint of the request the login page was to serve."""
    session.clear()
    sid = random_token(16)
    store().put(_sid_key(sid), user.id, ABSOLUTE_TIMEOUT)
    session[KEY] = {
        "sid": sid,
        "uid": user.id,
        "aid": account_id,
        "amr": list(amr),
        "at": now,
        "gen": user.token_generation,
        "seen": now,
        "for": made_for,
    }
    return BrowserLogin(user.id, account_id, tuple(amr), now, made_for)


def current_login(session: MutableMapping[str, Any], now: int) -> BrowserLogin | None:
    """The login in this session if it is still good; a stale one is cleared."""
    data = session.get(KEY)
    if data is None:
        return None
    login = _parse(data)
    if login is None or not _still_good(login, data, now):
        end_login(session)
        return None
    if now - int(data["seen"]) >= SEEN_RESOLUTION:
        session[KEY] = {**data, "seen": now}
    return login


def spend_made_for(session: MutableMapping[str, Any]) -> None:
    """The request this login was made for is answered: it serves no other (one use)."""
    data = session.get(KEY)
    if isinstance(data, dict) and data.get("for") is not None:
        session[KEY] = {**data, "for": None}


def keep_login(session: MutableMapping[str, Any], user: User) -> None:
    """Carry this browser's login over the user's new token generation: it made the change
    that ended every other login, so it alone goes on (same login id, times and factors)."""
    data = session.get(KEY)
    if isinstance(data, dict) and data.get("uid") == user.id:
        session[KEY] = {**data, "gen": user.token_generation}


def end_login(session: MutableMapping[str, Any]) -> None:
    """Forget the login and everything else in the session (logout); the login id goes
    too, so the same cookie replayed later is no login."""
    data = session.get(KEY)
    if isinstance(data, dict) and isinstance(data.get("sid"), str):
        store().delete(_sid_key(data["sid"]))
    session.clear()


def account_of(session: MutableMapping[str, Any]) -> str | None:
    """The account the session's login was for, even a login no longer good (timed out,
    ended by a password change): where its sign-in page is. None: none, or a global login."""
    data = session.get(KEY)
    aid = data.get("aid") if isinstance(data, dict) else None
    return aid if isinstance(aid, str) else None


def _sid_key(sid: str) -> str:
    return f"browser-login:{sid}"


def _parse(data: object) -> BrowserLogin | None:
    if not isinstance(data, dict):
        return None
    uid, aid, amr, at = data.get("uid"), data.get("aid"), data.get("amr"), data.get("at")
    if not isinstance(uid, str) or not (aid is None or isinstance(aid, str)):
        return None
    if not isinstance(amr, list) or not all(isinstance(m, str) for m in amr):
        return None
    if not isinstance(at, int) or not isinstance(data.get("seen"), int):
        return None
    if not isinstance(data.get("gen"), int) or not isinstance(data.get("sid"), str):
        return None
    made_for = data.get("for")
    return BrowserLogin(uid, aid, tuple(amr), at, made_for if isinstance(made_for, str) else None)


def _still_good(login: BrowserLogin, data: dict[str, Any], now: int) -> bool:
    if now - login.auth_time > ABSOLUTE_TIMEOUT or now - int(data["seen"]) > IDLE_TIMEOUT:
        return False
    if store().get(_sid_key(data["sid"])) != login.user_id:  # logged out (or expired)
        return False
    user = db.session.get(User, login.user_id)
    if user is None or user.status != UserStatus.ACTIVE or user.token_generation != data["gen"]:
        return False
    if login.account_id is not None:
        account = db.session.get(Account, login.account_id)
        if account is None or account.status != AccountStatus.ACTIVE:
            return False
    return True
