"""CAPTCHA tokens checked with a siteverify-compatible service (reCAPTCHA, hCaptcha,
Turnstile: `POST secret, response[, remoteip]`, JSON answer with `success`), or with the
built-in proof of work (`CAPTCHA_VERIFY_URL = "altcha:"`): ALTCHA challenges (PyPI
`altcha`, v1 SHA-256) signed with a key derived from CAPTCHA_SECRET (else SECRET_KEY),
solved by `static/captcha.js` in the browser, verified here, each solution once.

The hosted pages always use the built-in proof of work (`widget=True`): a third-party
widget's script and frames would need holes in their strict CSP. API and token-endpoint
callers send whatever the configured verifier takes.

Off while `CAPTCHA_VERIFY_URL` is empty. Which requests need a token is the use cases'
business (identity); this module only answers "is this token good": CaptchaRequired for
none, CaptchaFailed (400) for one the verifier refused, CaptchaUnavailable (503) when
the verifier cannot be asked, so a person is never blamed for our verifier's outage and
an outage never lets a request through unchecked.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

import altcha
from flask import current_app

from authserver.platform.errors import CaptchaFailed, CaptchaRequired, CaptchaUnavailable
from authserver.platform.extensions import store
from authserver.platform.security import keyed_digest

log = logging.getLogger("authserver.captcha")

TOKEN_MAX = 4096  # a reCAPTCHA token is about 2,000 characters; longer is not a token
ANSWER_MAX = 64 * 1024  # bytes of the verifier's answer we read
BUILTIN = "altcha:"  # CAPTCHA_VERIFY_URL of the built-in proof of work
CHALLENGE_LIFETIME = 300  # seconds a proof-of-work challenge can be solved and used
# Hashes a solver tries at most: about half on average, well under a second in a browser.
MAX_NUMBER = 50_000


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirected verification is a failure: following it would turn the POST into a GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def enabled() -> bool:
    """Whether a verifier is configured (then the protected requests need tokens)."""
    return bool(current_app.config["CAPTCHA_VERIFY_URL"])


def _key() -> str:
    config = current_app.config
    return keyed_digest(config["CAPTCHA_SECRET"] or config["SECRET_KEY"], "authserver.altcha")


def new_challenge() -> dict[str, Any]:
    """A signed proof-of-work challenge (ALTCHA v1 JSON), good for CHALLENGE_LIFETIME."""
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=CHALLENGE_LIFETIME)
    options = altcha.ChallengeOptionsV1(hmac_key=_key(), max_number=MAX_NUMBER, expires=expires)
    challenge = altcha.create_challenge_v1(options)
    return dict(challenge.to_dict())


def _verify_builtin(token: str) -> None:
    try:
        good, _ = altcha.verify_solution_v1(token, _key(), check_expires=True)
        signature = json.loads(base64.b64decode(token, validate=True))["signature"]
    except Exception:  # altcha raises what it meets in a hostile payload; all are refusals
        raise CaptchaFailed() from None
    if not good or not isinstance(signature, str):
        raise CaptchaFailed()
    # A solution works once: the signature names its challenge.
    if not store().mark_once(f"captcha-spent:{signature[:128]}", CHALLENGE_LIFETIME + 60):
        raise CaptchaFailed()


def verify(token: object, ip: str | None, *, widget: bool = False) -> None:
    """Check a CAPTCHA token; returns when it was accepted. `widget`: it comes from the
    hosted pages' built-in widget, whatever verifier the API uses. Raises CaptchaRequired
    (no token), CaptchaFailed or CaptchaUnavailable."""
    if token is None or token == "":
        raise CaptchaRequired()
    if not isinstance(token, str) or len(token) > TOKEN_MAX or not token.isprintable():
        raise CaptchaFailed()
    config = current_app.config
    if widget or config["CAPTCHA_VERIFY_URL"] == BUILTIN:
        _verify_builtin(token)
        return
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
