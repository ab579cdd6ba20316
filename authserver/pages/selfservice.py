"""The pages the emailed links open, and asking for one: forgot password, reset password,
activation, email verification and the new sign-in email's "this wasn't me".

A GET only shows a form (mail scanners open links; they must not burn the token); the
token is spent by the POST, through the same use cases as the API. The link's first GET
moves the token into the signed session and redirects to the same page without it, so
the token is not left in the address bar, the history or any later request's URL. A
reset neither logs in nor switches two-step login off.
"""

from __future__ import annotations

from typing import Any

from flask import request, session, url_for
from werkzeug.wrappers import Response

from authserver.identity import known_devices, verification
from authserver.platform import captcha as captcha_check
from authserver.platform.errors import CaptchaFailed, CaptchaRequired, ValidationFailed
from authserver.platform.i18n import gettext
from authserver.platform.models import User

from . import captcha, common
from .blueprint import bp
from .common import Page, render, see_other
from .forms import ButtonForm, ForgotPasswordForm, NewPasswordFields

LINK = "emailed_link"  # the session key of the emailed link's token: {"page", "token"}
TOKEN_MAX = 128  # longer than any token we mail

PASSWORD_RULES = {  # rules.check_password codes -> what the person reads
    "too_short": lambda: gettext("Use at least 8 characters."),
    "too_long": lambda: gettext("This is too long."),
    "too_common": lambda: gettext(
        "This password is too common or too close to your username or email: choose another."
    ),
}


@bp.route("/forgot-password", methods=["GET", "POST"])
def forgot_password() -> Response:
    """Ask for a reset link by username or email address; the answer never says whether
    the user exists."""
    account = common.page_account()
    if account is None:
        return common.error_page(
            404, gettext("Open this page from the sign-in page of the app you use.")
        )
    form = ForgotPasswordForm()
    action = url_for(".forgot_password", aid=account.id, **_ui())
    back = url_for(".login", aid=account.id, **_ui())
    page = Page("pages/forgot_password.html", form, {"action": action, "login_url": back})
    if captcha_check.enabled():  # a reset request always needs the check then
        page.context.update(captcha.widget())
    if not form.validate_on_submit():
        return page.invalid()
    try:
        verification.request_password_reset(
            account,
            form.username.data,
            locale=common.current_page_locale(),
            ip=request.remote_addr,
            captcha_token=form.captcha_token.data or None,
            widget=True,
        )
    except (CaptchaRequired, CaptchaFailed):
        page.context.update(captcha.widget(captcha.failed_message()))
        return page.show(400)
    return render(
        "pages/message.html",
        title=gettext("Check your email"),
        message=gettext(
            "If there is an account with this username or email address, we sent a link"
            " to choose a new password to its email address. The link works for 24 hours."
        ),
        login_url=url_for(".login", aid=account.id),
    )


def _ui() -> dict[str, Any]:
    ui = request.args.get("ui_locales")
    return {"ui_locales": ui} if ui else {}


def _link_args() -> dict[str, Any]:
    """What an emailed link's page keeps in its URL: the language and the account (`aid`,
    so its error page's sign-in link is that account's)."""
    aid = request.args.get("aid")
    return {**_ui(), **({"aid": aid[:64]} if aid else {})}


def _token_out_of_url() -> Response | None:
    """The link's first GET: keep its token in the session, send the browser to the page
    without it (its URL is what access logs, the history and the Referer would hold)."""
    token = request.args.get("token")
    if request.method != "GET" or token is None:
        return None
    session[LINK] = {"page": request.endpoint, "token": token[:TOKEN_MAX]}
    response = see_other(url_for(str(request.endpoint), **_link_args()))
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _link_token() -> str | None:
    """The token the emailed link of this page left in the session, if any."""
    link = session.get(LINK)
    if not isinstance(link, dict) or link.get("page") != request.endpoint:
        return None
    token = link.get("token")
    return token if isinstance(token, str) and token else None


def _token_or_answer() -> str | Response:
    """The emailed link's token, from the session; on the link's first GET instead the
    redirect that moves it out of the URL, and without one the invalid-link page."""
    moved = _token_out_of_url()
    if moved is not None:
        return moved
    token = _link_token()
    return _bad_link() if token is None else token


def _new_password(endpoint: str, template_title: str, done: str) -> Response:
    token = _token_or_answer()
    if isinstance(token, Response):
        return token
    if request.method == "GET" and not verification.reset_link_works(token):
        return _bad_link()  # no form to fill in for a link that can only fail (not spent)
    form = NewPasswordFields()
    page = Page(
        "pages/new_password.html",
        form,
        {"action": url_for(endpoint, **_link_args()), "title": template_title},
    )
    if not form.validate_on_submit():
        return page.invalid()
    try:
        user = verification.reset_password(token, form.password.data, form.confirmation.data)
    except ValidationFailed as exc:
        if exc.code in PASSWORD_RULES:
            return page.field_error(form.password, PASSWORD_RULES[exc.code](), 422)
        if exc.code == "confirmation_mismatch":
            return page.field_error(
                form.confirmation, gettext("The two passwords are not the same."), 422
            )
        return _bad_link()
    session.pop(LINK, None)
    # No login here: the person signs in with the new password (and their second factor).
    return render(
        "pages/message.html",
        title=done,
        message=gettext("You can now sign in with your new password."),
        login_url=_login_url(user),
    )


def _login_url(user: User) -> str:
    return url_for(".login", aid=user.account_id) if user.account_id else url_for(".login")


def _bad_link() -> Response:
    session.pop(LINK, None)
    return common.error_page(
        400,
        gettext(
            "This link is invalid, expired or already used. Ask for a new one from the"
            " sign-in page."
        ),
    )


@bp.route("/reset-password", methods=["GET", "POST"])
def reset_password() -> Response:
    """The emailed reset link: choose a new password (twice)."""
    return _new_password(
        ".reset_password", gettext("Choose a new password"), gettext("Your password was changed")
    )


@bp.route("/activate", methods=["GET", "POST"])
def activate() -> Response:
    """The invitation link: choose a password, which activates the user."""
    return _new_password(
        ".activate", gettext("Choose your password"), gettext("Your account is ready")
    )


@bp.route("/verify-email", methods=["GET", "POST"])
def verify_email() -> Response:
    """The verification link: a button that verifies (the GET changes nothing)."""
    token = _token_or_answer()
    if isinstance(token, Response):
        return token
    if request.method == "GET" and not verification.verification_link_works(token):
        return _bad_link()
    form = ButtonForm()
    action = url_for(".verify_email", **_link_args())
    page = Page("pages/verify_email.html", form, {"action": action})
    if not form.validate_on_submit():
        return page.invalid()
    try:
        user = verification.verify_email(token)
    except ValidationFailed:
        return _bad_link()
    session.pop(LINK, None)
    return render(
        "pages/message.html",
        title=gettext("Email address verified"),
        message=gettext("Thank you: your email address is verified."),
        login_url=_login_url(user),
    )


@bp.route("/not-me", methods=["GET", "POST"])
def not_me() -> Response:
    """The new sign-in email's "this wasn't me" link: a button that signs the user out
    everywhere and mails a reset link (the GET changes nothing); it works once."""
    token = _token_or_answer()
    if isinstance(token, Response):
        return token
    if request.method == "GET" and not known_devices.report_link_works(token):
        return _bad_link()
    form = ButtonForm()
    page = Page("pages/not_me.html", form, {"action": url_for(".not_me", **_link_args())})
    if not form.validate_on_submit():
        return page.invalid()
    try:
        user = known_devices.report(token)
    except ValidationFailed:
        return _bad_link()
    session.pop(LINK, None)
    return render(
        "pages/message.html",
        title=gettext("You were signed out everywhere"),
        message=gettext(
            "Every device and app signed in to your account was signed out. We sent you an"
            " email with a link to choose a new password: open it now."
        ),
        login_url=_login_url(user),
    )
