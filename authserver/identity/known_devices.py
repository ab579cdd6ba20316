"""The "New sign-in to your account" alarm: the devices each user signed in from, and the
email for a successful login from one they have not used before.

Which device a login comes from (`device_id`):
- a device token (identity.devices) this user earned before names it: the browser's
  device cookie, or the `device_token` a native app sends back to the password grant;
- otherwise a browser is a new device (a new random id, handed over in its new cookie);
- otherwise, at the token endpoint, the device is the client, the user agent and the
  network (IPv4 /24, IPv6 /64) of the login, hashed with the user's id. The device token
  the grant answers with names that same id, so an app that sends it back stays the same
  device when it changes networks.

Rules (`note`): the first device a user ever signs in from is recorded silently (the
first login after sign-up, or after this feature was turned on); a new device after that
is announced once. Refreshes never pass here. A device the user reported with the
mail's "this wasn't me" link is announced again at its next login, at most once a day.
Only a verified address is mailed: a login's IP and device are not for a stranger who
typed the address at sign-up.

"This wasn't me" (`report`): the mailed token is random, stored as a digest on the
device's row and cleared when used (a conditional UPDATE: it works once, durably); using
it ends every login of the user (revoke_user_tokens) and mails a password reset link.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import exc, select, update

from authserver.identity import devices, verification
from authserver.identity.tokens import revoke_user_tokens
from authserver.platform.database import commit
from authserver.platform.errors import ValidationFailed
from authserver.platform.events import emit
from authserver.platform.extensions import db
from authserver.platform.models import Account, KnownDevice, User, UserStatus, utcnow
from authserver.platform.notifications import NEW_DEVICE_EVENT
from authserver.platform.security import digest, random_token

ANNOUNCE_AGAIN_AFTER = timedelta(days=1)  # a reported device: one alarm a day at most
ALARM_LIFETIME = timedelta(days=7)  # the "this wasn't me" link works this long
SEEN_RESOLUTION = timedelta(hours=1)  # last_seen_at is moved at most once an hour
TOKEN_MIN, TOKEN_MAX = 20, 128  # ours are 43 characters


@dataclass(frozen=True)
class Sighting:
    """A successful login's device, and what to mail about it after the commit."""

    user: User
    account: Account | None
    alarm: str | None  # the "this wasn't me" token to mail; None: nothing to announce
    ip: str | None
    user_agent: str | None


def device_id(
    user: User,
    device_token: str | None,
    *,
    browser: bool,
    client_id: str | None,
    ip: str | None,
    user_agent: str | None,
) -> str:
    """The id of the device a successful login of `user` comes from (see the module)."""
    device = devices.read(device_token)
    if device is not None and device.user_id == user.id:
        return device.id
    if browser:
        return random_token(16)
    seen = "\n".join([user.id, client_id or "-", user_agent or "-", network(ip)])
    return hashlib.sha256(seen.encode()).hexdigest()[:32]


def network(ip: str | None) -> str:
    """The network an address is in: its /24 (IPv4) or /64 (IPv6); the text itself when
    it is no address (a test client's, a proxy's odd value)."""
    try:
        address = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return ip or "-"
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def note(
    user: User,
    account: Account | None,
    device: str,
    *,
    ip: str | None,
    user_agent: str | None,
) -> Sighting:
    """Record that `user` signed in from `device` (after the login committed) and say
    whether to announce it. Commits its own small write."""
    quiet = Sighting(user, account, None, ip, user_agent)
    if not current_app.config["NEW_DEVICE_EMAIL"]:
        return quiet
    now = utcnow()
    ip = (ip or "").replace("\x00", "")[:45] or None
    device_hash = digest(device)
    row = db.session.scalar(
        select(KnownDevice).where(
            KnownDevice.user_id == user.id, KnownDevice.device_hash == device_hash
        )
    )
    if row is None:
        first = db.session.scalar(select(KnownDevice.id).where(KnownDevice.user_id == user.id))
        row = KnownDevice(user_id=user.id, device_hash=device_hash, last_ip=ip)
        db.session.add(row)
        if first is None or not _mailable(user):
            return _commit_new(row, quiet)
    else:
        due = row.reported_at is not None and (
            row.notified_at is None or now - row.notified_at >= ANNOUNCE_AGAIN_AFTER
        )
        if not due or not _mailable(user):
            if now - row.last_seen_at >= SEEN_RESOLUTION or row.last_ip != ip:
                row.last_seen_at, row.last_ip = now, ip
                commit(conflict=False)
            return quiet
        row.last_seen_at, row.last_ip = now, ip
    alarm = random_token(32)
    row.notified_at = now
    row.alarm_hash = digest(alarm)
    return _commit_new(row, Sighting(user, account, alarm, ip, user_agent))


def _commit_new(row: KnownDevice, sighting: Sighting) -> Sighting:
    try:
        commit(conflict=False)
    except exc.IntegrityError:
        # The same device's concurrent login recorded it first; that one announces it.
        return Sighting(sighting.user, sighting.account, None, sighting.ip, sighting.user_agent)
    return sighting


def _mailable(user: User) -> bool:
    return bool(user.email) and user.email_verified is True


def announce(sighting: Sighting) -> None:
    """Mail the new sign-in (after the commit), if `note` said so."""
    if sighting.alarm is None:
        return
    browser, system = describe_user_agent(sighting.user_agent)
    emit(
        NEW_DEVICE_EVENT,
        user=sighting.user,
        account=sighting.account,
        token=sighting.alarm,
        when=utcnow().strftime("%Y-%m-%d %H:%M UTC"),
        ip=sighting.ip,
        browser=browser,
        system=system,
        user_agent=(sighting.user_agent or "")[:120] or None,
    )


# Checked in order: Edge and Opera also say "Chrome", Chrome also says "Safari".
_BROWSERS = (
    ("Edge", re.compile(r"\bEdg(e|A|iOS)?/")),
    ("Opera", re.compile(r"\bOPR/|\bOpera\b")),
    ("Firefox", re.compile(r"\bFirefox/|\bFxiOS/")),
    ("Chrome", re.compile(r"\bChrome/|\bCriOS/|\bChromium/")),
    ("Safari", re.compile(r"\bSafari/")),
)
_SYSTEMS = (
    ("iOS", re.compile(r"\biPhone|\biPad|\biOS\b")),
    ("Android", re.compile(r"\bAndroid\b")),
    ("Windows", re.compile(r"\bWindows\b")),
    ("macOS", re.compile(r"\bMac OS X\b|\bMacintosh\b")),
    ("ChromeOS", re.compile(r"\bCrOS\b")),
    ("Linux", re.compile(r"\bLinux\b")),
)


def describe_user_agent(user_agent: str | None) -> tuple[str | None, str | None]:
    """(browser, operating system) named in a User-Agent, each None when not recognised:
    enough for a person to tell their own devices from another's, no more."""
    text = (user_agent or "")[:512]
    browser = next((name for name, pattern in _BROWSERS if pattern.search(text)), None)
    system = next((name for name, pattern in _SYSTEMS if pattern.search(text)), None)
    return browser, system


def _alarmed(token: object) -> KnownDevice | None:
    if not isinstance(token, str) or not TOKEN_MIN <= len(token) <= TOKEN_MAX:
        return None
    row = db.session.scalar(select(KnownDevice).where(KnownDevice.alarm_hash == digest(token)))
    if row is None or row.notified_at is None or utcnow() - row.notified_at > ALARM_LIFETIME:
        return None
    user = db.session.get(User, row.user_id)
    if user is None or user.status != UserStatus.ACTIVE:
        return None
    return row


def report_link_works(token: object) -> bool:
    """Whether a "this wasn't me" token would be taken now (it is not spent)."""
    return _alarmed(token) is not None


def report(token: object) -> User:
    """ "This wasn't me": end every login of the user and mail them a password reset link.
    The token works once. Raises ValidationFailed (invalid_token) otherwise."""
    invalid = ValidationFailed(
        "This link is invalid, expired or already used.", field="token", code="invalid_token"
    )
    row = _alarmed(token)
    if row is None:
        raise invalid
    now = utcnow()
    spent = db.session.execute(
        update(KnownDevice)
        .where(KnownDevice.id == row.id, KnownDevice.alarm_hash == row.alarm_hash)
        .values(alarm_hash=None, reported_at=now)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]  # a concurrent use took it
        db.session.rollback()
        raise invalid
    user = db.session.get(User, row.user_id)
    assert user is not None  # _alarmed found it; the row lock keeps it
    revoke_user_tokens(user)
    commit(conflict=False)
    current_app.logger.warning(
        "new sign-in reported by the user", extra={"fields": {"user_id": user.id}}
    )
    emit("identity.login.reported", user=user, account=user.account)
    verification.send_password_reset(user)
    return user
