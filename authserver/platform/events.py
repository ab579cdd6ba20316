"""Domain events as blinker signals, named `identity.<resource>.<action>.<outcome>`.

Use cases call `emit(NAME, **payload)` after their transaction committed; receivers (the
notifications, the audit log) get the app as sender. Payloads, by event:

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
"""

from __future__ import annotations

from typing import Any

from blinker import NamedSignal, Namespace
from flask import current_app

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
)

_namespace = Namespace()
SIGNALS: dict[str, NamedSignal] = {name: _namespace.signal(name) for name in EVENTS}


def signal(name: str) -> NamedSignal:
    """The signal for a known event name; a typo raises KeyError instead of going nowhere."""
    return SIGNALS[name]


def emit(name: str, **payload: Any) -> None:
    """Send an event with the current app as sender. Call only after the commit."""
    signal(name).send(current_app._get_current_object(), **payload)  # type: ignore[attr-defined]
