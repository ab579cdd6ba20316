"""Senders of rendered messages: the MAIL_URL / SMS_URL syntax and one sender per scheme.

AUTHSERVER_MAIL_URL / AUTHSERVER_SMS_URL hold one or more space-separated URLs, and every
one receives each message: smtp://[user:pass@]host:port[?starttls=1], smtps://host:port,
http(s):// webhook (SMS: POST {"to", "body"}), file://DIR, console:, memory: (the list at
`app.extensions["authserver.outbox"]`). Config validation parses the URLs with the same code.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import smtplib
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

SCHEMES = {
    "mail": ("smtp", "smtps", "file", "console", "memory"),
    "sms": ("http", "https", "file", "console", "memory"),
}
EMAIL_RE = re.compile(r"[^\s@<>,;:\"'()\[\]\\]{1,64}@[^\s@<>,;:\"'()\[\]\\]{1,253}")
PHONE_RE = re.compile(r"\+[1-9][0-9]{6,14}")  # E.164
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class Message:
    """One rendered email or SMS, as every sender receives it."""

    channel: str  # "email" or "sms"
    event: str
    to: str
    text: str
    locale: str
    subject: str | None = None
    html: str | None = None
    mime: EmailMessage | None = field(default=None, repr=False)  # the email as sent


class Outbox(list[Message]):
    """Messages the `memory:` senders delivered (tests read it)."""

    def of(self, channel: str) -> list[Message]:
        return [message for message in self if message.channel == channel]


@dataclass(frozen=True)
class SenderSpec:
    """One parsed sender URL."""

    scheme: str
    host: str = ""
    port: int = 0
    username: str = ""
    password: str = field(default="", repr=False)
    starttls: bool = False
    path: str = ""  # file:// directory
    url: str = field(default="", repr=False)  # webhook URL without the credentials


def parse_sender_urls(value: str, kind: str) -> list[SenderSpec]:
    """Parse a MAIL_URL (kind "mail") or SMS_URL (kind "sms"); ValueError says what is wrong."""
    if kind not in SCHEMES:
        raise ValueError(f"unknown sender kind {kind!r}")
    if not isinstance(value, str) or not value.strip():
        raise ValueError("no sender given; e.g. console:")
    return [_parse_one(item, kind) for item in value.split()]


def _parse_one(item: str, kind: str) -> SenderSpec:
    scheme, colon, rest = item.partition(":")
    scheme = scheme.lower()
    allowed = SCHEMES[kind]
    usage = ", ".join(f"{s}:" if s in ("console", "memory") else f"{s}://" for s in allowed)
    if not colon or not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
        # The value is not echoed: it may hold a password.
        raise ValueError(f"each sender must be a URL; use {usage}")
    if scheme not in allowed:
        raise ValueError(f"{scheme}: is not a {kind} sender; use {usage}")
    if scheme in ("console", "memory"):
        if rest not in ("", "//"):
            raise ValueError(f"{scheme}: takes nothing after the colon")
        return SenderSpec(scheme)
    if scheme == "file":
        if not rest.startswith("//") or not rest[2:]:
            raise ValueError("file:// needs a directory, e.g. file:///var/spool/authserver")
        return SenderSpec("file", path=os.path.abspath(rest[2:]))
    parts = urlsplit(item)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{scheme}:// port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"{scheme}:// needs a host")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"{scheme}:// port must be a number from 1 to 65535")
    if scheme in ("http", "https"):
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = f"{host}:{port}" if port else host
        url = parts._replace(netloc=netloc, fragment="").geturl()
        return SenderSpec(
            scheme,
            host=parts.hostname,
            port=port or 0,
            username=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            url=url,
        )
    return _parse_smtp(scheme, parts.hostname, port, parts)


def _parse_smtp(scheme: str, host: str, port: int | None, parts: Any) -> SenderSpec:
    if port is None:
        raise ValueError(f"{scheme}:// needs a port, e.g. {scheme}://mail.example.com:587")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError(f"{scheme}:// takes no path; only ?starttls=1")
    query = parse_qs(parts.query, keep_blank_values=True)
    if set(query) - {"starttls"} or len(query.get("starttls", [])) > 1:
        raise ValueError(f"{scheme}:// knows only the starttls=1 option")
    flag = query.get("starttls", ["0"])[0].lower()
    if flag not in TRUE + FALSE:
        raise ValueError("starttls must be 1 or 0")
    starttls = flag in TRUE
    if starttls and scheme == "smtps":
        raise ValueError("smtps:// already uses TLS; drop ?starttls=1")
    return SenderSpec(
        scheme,
        host=host,
        port=port,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        starttls=starttls,
    )


class Sender(Protocol):
    name: str

    def deliver(self, message: Message) -> None: ...


class SmtpSender:
    """Sends each email over its own SMTP connection (plain, STARTTLS or implicit TLS)."""

    def __init__(self, spec: SenderSpec, timeout: int, envelope_from: str):
        self.name = spec.scheme
        self.spec = spec
        self.timeout = timeout
        self.envelope_from = envelope_from

    def deliver(self, message: Message) -> None:
        assert message.mime is not None
        spec, context = self.spec, ssl.create_default_context()
        client: smtplib.SMTP
        if spec.scheme == "smtps":
            client = smtplib.SMTP_SSL(spec.host, spec.port, timeout=self.timeout, context=context)
        else:
            client = smtplib.SMTP(spec.host, spec.port, timeout=self.timeout)
        with client:
            if spec.starttls:
                client.starttls(context=context)
            if spec.username:
                client.login(spec.username, spec.password)
            client.send_message(message.mime, self.envelope_from, [message.to])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirected webhook is a failure: following it would turn the POST into a GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookSender:
    """POSTs `{"to": ..., "body": ...}` as JSON; anything but a 2xx answer is a failure."""

    def __init__(self, spec: SenderSpec, timeout: int):
        self.name = spec.scheme
        self.spec = spec
        self.timeout = timeout
        self.opener = urllib.request.build_opener(_NoRedirect)

    def deliver(self, message: Message) -> None:
        body = json.dumps({"to": message.to, "body": message.text}).encode()
        request = urllib.request.Request(  # noqa: S310 - scheme checked to be http(s) at start-up
            self.spec.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "authserver"},
        )
        if self.spec.username:
            pair = f"{self.spec.username}:{self.spec.password}".encode()
            request.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
        with self.opener.open(request, timeout=self.timeout) as response:
            status = response.status
        if not 200 <= status < 300:
            raise DeliveryError(f"HTTP {status}")


class FileSender:
    """Writes one file per message, named so that `ls` sorts them by time (a dev outbox)."""

    def __init__(self, spec: SenderSpec):
        self.name = "file"
        self.directory = spec.path

    def deliver(self, message: Message) -> None:
        os.makedirs(self.directory, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        if message.mime is not None:
            content, ext = message.mime.as_bytes(), ".eml"
        else:
            data = {"to": message.to, "body": message.text, "event": message.event}
            content, ext = json.dumps(data, ensure_ascii=False, indent=2).encode(), ".json"
        name = f"{stamp}-{secrets.token_hex(3)}-{message.channel}-{message.event}{ext}"
        # 0600 and O_EXCL: the files hold live codes, and must never overwrite each other.
        fd = os.open(
            os.path.join(self.directory, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
        )
        with os.fdopen(fd, "wb") as f:
            f.write(content)


class ConsoleSender:
    """Prints each message to stdout, readable (no transfer encoding): a dev convenience."""

    name = "console"

    def deliver(self, message: Message) -> None:
        lines = [f"----- {message.channel} {message.event} -----"]
        if message.mime is not None:
            lines += [f"{key}: {value}" for key, value in message.mime.items()]
            lines += ["", message.text]
            if message.html:
                lines += ["----- html -----", message.html]
        else:
            lines += [f"To: {message.to}", "", message.text]
        lines.append("----- end -----")
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()


class MemorySender:
    """Appends to the app's outbox."""

    name = "memory"

    def __init__(self, outbox: Outbox):
        self.outbox = outbox

    def deliver(self, message: Message) -> None:
        self.outbox.append(message)


class DeliveryError(Exception):
    """A sender got an answer that means "not delivered"."""


def build_senders(
    specs: list[SenderSpec], outbox: Outbox, timeout: int, envelope_from: str
) -> list[Sender]:
    senders: list[Sender] = []
    for spec in specs:
        if spec.scheme in ("smtp", "smtps"):
            senders.append(SmtpSender(spec, timeout, envelope_from))
        elif spec.scheme in ("http", "https"):
            senders.append(WebhookSender(spec, timeout))
        elif spec.scheme == "file":
            senders.append(FileSender(spec))
        elif spec.scheme == "console":
            senders.append(ConsoleSender())
        else:
            senders.append(MemorySender(outbox))
    return senders


def describe(exc: BaseException) -> str:
    """A failure reason without addresses, codes or bodies (server replies may echo them)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__} {exc.smtp_code}"
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        return describe(exc.reason)
    if isinstance(exc, DeliveryError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__
