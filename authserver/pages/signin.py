"""Login (password, then the second factor for two-step users), logout, and the signed-in
landing page.

The password step calls `login.password_login` and the second step `login.continue_login`:
the throttle, lockout, codes and login history of the password grant. Between the steps
the session holds who passed the password (never the password) for OTP_LIFETIME seconds;
the session is cleared and rewritten at each step, and only `browser_login.start_login` (after
every factor) makes a login that other pages accept.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, request, session, url_for
from werkzeug.wrappers import Response

from authserver.identity import browser_login, devices
from authserver.identity.login import LoginAttempt, LoginResult, continue_login, password_login
from authserver.platform.errors import (
    CaptchaFailed,
    CaptchaRequired,
    EmailNotVerified,
    InvalidCredentials,
    InvalidOtp,
    OtpRequired,
    Throttled,
)
from authserver.platform.i18n import gettext

from . import captcha, common
from .blueprint import bp
from .common import PENDING, Page, SignedIn, now, render, see_other, signed_in
from .forms import ButtonForm, CodeForm, LoginForm, RecoveryCodeForm

CARRIED = ("aid", "next", "ui_locales")  # query parameters the login form posts back
DEVICE_COOKIE = "authserver_device"  # a device token (identity.devices), one user per browser


def _carried() -> dict[str, Any]:
    return {k: request.args[k] for k in CARRIED if request.args.get(k)}


def _allowed_accounts(client: Any) -> frozenset[str] | None:
    """A flow's client logs people into its own account only (issue 14)."""
    if client is None:
        return None
    return frozenset([client.account_id])


def _device_cookie() -> str:
    """The known-device cookie's name: `__Host-` (Secure, whole host) when served over https."""
    secure = current_app.config["SESSION_COOKIE_SECURE"]
    return ("__Host-" if secure else "") + DEVICE_COOKIE


def _finish(result: LoginResult, target: str) -> Response:
    """Every factor passed: a fresh session holding only the login, and this browser is a
    known device of the user from now on (it passes the lockout strangers cause)."""
    account_id = result.account.id if result.account is not None else None
    made_for = browser_login.fingerprint(target)  # the request this login serves
    browser_login.start_login(session, result.user, account_id, result.amr, now(), made_for)
    response = see_other(target)
    response.set_cookie(
        _device_cookie(),
        result.device_token,
        max_age=devices.LIFETIME,
        path="/",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        httponly=True,  # no script needs it; an XSS must not carry it off
        samesite="Strict",  # only our own login forms post it
    )
    return response


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response:
    """Username and password; two-step users go on to /login/code."""
    form = LoginForm()
    target = common.safe_next(request.args.get("next"))
    page = Page(
        "pages/login.html",
        form,
        {
            "action": url_for(".login", **_carried()),
            "forgot_url": _forgot(),
            "passkey_action": url_for(".login_passkey", **_carried()),
        },
    )
    if not form.validate_on_submit():
        return page.invalid()
    client = common.flow_client()
    attempt = LoginAttempt(
        username=form.username.data or "",
        password=form.password.data or "",
        account_id=common.requested_account_id(),
        ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent"),
        client_id=client.client_id if client is not None else None,
        allowed_account_ids=_allowed_accounts(client),
        allow_global=client is None or client.serves(None),
        device_token=request.cookies.get(_device_cookie()),
        browser=True,
        captcha_token=form.captcha_token.data or None,
    )
    try:
        result = password_login(attempt)
    except CaptchaRequired:
        # Past the failure threshold: the page shows the check, and the password again.
        page.context.update(captcha.widget(captcha.needed_message()))
        return page.show(400)
    except CaptchaFailed:
        page.context.update(captcha.widget(captcha.failed_message()))
        return page.show(400)
    except InvalidCredentials:
        # One message for an unknown user, a wrong password and an inactive user.
        return page.field_error(form.password, gettext("The username or password is wrong."), 401)
    except Throttled as exc:
        return page.throttled(form.password, exc)
    except EmailNotVerified:
        return page.field_error(form.password, _verify_first(), 403)
    except OtpRequired as exc:
        _start_second_step(attempt, exc, target)
        return see_other(url_for(".login_code"))
    return _finish(result, target)


def _forgot() -> str | None:
    """The forgot-password page of the login's account; a reset is looked up in an account,
    so the global sign-in page (no account) offers no link that could only fail."""
    account = common.requested_account()  # the account this form signs in to
    return url_for(".forgot_password", aid=account.id, **_ui()) if account is not None else None


def _ui() -> dict[str, Any]:
    ui = request.args.get("ui_locales")
    return {"ui_locales": ui} if ui else {}


def _verify_first() -> str:
    return gettext(
        "Your sign-in codes go to your email address, which is not confirmed yet. Open"
        " the link in the email we sent you to confirm it, then sign in again."
    )


def _start_second_step(attempt: LoginAttempt, challenge: OtpRequired, target: str) -> None:
    ui_locales = request.args.get("ui_locales") or common.next_query("ui_locales")
    session.clear()  # a new session for the new step (no fixation)
    session[PENDING] = {
        "uid": challenge.user_id,
        "gen": challenge.token_generation,
        "user": attempt.username.strip().lower(),
        "aid": attempt.account_id,
        "cid": attempt.client_id,
        "allowed": sorted(attempt.allowed_account_ids or []) or None,
        "global": attempt.allow_global,
        "amr": ["pwd"],
        "method": challenge.method,
        "pk": challenge.passkey,  # a passkey may answer (the page offers it)
        "dest": challenge.destination,
        "next": target,
        "ui": ui_locales if isinstance(ui_locales, str) else None,
        "exp": now() + current_app.config["OTP_LIFETIME"],
    }


def _pending() -> dict[str, Any] | None:
    """The login waiting for its second factor, if it has not expired."""
    data = session.get(PENDING)
    if not isinstance(data, dict) or not isinstance(data.get("exp"), int):
        return None
    if data["exp"] < now() or not isinstance(data.get("uid"), str):
        return None  # the caller restarts the login, which drops it
    return data


def _restart(pending: dict[str, Any] | None) -> Response:
    """Back to the password step (the pending step is gone), keeping where to go after."""
    session.pop(PENDING, None)
    args: dict[str, Any] = {}
    if isinstance(pending, dict):
        if pending.get("aid"):
            args["aid"] = pending["aid"]
        if pending.get("next"):
            args["next"] = pending["next"]
    return see_other(url_for(".login", **args))


def _second_attempt(pending: dict[str, Any], **codes: str | None) -> LoginAttempt:
    allowed = pending.get("allowed")
    return LoginAttempt(
        username=pending["user"],
        password="",
        account_id=pending.get("aid"),
        ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent"),
        client_id=pending.get("cid"),
        allowed_account_ids=frozenset(allowed) if allowed else None,
        allow_global=pending.get("global") is not False,
        device_token=request.cookies.get(_device_cookie()),
        browser=True,
        **codes,
    )


def _code_context(pending: dict[str, Any], notice: str | None = None) -> dict[str, Any]:
    return {
        "method": pending.get("method"),
        "passkey": pending.get("pk") is True,
        "destination": pending.get("dest"),
        "resend_form": ButtonForm(prefix="resend"),
        "notice": notice,
    }


def _second_step(page: Page, field: Any, pending: dict[str, Any], **codes: str | None) -> Response:
    try:
        result = continue_login(pending["uid"], pending["gen"], _second_attempt(pending, **codes))
    except InvalidCredentials:
        return _restart(pending)
    except InvalidOtp:
        if "recovery_code" in codes:
            message = gettext("The recovery code is wrong or was used already.")
        else:
            message = gettext("The code is wrong or expired.")
        return page.field_error(field, message, 401)
    except Throttled as exc:
        return page.throttled(field, exc)
    except OtpRequired:  # an empty code cannot get here (the form requires one)
        return _restart(pending)
    return _finish(result, common.safe_next(pending.get("next")))


@bp.route("/login/code", methods=["GET", "POST"])
def login_code() -> Response:
    """The second step: the emailed/texted code or the authenticator app's code."""
    pending = _pending()
    if pending is None:
        return _restart(session.get(PENDING))
    form = CodeForm()
    page = Page("pages/login_code.html", form, _code_context(pending))
    if not form.validate_on_submit():
        return page.invalid()
    return _second_step(page, form.code, pending, otp=form.code.data)


@bp.post("/login/code/resend")
def login_code_resend() -> Response:
    """Send a new emailed/texted code, under the token endpoint's cooldown."""
    pending = _pending()
    if pending is None:
        return _restart(session.get(PENDING))
    button = ButtonForm(prefix="resend")
    if not button.validate_on_submit():
        return see_other(url_for(".login_code"))
    form = CodeForm(formdata=None)
    try:
        continue_login(pending["uid"], pending["gen"], _second_attempt(pending))
    except OtpRequired as exc:
        if exc.sent:
            notice = gettext("We sent a new code.")
        else:
            notice = gettext(
                "A new code can be sent in %(seconds)d seconds.", seconds=exc.resend_after
            )
        return Page("pages/login_code.html", form, _code_context(pending, notice)).show()
    except InvalidCredentials:
        return _restart(pending)
    except Throttled as exc:
        return Page("pages/login_code.html", form, _code_context(pending)).throttled(form.code, exc)
    return _restart(pending)  # no second factor any more: start over


@bp.route("/login/recovery", methods=["GET", "POST"])
def login_recovery() -> Response:
    """The alternative second step: one of the user's recovery codes."""
    pending = _pending()
    if pending is None:
        return _restart(session.get(PENDING))
    form = RecoveryCodeForm()
    page = Page("pages/login_recovery.html", form)
    if not form.validate_on_submit():
        return page.invalid()
    return _second_step(page, form.recovery_code, pending, recovery_code=form.recovery_code.data)


@bp.get("/")
def home() -> Response:
    return see_other(url_for(".account"))


@bp.get("/account")
@signed_in(back=".account")
def account(me: SignedIn) -> Response:
    """Who is signed in, with the logout button; strangers are sent to the login page."""
    return render("pages/account.html", user=me.user, login=me.login, logout_form=ButtonForm())


@bp.post("/logout")
def logout() -> Response:
    """Sign out of this browser (POST only, with the CSRF token)."""
    if not ButtonForm().validate_on_submit():
        return see_other(url_for(".account"))
    aid = browser_login.account_of(session)  # the ended login's account: its sign-in page
    browser_login.end_login(session)
    return see_other(common.login_url(aid))
