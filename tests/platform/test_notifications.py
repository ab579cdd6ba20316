"""Notifications: events become emails and SMS over real local SMTP and webhook servers,
the file/console/memory senders, sender URL validation, and failures that never raise."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from jinja2 import ChoiceLoader, DictLoader
from verification_helpers import body_of

from authserver.platform.config import ConfigError
from authserver.platform.events import emit
from authserver.platform.logs import LogfmtFormatter
from authserver.platform.models import Account, User
from authserver.platform.notifications import EMAIL_EVENTS
from authserver.platform.security import mask_address
from authserver.platform.senders import parse_sender_urls

CODE = "482913"
TOKEN = "tok-Zr8v1Hq0sXb2LmN9pQwE4yT6uI3oA5dF"
EMAIL = "jane.doe@example.com"
PHONE = "+15551234567"


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def logs() -> Iterator[list[logging.LogRecord]]:
    """Records of the notifications logger (the app's "authserver" logger doesn't propagate)."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(level=logging.DEBUG)
    logger = logging.getLogger("authserver.notifications")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def log_text(records: list[logging.LogRecord]) -> str:
    """The lines exactly as the app writes them, fields included."""
    formatter = LogfmtFormatter()
    return "\n".join(formatter.format(record) for record in records)


def warnings_of(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if r.levelno == logging.WARNING]


def user(**attrs: Any) -> User:
    values = {
        "email": EMAIL,
        "phone_number": PHONE,
        "first_name": "Jane",
        "locale": None,
        "email_verified": True,
    }
    values.update(attrs)
    return User(**values)


def account(**attrs: Any) -> Account:
    values = {"name": "Acme Shop", "default_locale": None}
    values.update(attrs)
    return Account(**values)


def send(app: Flask, event: str, **payload: Any) -> None:
    with app.app_context():
        emit(event, **payload)


def outbox(app: Flask) -> Any:
    return app.extensions["authserver.outbox"]


# ---------------------------------------------------------------- real SMTP


def test_smtp_delivers_login_code_with_headers(make_app, smtp):
    """A tfa_email login code arrives over SMTP with From/To/Subject, the code and safe headers."""
    sink, port = smtp
    app = make_app(MAIL_URL=f"smtp://127.0.0.1:{port}", MAIL_FROM="Acme <login@acme.test>")
    send(
        app,
        "identity.otp.create.success",
        user=user(),
        account=account(),
        code=CODE,
        method="tfa_email",
    )
    assert len(sink.envelopes) == 1
    assert sink.envelopes[0].mail_from == "login@acme.test"
    assert sink.envelopes[0].rcpt_tos == [EMAIL]
    message = sink.messages()[0]
    assert message["From"] == "Acme <login@acme.test>"
    assert message["To"] == EMAIL
    assert message["Subject"] == "Your login code"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].endswith("@acme.test>")
    assert message["Content-Language"] == "en"
    body = body_of(message)
    assert f"    {CODE}\n" in body
    assert "expires in 5 minutes" in body
    assert body.rstrip().endswith("-- \nAcme Shop")


@pytest.mark.parametrize(
    ("user_locale", "account_locale", "default_locale", "subject"),
    [
        ("es", "fr", "en", "Restablece tu contraseña"),  # the user's own language
        ("fr-CA", None, "es", "Réinitialisez votre mot de passe"),  # a regional tag
        (None, "fr", "es", "Réinitialisez votre mot de passe"),  # the account default
        ("de", None, "es", "Restablece tu contraseña"),  # unsupported -> config default
        (None, None, "en", "Reset your password"),
    ],
)
def test_smtp_reset_link_in_negotiated_language(
    make_app, smtp, user_locale, account_locale, default_locale, subject
):
    """The reset email goes out in user locale, else account default, else config default."""
    sink, port = smtp
    app = make_app(MAIL_URL=f"smtp://127.0.0.1:{port}", DEFAULT_LOCALE=default_locale)
    send(
        app,
        "identity.password_reset_token.create.success",
        user=user(locale=user_locale),
        account=account(default_locale=account_locale),
        token=TOKEN,
        locale=None,
    )
    message = sink.messages()[0]
    assert message["Subject"] == subject
    body = body_of(message)
    assert f"http://127.0.0.1:5000/reset-password?token={TOKEN}\n" in body


def test_payload_locale_wins_over_user_locale(make_app, smtp):
    """A locale given with the event (the page the user was on) beats the stored one."""
    sink, port = smtp
    app = make_app(MAIL_URL=f"smtp://127.0.0.1:{port}")
    send(
        app,
        "identity.password_reset_token.create.success",
        user=user(locale="es"),
        account=None,
        token=TOKEN,
        locale="fr",
    )
    assert sink.messages()[0]["Subject"] == "Réinitialisez votre mot de passe"


def test_starttls_refused_by_server_is_a_logged_failure(make_app, smtp, logs):
    """?starttls=1 against a server without STARTTLS logs a warning and sends nothing in clear."""
    sink, port = smtp
    app = make_app(MAIL_URL=f"smtp://127.0.0.1:{port}?starttls=1")
    send(
        app, "identity.otp.create.success", user=user(), account=None, code=CODE, method="tfa_email"
    )
    assert sink.envelopes == []
    [warning] = warnings_of(logs)
    assert warning.fields["error"] == "SMTPNotSupportedError"  # type: ignore[attr-defined]
    assert warning.fields["sender"] == "smtp"  # type: ignore[attr-defined]


def test_smtp_down_does_not_break_the_use_case(make_app, logs, unused_port):
    """With no SMTP server the emit returns, and the WARNING names event and channel only."""
    app = make_app(MAIL_URL=f"smtp://mailer:S3cretPass@127.0.0.1:{unused_port}")
    send(
        app, "identity.otp.create.success", user=user(), account=None, code=CODE, method="tfa_email"
    )
    [warning] = warnings_of(logs)
    text = log_text(logs)
    assert "event=identity.otp.create.success" in text
    assert "channel=email" in text
    assert "ConnectionRefusedError" in text
    assert 'to="j***@example.com"' in text
    for secret in (CODE, EMAIL, "S3cretPass", "Use this code"):
        assert secret not in text
    assert warning.name == "authserver.notifications"


# ---------------------------------------------------------------- real SMS webhook


def test_webhook_receives_sms_json(make_app, webhook):
    """A tfa_sms code is POSTed as JSON {"to", "body"} in the user's language."""
    app = make_app(SMS_URL=webhook.url)
    send(
        app,
        "identity.otp.create.success",
        user=user(locale="fr"),
        account=account(),
        code=CODE,
        method="tfa_sms",
    )
    [request] = webhook.requests
    assert request["headers"]["Content-Type"] == "application/json"
    assert set(request["json"]) == {"to", "body"}
    assert request["json"]["to"] == PHONE
    assert request["json"]["body"] == (
        f"Acme Shop: Votre code de connexion est {CODE}. Il expire dans 5 min."
        " Ne le communiquez à personne."
    )


def test_webhook_phone_verification_goes_to_payload_number(make_app, webhook):
    """A phone verification code goes to the number in the event, in the event's locale."""
    app = make_app(SMS_URL=webhook.url)
    send(
        app,
        "identity.phone_verification_code.create.success",
        phone_number="+34600111222",
        code=CODE,
        locale="es",
        account=None,
    )
    [request] = webhook.requests
    assert request["json"] == {
        "to": "+34600111222",
        "body": f"Tu código para verificar el teléfono es {CODE}. No se lo des a nadie.",
    }


def test_webhook_basic_auth_from_url(make_app, webhook):
    """Credentials in the webhook URL are sent as HTTP Basic auth, not in the request line."""
    app = make_app(SMS_URL=webhook.url.replace("http://", "http://gw:pa%24s@"))
    send(app, "identity.otp.create.success", user=user(), account=None, code=CODE, method="tfa_sms")
    [request] = webhook.requests
    assert request["headers"]["Authorization"] == "Basic Z3c6cGEkcw=="  # gw:pa$s


@pytest.mark.parametrize("status", [500, 302, 404])
def test_webhook_error_status_is_a_logged_failure(make_app, webhook, logs, status):
    """A non-2xx answer (even a redirect) is a WARNING with the status, not an exception."""
    webhook.status = status
    app = make_app(SMS_URL=webhook.url)
    send(app, "identity.otp.create.success", user=user(), account=None, code=CODE, method="tfa_sms")
    [warning] = warnings_of(logs)
    assert warning.fields["error"] == f"HTTP {status}"  # type: ignore[attr-defined]
    assert warning.fields["channel"] == "sms"  # type: ignore[attr-defined]
    assert CODE not in log_text(logs)
    assert PHONE not in log_text(logs)


def test_webhook_timeout_is_a_logged_failure(make_app, webhook, logs):
    """A gateway slower than SMS_TIMEOUT is abandoned after the timeout and logged."""
    webhook.delay = 10
    app = make_app(SMS_URL=webhook.url, SMS_TIMEOUT=1)
    started = time.monotonic()
    send(app, "identity.otp.create.success", user=user(), account=None, code=CODE, method="tfa_sms")
    assert time.monotonic() - started < 5
    [warning] = warnings_of(logs)
    assert "TimeoutError" in warning.fields["error"]  # type: ignore[attr-defined]


# ---------------------------------------------------------------- file, console, memory


def test_file_sender_writes_one_file_per_message(make_app, tmp_path):
    """file:// writes an .eml per email and a .json per SMS, in time order, to every URL given."""
    directory = tmp_path / "outbox"
    app = make_app(MAIL_URL=f"file://{directory} memory:", SMS_URL=f"file://{directory}")
    send(
        app, "identity.otp.create.success", user=user(), account=None, code=CODE, method="tfa_email"
    )
    send(
        app,
        "identity.otp.create.success",
        user=user(),
        account=None,
        code="111111",
        method="tfa_sms",
    )
    names = sorted(os.listdir(directory))
    assert [name.rsplit(".", 1)[1] for name in names] == ["eml", "json"]
    assert len(outbox(app)) == 1  # the memory: sender got the email too
    mail = email.message_from_bytes(
        (directory / names[0]).read_bytes(), policy=email.policy.default
    )
    assert CODE in body_of(mail)
    assert json.loads((directory / names[1]).read_text())["body"].startswith(
        "Your login code is 111111"
    )
    assert (directory / names[0]).stat().st_mode & 0o077 == 0


def test_file_sender_relative_path(monkeypatch, tmp_path):
    """A relative file:// directory is taken from the working directory at start-up."""
    monkeypatch.chdir(tmp_path)
    [spec] = parse_sender_urls("file://var/outbox", "mail")
    assert spec.path == str(tmp_path / "var" / "outbox")


def test_console_sender_prints_the_message(make_app, capsys):
    """console: prints the headers and the readable body to stdout."""
    app = make_app(MAIL_URL="console:", SMS_URL="console:")
    send(
        app, "identity.otp.create.success", user=user(), account=None, code=CODE, method="tfa_email"
    )
    send(
        app,
        "identity.otp.create.success",
        user=user(),
        account=None,
        code="111111",
        method="tfa_sms",
    )
    out = capsys.readouterr().out
    assert "Subject: Your login code" in out
    assert f"To: {EMAIL}" in out
    assert f"    {CODE}" in out
    assert f"To: {PHONE}" in out
    assert "Your login code is 111111" in out


def test_memory_sender_collects(app):
    """memory: keeps each message with its channel, event, recipient, subject and text."""
    send(app, "identity.tfa.update.success", user=user(), account=account())
    [message] = outbox(app)
    assert (message.channel, message.event, message.to) == (
        "email",
        "identity.tfa.update.success",
        EMAIL,
    )
    assert message.subject == "Your two-step verification settings were changed"
    assert "two-step verification settings of your account were just changed" in message.text
    assert message.html is None
    assert outbox(app).of("sms") == []


@pytest.mark.parametrize(
    ("event", "path"),
    [
        ("identity.email_verification_token.create.success", "/verify-email"),
        ("identity.password_reset_token.create.success", "/reset-password"),
        ("identity.activation_token.create.success", "/activate"),
    ],
)
def test_token_links_use_the_configured_issuer(make_app, event, path):
    """Token links are built from ISSUER (never a request Host) and the token is URL-encoded."""
    app = make_app(ISSUER="https://id.acme.test")
    send(app, event, user=user(), account=account(), token="a+b/c", locale=None)
    [message] = outbox(app)
    assert f"https://id.acme.test{path}?token=a%2Bb%2Fc\n" in message.text


@pytest.mark.parametrize("event", list(EMAIL_EVENTS))
@pytest.mark.parametrize("locale", ["en", "es", "fr"])
def test_every_email_has_subject_and_ends_with_account_name(app, event, locale):
    """Each email event renders a subject and a body that ends with the account's name."""
    send(app, event, user=user(locale=locale), account=account(), token=TOKEN, locale=None)
    [message] = outbox(app)
    assert message.subject and "\n" not in message.subject
    assert message.locale == locale
    assert message.text.endswith("\n-- \nAcme Shop\n")
    assert message.mime["Subject"] == message.subject


def test_account_name_in_the_message_language(app):
    """An account translation of its name is used for messages in that language."""
    shop = account(translations={"fr": {"name": "Boutique Acme"}})
    send(app, "identity.password.update.success", user=user(locale="fr"), account=shop)
    assert outbox(app)[0].text.endswith("-- \nBoutique Acme\n")


def test_password_changed_mentions_support_address(app):
    """The password-changed email says what to do if it wasn't you, with the support address."""
    shop = account(support_email="help@acme.test")
    send(app, "identity.password.update.success", user=user(), account=shop)
    text = outbox(app)[0].text
    assert "If it wasn't you" in text
    assert "help@acme.test" in text


def test_html_alternative_is_autoescaped(app):
    """An email/<event>.html template adds an autoescaped HTML part next to the text."""
    app.jinja_env.loader = ChoiceLoader(
        [
            DictLoader({"email/identity.tfa.update.success.html": "<p>{{ name }}</p>"}),
            app.jinja_env.loader,
        ]
    )
    send(app, "identity.tfa.update.success", user=user(first_name="<b>Jo</b>"), account=None)
    [message] = outbox(app)
    assert message.html == "<p>&lt;b&gt;Jo&lt;/b&gt;</p>"
    html_part = message.mime.get_body(("html",))
    assert html_part is not None
    assert "&lt;b&gt;Jo" in html_part.get_content()


def test_user_without_email_is_skipped_quietly(app, logs):
    """No email address: nothing is sent and an INFO line says so, without raising."""
    send(app, "identity.password.update.success", user=user(email=None), account=None)
    assert outbox(app) == []
    assert [r.levelno for r in logs] == [logging.INFO]
    assert "no email address" in logs[0].getMessage()


def test_header_injection_in_address_is_refused(app, logs):
    """An address with CR/LF never becomes a header; a WARNING shows it masked."""
    send(
        app,
        "identity.password.update.success",
        user=user(email="victim@example.com\r\nBcc: spy@evil.test"),
        account=None,
    )
    assert outbox(app) == []
    assert len(warnings_of(logs)) == 1
    assert "\r\n" not in log_text(logs)


def test_totp_login_sends_nothing(app):
    """An OTP event for a TOTP user (the app shows the code) sends no email or SMS."""
    send(
        app, "identity.otp.create.success", user=user(), account=None, code=CODE, method="tfa_totp"
    )
    assert outbox(app) == []


def test_apps_do_not_hear_each_others_events(app, make_app):
    """Receivers are bound to their app: an event in one app reaches only its own outbox."""
    other = make_app()
    send(other, "identity.tfa.update.success", user=user(), account=None)
    assert len(outbox(other)) == 1
    assert outbox(app) == []


def test_mask_hides_addresses():
    """Masked recipients keep only enough to tell them apart."""
    assert mask_address("jane.doe@example.com") == "j***@example.com"
    assert mask_address("+15551234567") == "+1***67"


# ---------------------------------------------------------------- sender URL validation


def test_parse_sender_urls_accepts_each_form():
    """Valid mail and SMS settings parse into one spec per space-separated URL."""
    specs = parse_sender_urls(
        "smtp://u%40x:p%20w@mail.example.com:587?starttls=1 smtps://[::1]:465 file:///srv/outbox"
        " console: memory:",
        "mail",
    )
    assert [s.scheme for s in specs] == ["smtp", "smtps", "file", "console", "memory"]
    smtp = specs[0]
    assert (smtp.host, smtp.port, smtp.username, smtp.password, smtp.starttls) == (
        "mail.example.com",
        587,
        "u@x",
        "p w",
        True,
    )
    assert (specs[1].host, specs[1].port, specs[1].starttls) == ("::1", 465, False)
    assert specs[2].path == "/srv/outbox"
    [hook] = parse_sender_urls("https://u:p@sms.example.com/send?x=1", "sms")
    assert hook.url == "https://sms.example.com/send?x=1"


@pytest.mark.parametrize(
    ("value", "kind", "reason"),
    [
        ("", "mail", "no sender"),
        ("   ", "sms", "no sender"),
        ("gopher://mail.example.com:70", "mail", "not a mail sender"),
        ("mail.example.com", "mail", "must be a URL"),
        ("smtp://:25", "mail", "needs a host"),
        ("smtp://mail.example.com", "mail", "needs a port"),
        ("smtp://mail.example.com:70000", "mail", "port must be"),
        ("smtp://mail.example.com:0", "mail", "port must be"),
        ("smtp://mail.example.com:x", "mail", "port must be"),
        ("smtp://mail.example.com:25?startls=1", "mail", "only the starttls"),
        ("smtp://mail.example.com:25?starttls=maybe", "mail", "starttls must be"),
        ("smtps://mail.example.com:465?starttls=1", "mail", "already uses TLS"),
        ("http://hooks.example.com/sms", "mail", "not a mail sender"),
        ("console: http://hooks.example.com/sms", "mail", "not a mail sender"),
        ("smtp://mail.example.com:25", "sms", "not a sms sender"),
        ("https://", "sms", "needs a host"),
        ("file://", "mail", "needs a directory"),
        ("console:stdout", "mail", "nothing after"),
    ],
)
def test_parse_sender_urls_rejects(value, kind, reason):
    """Malformed sender settings raise ValueError with a short reason."""
    with pytest.raises(ValueError, match=reason):
        parse_sender_urls(value, kind)


def test_parse_error_does_not_echo_the_password():
    """The reason for a bad SMTP URL never repeats the credentials in it."""
    with pytest.raises(ValueError) as caught:
        parse_sender_urls("smtp://mailer:S3cretPass@mail.example.com", "mail")
    assert "S3cretPass" not in str(caught.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [("MAIL_URL", "http://hooks.example.com"), ("SMS_URL", "smtp://mail.example.com:25")],
)
def test_create_app_refuses_bad_sender(make_app, key, value):
    """create_app raises ConfigError naming the AUTHSERVER_ setting that is wrong."""
    with pytest.raises(ConfigError, match=f"AUTHSERVER_{key}"):
        make_app(**{key: value})


def test_create_app_refuses_mail_from_with_newline(make_app):
    """A From: setting with CR/LF (header injection) stops start-up."""
    with pytest.raises(ConfigError, match="AUTHSERVER_MAIL_FROM"):
        make_app(MAIL_FROM="a@example.com\r\nBcc: spy@evil.test")
