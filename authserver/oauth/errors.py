"""OAuth errors beyond RFC 6749's, rendered by Authlib like the built-in ones (JSON, no-store)."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import OAuth2Error

from authserver.platform.models import AuthMethod


class OtpRequiredError(OAuth2Error):
    """The password was right; send it again with `otp` (or `recovery_code`)."""

    error = "otp_required"
    status_code = 400

    def __init__(
        self, method: str, destination: str | None, resend_after: int, url: str | None = None
    ):
        super().__init__("A one-time password is required.")
        self.method = method
        self.destination = destination
        self.resend_after = resend_after
        # For `passkey`: no code can answer here (a WebAuthn ceremony needs a browser), so
        # the app signs the person in through the hosted pages (authorization code flow).
        self.url = url

    def get_body(self) -> list[tuple[str, Any]]:
        body = super().get_body()
        body.append(("otp_method", self.method))
        if self.destination:
            body.append(("otp_destination", self.destination))
        if self.url:
            body.append(("otp_url", self.url))
        elif self.method != AuthMethod.TFA_TOTP:
            body.append(("otp_resend_after", self.resend_after))
        return body

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("X-OTP", f"required; method={self.method}")]


class InvalidOtpError(OAuth2Error):
    error = "invalid_otp"
    status_code = 400


class CaptchaRequiredError(OAuth2Error):
    """Too many failures for this username or IP: send the same request with a solved
    CAPTCHA's `captcha_token`."""

    error = "captcha_required"
    status_code = 400


class InvalidCaptchaError(OAuth2Error):
    error = "invalid_captcha"
    status_code = 400


class ThrottledError(OAuth2Error):
    """Too many attempts: 429 with Retry-After."""

    error = "too_many_attempts"
    status_code = 429

    def __init__(self, retry_after: int):
        super().__init__("Too many attempts. Try again later.")
        self.retry_after = retry_after

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("Retry-After", str(self.retry_after))]


class TemporarilyUnavailableError(OAuth2Error):
    """A dependency is down; fail closed (503)."""

    error = "temporarily_unavailable"
    status_code = 503

    def __init__(self, description: str | None = None) -> None:
        super().__init__(description or "The service is temporarily unavailable. Try again later.")


class InvalidTargetError(OAuth2Error):
    """RFC 8707 2: the `resource` is no API of the client's account it may get tokens for."""

    error = "invalid_target"
    status_code = 400
