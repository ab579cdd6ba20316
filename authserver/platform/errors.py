"""Domain exceptions. Each has a stable snake_case `code` and may name the `field` at fault in
domain terms; each front door maps them to its own wire (statuses, pointers, form fields)."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a use case raises on purpose."""

    code = "domain_error"
    title = "Request failed"

    def __init__(
        self, detail: str | None = None, *, field: str | None = None, code: str | None = None
    ):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        # The snake_case name of the input at fault (`phone_number`), if any: never a wire
        # name; the front door says which attribute, form field or option that is.
        self.field = field
        if code:
            self.code = code


class ValidationFailed(DomainError):
    """Input is well formed but breaks a rule (422)."""

    code = "validation_failed"
    title = "Invalid value"


class NotFound(DomainError):
    """The thing does not exist, or the caller may not know that it does (404)."""

    code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    """The change collides with existing data, e.g. a taken username (409)."""

    code = "conflict"
    title = "Conflict"


class Forbidden(DomainError):
    """The caller's role does not allow this (403)."""

    code = "forbidden"
    title = "Forbidden"


class Unauthenticated(DomainError):
    """No valid credentials (401)."""

    code = "unauthenticated"
    title = "Authentication required"


class Throttled(DomainError):
    """Too many attempts; try again after `retry_after` seconds (429)."""

    code = "throttled"
    title = "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None, **kwargs: str | None):
        super().__init__(detail, **kwargs)
        self.retry_after = max(1, int(retry_after))


class ServiceUnavailable(DomainError):
    """A dependency (Redis, the database, a sender) is down; fail closed (503)."""

    code = "service_unavailable"
    title = "Service unavailable"
    retry_after = 5  # seconds: every 503 says when to try again (web.py adds the header)


class InvalidCredentials(DomainError):
    """Username and password do not match (also: unknown user or account, or not active)."""

    code = "invalid_credentials"
    title = "Username and password does not match."


class OtpRequired(DomainError):
    """The password was right; a second factor is needed to finish logging in."""

    code = "otp_required"
    title = "A one-time password is required."

    def __init__(
        self,
        method: str,
        destination: str | None,
        resend_after: int,
        sent: bool = False,
        *,
        user_id: str | None = None,
        token_generation: int | None = None,
        passkey: bool = False,
    ):
        super().__init__(self.title)
        # Who passed the password, for a front door that asks for the code on its own
        # page (login.continue_login); never sent to the client.
        self.user_id = user_id
        self.token_generation = token_generation
        self.method = method  # tfa_email, tfa_sms, tfa_totp, or passkey (no code: a passkey only)
        self.passkey = passkey  # the user has a passkey, which may answer instead of the code
        self.destination = destination  # masked email or phone; None for TOTP
        self.resend_after = resend_after  # seconds until another code can be sent
        self.sent = sent  # a new code went out with this attempt


class EmailNotVerified(DomainError):
    """The password was right, but the user's second factor is a code emailed to an
    address not yet verified: no code is mailed to an address nobody proved is theirs."""

    code = "email_not_verified"
    title = "Confirm your email address first: open the link we emailed to you."


class InvalidOtp(DomainError):
    """The one-time password or recovery code is wrong, used or expired."""

    code = "invalid_otp"
    title = "The one-time password is invalid or expired."


class CaptchaRequired(DomainError):
    """This request needs a solved CAPTCHA's token (none was sent)."""

    code = "captcha_required"
    title = "Solve the CAPTCHA and send its token."


class CaptchaFailed(DomainError):
    """The verifier refused the CAPTCHA token (wrong, expired, used, malformed)."""

    code = "invalid_captcha"
    title = "The CAPTCHA token was not accepted."


class CaptchaUnavailable(ServiceUnavailable):
    """The CAPTCHA verifier did not answer, or not as a siteverify service does (503)."""

    code = "captcha_unavailable"
    title = "The CAPTCHA verifier is not reachable."


class InvalidPasskey(DomainError):
    """A passkey (WebAuthn) answer that does not verify: malformed, for another or a used
    or expired challenge, an unknown or removed passkey, a wrong origin or signature, no
    user verification, or a signature counter that went back (a cloned authenticator)."""

    code = "invalid_passkey"
    title = "The passkey could not be verified."

    def __init__(self, detail: str | None = None, *, reason: str = "bad_passkey", **kwargs: str):
        super().__init__(detail, **kwargs)
        self.reason = reason  # for the login history: bad_passkey, passkey_counter_regression
        self.user_id: str | None = None  # whose passkey it was, when known
