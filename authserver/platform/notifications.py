"""Notifications: domain event -> template -> sender, for the events that reach a person.

Templates: `templates/email/<event>.txt` (first line `Subject: ...`, the rest is the body;
most extend `email/_layout.txt`, which adds the greeting and ends with the account name), an
optional autoescaped `templates/email/<event>.html`, and `templates/sms/<event>.txt`. Names
starting with `_` are layouts and partials. Each is rendered under `force_locale(locale)`.

Messages go to every sender of their channel (`senders.py`) through the outbox: a row per
message and sender, written in the transaction of the event (events.stage), born claimed by
the writer, which sends it right after the commit, as before the outbox. A failure is logged
at WARNING with the recipient masked, never raised into the use case, and the delivery
workers retry it with backoff (login codes: quickly, and never after they expired).
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import re
from dataclasses import asdict, replace
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any
from urllib.parse import urlencode

from flask import Flask
from jinja2 import TemplateNotFound

from authserver.platform import events, metrics, outbox
from authserver.platform.config import ConfigError
from authserver.platform.i18n import force_locale, negotiate
from authserver.platform.models import AuthMethod, OutboxItem, utcnow
from authserver.platform.security import mask_address
from authserver.platform.senders import (
    EMAIL_RE,
    PHONE_RE,
    Message,
    Outbox,
    Sender,
    build_senders,
    describe,
    parse_sender_urls,
)

log = logging.getLogger("authserver.notifications")

OTP_EVENT = "identity.otp.create.success"
PHONE_EVENT = "identity.phone_verification_code.create.success"
NEW_DEVICE_EVENT = "identity.login.new_device"  # its payload names the login's time and device
NEW_DEVICE_DETAILS = ("when", "ip", "browser", "system", "user_agent")
DISABLED_EVENT = "identity.webhook_endpoint.disable.success"  # mailed to the owners
# Email events about a user, with the hosted page their token link opens (None: no link).
EMAIL_EVENTS: dict[str, str | None] = {
    "identity.email_verification_token.create.success": "/verify-email",
    "identity.password_reset_token.create.success": "/reset-password",
    "identity.activation_token.create.success": "/activate",
    "identity.password.update.success": None,
    "identity.tfa.update.success": None,
    "identity.tfa.enable.success": None,
    "identity.tfa.disable.success": None,
    "identity.recovery_codes.create.success": None,
    NEW_DEVICE_EVENT: "/not-me",
    "identity.passkey.create.success": None,
    "identity.passkey.update.success": None,
    "identity.passkey.delete.success": None,
    "identity.support_login.create.success": None,
    "identity.email_verification_code.create.success": None,
}


class Notifier:
    """Turns an app's events into messages and hands them to its senders."""

    def __init__(self, app: Flask, memory: Outbox):
        config = app.config
        self.app = app
        self.issuer: str = config["ISSUER"]
        self.otp_minutes = max(1, int(config["OTP_LIFETIME"]) // 60)
        self.mail_from: str = config["MAIL_FROM"]
        envelope_from = parseaddr(self.mail_from)[1]
        if (
            "\r" in self.mail_from
            or "\n" in self.mail_from
            or not EMAIL_RE.fullmatch(envelope_from)
        ):
            raise ConfigError("AUTHSERVER_MAIL_FROM must be an address like 'Name <a@example.com>'")
        self.msgid_domain = envelope_from.rpartition("@")[2]
        mail = parse_sender_urls(config["MAIL_URL"], "mail")
        sms = parse_sender_urls(config["SMS_URL"], "sms")
        self.senders: dict[str, list[Sender]] = {
            "email": build_senders(mail, memory, config["SMTP_TIMEOUT"], envelope_from),
            "sms": build_senders(sms, memory, config["SMS_TIMEOUT"], envelope_from),
        }
        self.claim_seconds: int = config["OUTBOX_CLAIM_TIMEOUT"]
        self.otp_lifetime = int(config["OTP_LIFETIME"])
        self.events = frozenset((OTP_EVENT, PHONE_EVENT, DISABLED_EVENT, *EMAIL_EVENTS))

    def stage(self, event: str, payload: dict[str, Any]) -> None:
        """Write the event's messages to the outbox in the open transaction, claimed by
        this process, and send them right after the commit."""
        if event not in self.events:
            return
        try:
            messages = self.compose(event, payload)
        except Exception:  # a template bug must not undo the use case; it is logged
            log.error("notification not rendered", exc_info=True, extra=_fields(event, "-"))
            return
        if not messages:
            return
        claim = outbox.new_claim()
        # A login code is worth sending only while it is valid.
        expires = utcnow() + timedelta(seconds=self.otp_lifetime) if event == OTP_EVENT else None
        account_id = getattr(payload.get("account"), "id", None)
        items = [
            outbox.add(
                message.channel,
                event,
                encode(message),
                account_id=account_id,
                sender=index,
                expires_at=expires,
                claim=claim,
                claim_seconds=self.claim_seconds,
            )
            for message in messages
            for index in range(len(self.senders[message.channel]))
        ]
        events.on_commit(lambda: self.send_claimed(items, claim))

    def send_claimed(self, items: list[OutboxItem], claim: str) -> None:
        """Send rows this process wrote and holds; a failure is left to the workers."""
        delays = self.app.config["WEBHOOK_RETRY_DELAYS"]
        retry_later = False
        for item in items:
            try:
                outcome = self.deliver(item)
                status = outbox.settle(item, claim, outcome, delays)
            except Exception:  # the use case has committed; the row stays for the workers
                log.warning("notification not settled", exc_info=True)
                continue
            retry_later = retry_later or status == outbox.PENDING
        wake = self.app.extensions.get("authserver.delivery_wake")
        if retry_later and wake is not None:
            wake()

    def deliver(self, item: OutboxItem) -> outbox.Outcome:
        """One try of an email or SMS row with its sender; never raises."""
        channel = item.kind
        senders = self.senders.get(channel, [])
        if item.sender >= len(senders):  # MAIL_URL/SMS_URL lost a sender since: nobody to try
            return outbox.Outcome(False, error="sender no longer configured", retry=False)
        message = decode(channel, item.event, item.body)
        sender = senders[item.sender]
        fields = _fields(item.event, channel, message.to, sender=sender.name)
        try:
            sender.deliver(message)
        except Exception as exc:  # whatever the outside world does, the use case stands
            reason = describe(exc)
            fields["fields"]["error"] = reason
            log.warning("notification delivery failed", extra=fields)
            outcome = outbox.Outcome(False, error=reason)
        else:
            log.info("notification sent", extra=fields)
            outcome = outbox.Outcome(True)
        if item.event == OTP_EVENT:
            metrics.counted_otp_send(channel, outcome.ok)
        return outcome

    def compose(self, event: str, payload: dict[str, Any]) -> list[Message]:
        user, account = payload.get("user"), payload.get("account")
        locale = negotiate(
            [
                payload.get("locale"),
                getattr(user, "locale", None),
                getattr(account, "default_locale", None),
            ]
        )
        # The greeting names the person only at an address they proved is theirs: a name
        # typed at sign-up (by anyone, for any address) is never mailed to a stranger.
        verified = getattr(user, "email_verified", False) is True
        context = {
            "name": (getattr(user, "first_name", None) or getattr(user, "name", None))
            if verified
            else None,
            "account_name": _account_name(account, locale),
            "support_email": getattr(account, "support_email", None),
            "issuer": self.issuer,
            # A support login: the username of the support specialist who logged in.
            "agent": payload.get("agent"),
            "code": payload.get("code"),  # an email verification code
        }
        if event == DISABLED_EVENT:
            context["url"] = payload["endpoint"].url
            return [
                m
                for owner in payload.get("owners", [])
                for m in self._email(event, getattr(owner, "email", None), locale, context)
            ]
        if event == PHONE_EVENT:
            context["code"] = payload["code"]
            return self._sms(event, payload.get("phone_number"), locale, context)
        if event == OTP_EVENT:
            context.update(code=payload["code"], minutes=self.otp_minutes)
            if payload.get("method") == AuthMethod.TFA_SMS:
                return self._sms(event, getattr(user, "phone_number", None), locale, context)
            if payload.get("method") != AuthMethod.TFA_EMAIL:
                return []
        if event == NEW_DEVICE_EVENT:
            context.update({key: payload.get(key) for key in NEW_DEVICE_DETAILS})
        passkey = payload.get("passkey")
        if passkey is not None:  # the name the user gave it, so they know which one
            context["passkey_name"] = getattr(passkey, "name", None)
        path = EMAIL_EVENTS.get(event)
        if path:
            query = {"token": payload["token"]}
            aid = getattr(account, "id", None)
            if aid:  # the page's sign-in link then names the account (a bare one is global)
                query["aid"] = str(aid)
            context["link"] = f"{self.issuer}{path}?{urlencode(query)}"
        return self._email(event, getattr(user, "email", None), locale, context)

    def _email(
        self, event: str, to: str | None, locale: str, context: dict[str, Any]
    ) -> list[Message]:
        if not to:
            log.info("notification skipped: no email address", extra=_fields(event, "email"))
            return []
        if not EMAIL_RE.fullmatch(to) or len(to) > 254:
            log.warning("notification not sent: bad address", extra=_fields(event, "email", to))
            return []
        env = self.app.jinja_env
        with force_locale(locale):
            rendered = env.get_template(f"email/{event}.txt").render(context)
            try:
                html: str | None = env.get_template(f"email/{event}.html").render(context)
            except TemplateNotFound:
                html = None
        first, _, body = rendered.partition("\n")
        if not first.startswith("Subject:"):
            raise ValueError(f"email/{event}.txt must start with a 'Subject: ' line")
        subject = " ".join(first.removeprefix("Subject:").split())
        message = Message("email", event, to, _tidy(body), locale, subject, html)
        return [replace(message, mime=self._mime(message))]

    def _mime(self, message: Message) -> EmailMessage:
        mime = EmailMessage()
        mime["From"] = self.mail_from
        mime["To"] = message.to
        mime["Subject"] = message.subject or ""
        mime["Date"] = formatdate(usegmt=True)
        mime["Message-ID"] = make_msgid(domain=self.msgid_domain)
        mime["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
        mime["X-Auto-Response-Suppress"] = "All"  # the same, for Exchange
        mime.set_content(message.text)
        if message.html:
            mime.add_alternative(message.html, subtype="html")
        # After the content: set_content() drops every Content-* header set before it.
        mime["Content-Language"] = message.locale
        return mime

    def _sms(
        self, event: str, to: str | None, locale: str, context: dict[str, Any]
    ) -> list[Message]:
        if not to:
            log.info("notification skipped: no phone number", extra=_fields(event, "sms"))
            return []
        if not PHONE_RE.fullmatch(to):
            log.warning("notification not sent: bad number", extra=_fields(event, "sms", to))
            return []
        with force_locale(locale):
            text = self.app.jinja_env.get_template(f"sms/{event}.txt").render(context)
        return [Message("sms", event, to, " ".join(text.split()), locale)]


def _fields(event: str, channel: str, to: str | None = None, **more: str) -> dict[str, Any]:
    values = {"event": event, "channel": channel, **more}
    if to:
        values["to"] = mask_address(to)
    return {"fields": values}


def _account_name(account: Any, locale: str) -> str | None:
    """The account's name in `locale` when it has one, else its name."""
    if account is None:
        return None
    translated = (getattr(account, "translations", None) or {}).get(locale)
    if isinstance(translated, dict) and translated.get("name"):
        return str(translated["name"])
    name = getattr(account, "name", None)
    return str(name) if name else None


def _tidy(body: str) -> str:
    """Template whitespace out: no trailing spaces (but the `-- ` signature line), no blank runs."""
    lines = [line if line == "-- " else line.rstrip() for line in body.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"


def encode(message: Message) -> str:
    """A message as an outbox row's body (the email as it will be sent, headers and all)."""
    data = asdict(replace(message, mime=None))
    data.pop("mime")
    if message.mime is not None:
        data["mime"] = message.mime.as_string()
    return json.dumps(data, ensure_ascii=False)


def decode(channel: str, event: str, body: str) -> Message:
    data = json.loads(body)
    mime = data.pop("mime", None)
    parsed = email.message_from_string(mime, policy=email.policy.default) if mime else None
    return Message(**{**data, "channel": channel, "event": event}, mime=parsed)


def init_app(app: Flask) -> None:
    """Build the senders from config and stage the messages of this app's events."""
    memory = Outbox()
    app.extensions["authserver.outbox"] = memory
    notifier = Notifier(app, memory)
    app.extensions["authserver.notifications"] = notifier
    events.add_stager(app, notifier.stage)
