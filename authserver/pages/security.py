"""The signed-in security pages under /account/security: change password, TOTP setup with
its QR code, recovery codes (shown once, download, print), disable two-step login, app
consents, "sign out everywhere" and the login history.

Each view parses a form, calls one use case (verification, twofactor, consents, accounts)
and renders; the proofs, throttles and token revocation are the domain's. Forms that
change something answer with a 303 (POST-redirect-GET) and a notice, except the two
answers that carry a secret shown once (new recovery codes): those are the POST's own
no-store response, so nothing has to keep the codes to show them again.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import flash, request, session, url_for
from markupsafe import Markup
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response

from authserver.identity import (
    accounts,
    browser_login,
    consents,
    passkeys,
    twofactor,
    verification,
)
from authserver.identity.consents import scope_words
from authserver.platform.errors import EmailNotVerified, Throttled, ValidationFailed
from authserver.platform.extensions import db
from authserver.platform.i18n import gettext
from authserver.platform.models import Account, AuthMethod, LoginMethod, User

from . import common
from .blueprint import bp
from .common import Page, SignedIn, render, see_other, signed_in
from .forms import ButtonForm, ChangePasswordForm, CodeForm, ProofForm
from .selfservice import PASSWORD_RULES

HISTORY_PAGE_SIZE = 20
RECOVERY_CODE_RE = re.compile(r"^[a-z0-9]{4}(-[a-z0-9]{4}){3}$")


def _login_url(login: browser_login.BrowserLogin) -> str:
    return url_for(".login", aid=login.account_id) if login.account_id else url_for(".login")


def _done(message: str) -> Response:
    flash(message)
    return see_other(url_for(".security"))


def _signed_out(login: browser_login.BrowserLogin, message: str) -> Response:
    """This browser's login is over too: say why on the login page."""
    browser_login.end_login(session)
    flash(message)
    return see_other(_login_url(login))


def _code_message(error: ValidationFailed) -> str:
    messages: dict[str, Callable[[], str]] = {
        "invalid_format": lambda: gettext("A code is 6 digits."),
        "invalid_otp": lambda: gettext("The code is wrong or expired."),
        "invalid_recovery_code": lambda: gettext("The recovery code is wrong or was used already."),
        "invalid_password": lambda: gettext("The password is wrong."),
        "required": lambda: gettext("Enter a code from your authenticator app or a recovery code."),
        "conflicting": lambda: gettext("Give a code or a recovery code, not both."),
        "no_pending_setup": lambda: gettext(
            "This setup expired or had too many wrong codes. Start again."
        ),
    }
    make = messages.get(error.code)
    return make() if make else gettext("The request could not be understood.")


# --- overview -----------------------------------------------------------------------


@bp.get("/account/security")
@signed_in
def security(me: SignedIn) -> Response:
    """Everything in one place: password, two-step login, apps, sign out, history."""
    words = scope_words()
    apps = [
        {
            "id": client.id,
            "name": client.name,
            "scopes": [words[s] for s in consent.scope.split() if s in words],
            "when": consent.updated_at,
        }
        for consent, client in consents.list_consents(me.user.id)
    ]
    recent, _ = accounts.login_history(user_id=me.user.id, page=1, size=5)
    return render(
        "pages/security.html",
        user=me.user,
        apps=apps,
        recent=recent,
        button=ButtonForm(),
        method_words=method_words(),
        passkeys=passkeys.list_passkeys(me.user.id),
        passkeys_max=passkeys.MAX_PASSKEYS,
    )


# --- password -----------------------------------------------------------------------


@bp.route("/account/security/password", methods=["GET", "POST"])
@signed_in
def change_password(me: SignedIn) -> Response:
    """Current password and the new one twice; success signs out everywhere."""
    form = ChangePasswordForm()
    page = Page("pages/change_password.html", form)
    if not form.validate_on_submit():
        return page.invalid()
    try:
        verification.change_password(
            me.user, form.current_password.data, form.password.data, form.confirmation.data
        )
    except Throttled as exc:
        return page.throttled(form.current_password, exc)
    except ValidationFailed as exc:
        if exc.code == "invalid_password":
            message = gettext("The current password is not right.")
            return page.field_error(form.current_password, message, 422)
        if exc.code == "confirmation_mismatch":
            message = gettext("The two passwords are not the same.")
            return page.field_error(form.confirmation, message, 422)
        rule = PASSWORD_RULES.get(exc.code)
        message = rule() if rule else gettext("The request could not be understood.")
        return page.field_error(form.password, message, 422)
    return _signed_out(
        me.login,
        gettext(
            "Your password was changed and you were signed out everywhere. Sign in with"
            " your new password."
        ),
    )


# --- two-step login -------------------------------------------------------------------


def _proof_page(template: str, form: ProofForm, user: User) -> Page:
    return Page(template, form, {"user": user, "send_form": ButtonForm(prefix="send")})


def _proof_error(page: Page, form: ProofForm, error: ValidationFailed) -> Response:
    field = common.form_field(form, error, default=form.password)
    return page.field_error(field, _code_message(error), 422)


def _proof_values(form: ProofForm) -> dict[str, str | None]:
    return {
        "password": form.password.data,
        "otp": (form.code.data or "").strip() or None,
        "recovery_code": (form.recovery_code.data or "").strip() or None,
    }


@bp.route("/account/security/totp", methods=["GET", "POST"])
@signed_in
def totp_start(me: SignedIn) -> Response:
    """Step 1 of the setup: prove it is you (password, and the current factor if any)."""
    form = ProofForm()
    page = _proof_page("pages/totp_start.html", form, me.user)
    if not form.validate_on_submit():
        return page.invalid()
    values = _proof_values(form)
    if me.user.auth_method != AuthMethod.TFA_TOTP:
        values.update(otp=None, recovery_code=None)  # only a factor being replaced is asked
    try:
        twofactor.start_totp_setup(me.user, **values)
    except Throttled as exc:
        return page.throttled(form.password, exc)
    except ValidationFailed as exc:
        return _proof_error(page, form, exc)
    return see_other(url_for(".totp_confirm"))


@bp.route("/account/security/totp/confirm", methods=["GET", "POST"])
@signed_in
def totp_confirm(me: SignedIn) -> Response:
    """Step 2: the QR code and the secret in text, confirmed by a code from the app."""
    setup = twofactor.pending_totp_setup(me.user)
    if setup is None:
        flash(gettext("This setup expired or had too many wrong codes. Start again."))
        return see_other(url_for(".totp_start"))
    form = CodeForm()
    page = Page(
        "pages/totp_confirm.html",
        form,
        # The SVG is our own qrcode output (paths only), not text anyone typed.
        {"qr_svg": Markup(setup.qr_code_svg), "secret": _grouped(setup.secret)},  # noqa: S704
    )
    if not form.validate_on_submit():
        return page.invalid()
    try:
        codes = twofactor.confirm_totp_setup(me.user, form.code.data)
    except ValidationFailed as exc:
        if exc.code == "no_pending_setup":
            flash(_code_message(exc))
            return see_other(url_for(".totp_start"))
        return page.field_error(form.code, _code_message(exc), 422)
    browser_login.keep_login(session, me.user)  # every other login of the user ended
    return _recovery_codes_page(codes, gettext("Two-step login is on"))


def _grouped(secret: str) -> str:
    """The base32 secret in groups of four, easier to type into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def _recovery_codes_page(codes: list[str], title: str) -> Response:
    """The new recovery codes: this response is the only time they are shown."""
    return render(
        "pages/recovery_codes.html",
        title=title,
        codes=codes,
        download_form=ButtonForm(prefix="download"),
    )


@bp.route("/account/security/recovery-codes", methods=["GET", "POST"])
@signed_in
def recovery_codes(me: SignedIn) -> Response:
    """New recovery codes for a code from the authenticator app; the old ones die."""
    if me.user.auth_method != AuthMethod.TFA_TOTP:
        return see_other(url_for(".security"))
    form = CodeForm()
    page = Page("pages/recovery_codes_renew.html", form)
    if not form.validate_on_submit():
        return page.invalid()
    try:
        codes = twofactor.renew_recovery_codes(me.user, otp=form.code.data)
    except Throttled as exc:
        return page.throttled(form.code, exc)
    except ValidationFailed as exc:
        return page.field_error(form.code, _code_message(exc), 422)
    return _recovery_codes_page(codes, gettext("New recovery codes"))


@bp.post("/account/security/recovery-codes/download")
@signed_in
def recovery_codes_download(me: SignedIn) -> Response:
    """The codes the page just showed, posted back, as a text file to keep.

    The server keeps no readable copy of the codes, so the page sends them back; only
    well-formed codes are written, so the file cannot carry anything else.
    """
    if not ButtonForm(prefix="download").validate_on_submit():
        return common.render_http_error(NotFound())
    codes = [c for c in request.form.getlist("code")[:20] if RECOVERY_CODE_RE.match(c)]
    heading = gettext("Recovery codes for %(name)s", name=me.user.username)
    note = gettext("Each code works once, in place of a code from your authenticator app.")
    text = "\n".join([heading, note, "", *codes, ""])
    return Response(
        text,
        mimetype="text/plain",
        headers={"Content-Disposition": 'attachment; filename="recovery-codes.txt"'},
    )


@bp.route("/account/security/tfa/disable", methods=["GET", "POST"])
@signed_in
def tfa_disable(me: SignedIn) -> Response:
    """Turn two-step login off: the password and a code (or a recovery code)."""
    if me.user.auth_method == AuthMethod.SIMPLE:
        return see_other(url_for(".security"))
    form = ProofForm()
    page = _proof_page("pages/tfa_disable.html", form, me.user)
    if not form.validate_on_submit():
        return page.invalid()
    try:
        proof = _proof_values(form)
        twofactor.disable_tfa(
            me.user,
            password=proof["password"],
            otp=proof["otp"],
            recovery_code=proof["recovery_code"],
        )
    except Throttled as exc:
        return page.throttled(form.password, exc)
    except ValidationFailed as exc:
        return _proof_error(page, form, exc)
    browser_login.keep_login(session, me.user)  # every other login of the user ended
    return _done(gettext("Two-step login is off."))


@bp.post("/account/security/tfa/send-code")
@signed_in
def tfa_send_code(me: SignedIn) -> Response:
    """Email or text a code (the login's cooldown applies) for a user whose factor is sent."""
    # The proof page that asked for the code (a local path only), else turning two-step off.
    back = common.safe_next(request.form.get("next"), default=url_for(".tfa_disable"))
    if ButtonForm(prefix="send").validate_on_submit():
        aid = me.login.account_id
        account = db.session.get(Account, aid) if aid else None
        try:
            challenge = twofactor.start_challenge(me.user, account)
        except EmailNotVerified:
            flash(gettext("Confirm your email address first: no code is sent to it until then."))
            return see_other(back)
        if challenge.sent:
            flash(gettext("We sent a new code."))
        elif challenge.resend_after:
            flash(
                gettext(
                    "A new code can be sent in %(seconds)d seconds.",
                    seconds=challenge.resend_after,
                )
            )
    return see_other(back)


# --- apps, sessions, history ------------------------------------------------------------


@bp.post("/account/security/apps/<client_pk>/revoke")
@signed_in
def revoke_consent(me: SignedIn, client_pk: str) -> Response:
    """Forget the user's "yes" to an app and end its tokens; 404 for an app the user never
    allowed."""
    if not ButtonForm().validate_on_submit():
        return common.render_http_error(NotFound())
    if len(client_pk) > 64 or not consents.revoke(me.user.id, client_pk):
        return common.render_http_error(NotFound())
    return _done(gettext("The app no longer has access. It will ask again next time."))


@bp.post("/account/security/sign-out-everywhere")
@signed_in
def sign_out_everywhere(me: SignedIn) -> Response:
    """End every login of the user: apps' tokens, other browsers and this one."""
    if not ButtonForm().validate_on_submit():
        return see_other(url_for(".security"))
    accounts.sign_out_everywhere(me.user)
    return _signed_out(me.login, gettext("You were signed out on every device and app."))


def method_words() -> dict[str, str]:
    """Login history's method parts (login.METHOD_NAMES, and refresh) in words."""
    return {
        LoginMethod.PASSWORD: gettext("Password"),
        LoginMethod.OTP: gettext("Code"),
        LoginMethod.SMS: gettext("Text message code"),
        LoginMethod.RECOVERY_CODE: gettext("Recovery code"),
        LoginMethod.PASSKEY: gettext("Passkey"),
        LoginMethod.REFRESH: gettext("App session renewed"),
    }


@bp.get("/account/security/history")
@signed_in
def login_history(me: SignedIn) -> Response:
    """The user's sign-ins, successful or not, newest first, a page at a time."""
    number = request.args.get("page", "1")
    page = int(number) if number.isdigit() and 0 < len(number) < 7 else 1
    records, total = accounts.login_history(
        user_id=me.user.id, page=max(page, 1), size=HISTORY_PAGE_SIZE
    )
    pages = max((total + HISTORY_PAGE_SIZE - 1) // HISTORY_PAGE_SIZE, 1)
    return render(
        "pages/login_history.html",
        records=records,
        page=page,
        pages=pages,
        method_words=method_words(),
    )
