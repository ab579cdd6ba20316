"""Domain events, named `identity.<resource>.<action>.<outcome>`: outbox rows, then signals.

A use case calls `stage(NAME, **payload)` before its commit: the stagers (webhook
deliveries, emails, SMS) add their outbox rows to the same transaction, so a change that
rolls back sends nothing and a committed one loses nothing. After `database.commit()` the
blinker signal goes out (receivers get the app as sender) and the rows are delivered.
`emit(NAME, **payload)` is stage + commit: for an event whose change committed already or
that has none in the database (a login code in Redis). Payloads, by event:

- identity.account.create.success: account (live Account)
- identity.account.update.success: account, user (or None)
- identity.account.delete.success: account
- identity.account_reset.create.success: account (a test account), user (or None)
- identity.user.create.success: user, account (or None for a global user)
- identity.user.update.success / identity.current_user.update.success: user, account
- identity.user.delete.success: user, account
- identity.email_verification_token.create.success: user, account, token
- identity.email_verification.create.success: user, account
- identity.password_reset_token.create.success: user, account, token, locale (or None)
- identity.activation_token.create.success: user, account, token, locale (or None)
- identity.password.update.success: user, account
- identity.phone_verification_code.create.success: phone_number, code, locale, account
- identity.otp.create.success: user, account, code, method ("tfa_email" or "tfa_sms")
- identity.tfa.update.success: user, account (the two-step method, or the phone of an SMS
  user, was changed through PATCH /v1/user or /v1/users/{id})
- identity.tfa.enable.success: user, account, method ("tfa_totp"; a TOTP enrolment was
  confirmed, first or replacing an authenticator; its new recovery codes come with it)
- identity.tfa.disable.success: user, account, method (the method switched off; now simple)
- identity.recovery_codes.create.success: user, account, count (a new set; the old died)
- identity.passkey.create.success / .update.success / .delete.success: user, account,
  passkey (added on the security page; renamed; removed by the user or an administrator)
- identity.support_login.create.success: user, account, agent (the support specialist's
  username); a support specialist logged in as the user (identity.support)
- identity.email_verification_code.create.success: user, account, code (a 6-digit code
  that verifies the user's email, e.g. to switch to email two-step login)
- identity.login.success: user, account (or None), method (the factors, "password+otp"),
  client_id (or None); after the record commits
- identity.login.failure: user (or None), account (or None), reason, method, client_id (or
  None); after the record commits
- identity.login.throttled: method (the factor tried: password, otp, recovery_code),
  client_id (or None); a throttled attempt writes no record, so nothing commits before it
- identity.login.new_device: user, account (or None), token (the "this wasn't me" token),
  when, ip, browser, system, user_agent (each or None); a login from a device the user
  had not used (identity/known_devices.py), after its device row commits
- identity.login.reported: user, account (or None); the user used that link: every login
  ended (a reset link is mailed with its own event)
- identity.webhook_endpoint.disable.success: account, endpoint (failing for days; the
  account's owners are mailed)
- identity.webhook.test.success: account, endpoint (the "send test event" action; only that
  endpoint hears it)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from blinker import NamedSignal, Namespace
from flask import Flask, current_app
from sqlalchemy import event
from sqlalchemy.orm import Session, scoped_session

AFTER_COMMIT = "authserver.after_commit"
STAGERS = "authserver.event_stagers"
# What a stager adds to the transaction for (event name, payload).
Stager = Callable[[str, dict[str, Any]], None]

EVENTS = (
    "identity.account.create.success",
    "identity.account.update.success",
    "identity.account.delete.success",
    "identity.account_reset.create.success",
    "identity.user.create.success",
    "identity.user.update.success",
    "identity.current_user.update.success",
    "identity.user.delete.success",
    "identity.email_verification_token.create.success",
    "identity.email_verification.create.success",
    "identity.password_reset_token.create.success",
    "identity.activation_token.create.success",
    "identity.password.update.success",
    "identity.phone_verification_code.create.success",
    "identity.otp.create.success",
    "identity.tfa.update.success",
    "identity.tfa.enable.success",
    "identity.tfa.disable.success",
    "identity.recovery_codes.create.success",
    "identity.passkey.create.success",
    "identity.passkey.update.success",
    "identity.passkey.delete.success",
    "identity.support_login.create.success",
    "identity.email_verification_code.create.success",
    "identity.login.success",
    "identity.login.failure",
    "identity.login.throttled",
    "identity.login.new_device",
    "identity.login.reported",
    "identity.webhook_endpoint.disable.success",
    "identity.webhook.test.success",
)

_namespace = Namespace()
SIGNALS: dict[str, NamedSignal] = {name: _namespace.signal(name) for name in EVENTS}


def signal(name: str) -> NamedSignal:
    """The signal for a known event name; a typo raises KeyError instead of going nowhere."""
    return SIGNALS[name]


def add_stager(app: Flask, stager: Stager) -> None:
    """Have `stager` add its outbox rows for every event `app` stages."""
    app.extensions.setdefault(STAGERS, []).append(stager)


def stage(name: str, **payload: Any) -> None:
    """Add what the event causes to the open transaction; its signal goes out after the
    commit (`database.commit()`), and not at all if the transaction rolls back."""
    sig = signal(name)
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    for stager in app.extensions.get(STAGERS, ()):
        stager(name, payload)

    def announce() -> None:
        sig.send(app, **payload)

    on_commit(announce)


def emit(name: str, **payload: Any) -> None:
    """Stage the event and commit: for a change committed already, or one not in the
    database. Prefer `stage` before the use case's own commit (one transaction)."""
    stage(name, **payload)
    session = _session()()
    # The change itself committed before (or is this commit): its objects stay loaded for
    # the receivers and the caller, as they were before the outbox rows were written.
    expire, session.expire_on_commit = session.expire_on_commit, False
    try:
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.expire_on_commit = expire
    run_after_commit()


def _session() -> scoped_session[Session]:
    # Flask-SQLAlchemy's session, found through the app: importing `extensions` here would
    # close an import cycle (extensions -> store -> metrics -> events).
    return current_app.extensions["sqlalchemy"].session


def on_commit(callback: Callable[[], None]) -> None:
    """Run `callback` after the open transaction commits (through `database.commit()` or
    `emit`); a rollback forgets it."""
    _session().info.setdefault(AFTER_COMMIT, []).append(callback)


def run_after_commit() -> None:
    """Run (once) the callbacks that waited for the commit that just succeeded."""
    for callback in _session().info.pop(AFTER_COMMIT, []):
        callback()


@event.listens_for(Session, "after_soft_rollback")
def _forget_callbacks(session: Session, _previous: Any) -> None:
    """A rollback, in any app's session, drops what waited for a commit."""
    session.info.pop(AFTER_COMMIT, None)
