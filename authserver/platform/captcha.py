"""CAPTCHA tokens checked with a siteverify-compatible service (reCAPTCHA, hCaptcha,
Turnstile: `POST secret, response[, remoteip]`, JSON answer with `success`).

Off while `CAPTCHA_VERIFY_URL` is empty. Which requests need a token is the use cases'
business (identity); this module only answers "is this token good": CaptchaRequired for
none, CaptchaFailed (400) for one the verifier refused, CaptchaUnavailable (503) when
the verifier cannot be asked, so a person is never blamed for our verifier's outage and
an outage never lets a request through unchecked.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

from flask import current_app

from authserver.platform.errors import CaptchaFailed, CaptchaRequired, CaptchaUnavailable

log = logging.getLogger("authserver.captcha")

TOKEN_MAX = 4096  # a reCAPTCHA token is about 2,000 characters; longer is not a token
ANSWER_MAX = 64 * 1024  # bytes of the verifier's answer we read


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirected verification is a failure: following it would turn the POST into a GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def enabled() -> bool:
    """Whether a verifier is configured (then the protected requests need tokens)."""
    return bool(current_app.config["CAPTCHA_VERIFY_URL"])


def verify(token: object, ip: str | None) -> None:
    """Check a CAPTCHA token with the verifier; returns when it was accepted. Raises
    CaptchaRequired (no token), CaptchaFailed or CaptchaUnavailable."""
    if token is None or token == "":
        raise CaptchaRequired()
    if not isinstance(token, str) or len(token) > TOKEN_MAX or not token.isprintable():
        raise CaptchaFailed()
    config = current_app.config
    form = {"secret": config["CAPTCHA_SECRET"], "response": token}
    if ip:
        form["remoteip"] = ip
    request = urllib.request.Request(  # noqa: S310 - scheme checked to be http(s) at start-up
        config["CAPTCHA_VERIFY_URL"],
        data=urlencode(form).encode(),
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "User-Agent": "authserver",
        },
    )
    try:
        with _opener.open(request, timeout=config["CAPTCHA_TIMEOUT"]) as response:
            raw = response.read(ANSWER_MAX + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:  # HTTPError is a URLError
        log.warning("captcha verifier unreachable", extra={"fields": {"error": str(exc)[:200]}})
        raise CaptchaUnavailable() from None
    try:
        answer = json.loads(raw) if len(raw) <= ANSWER_MAX else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("success"), bool):
        log.warning("captcha verifier gave no siteverify answer")
        raise CaptchaUnavailable()
    if answer["success"] is not True:
        raise CaptchaFailed()
