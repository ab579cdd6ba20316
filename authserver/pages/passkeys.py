"""Passkey pages: sign in with a passkey (passwordless on /login, or as the second step),
and the security page's passkeys (add after a fresh proof, rename, remove).

The WebAuthn calls run in `static/passkeys.js` (no inline script: the CSP allows only our
own files). It fetches a ceremony's options from a `.../options` POST (JSON, CSRF token in
the form data), runs navigator.credentials.create/get, puts the answer in the form's hidden
`credential` field and submits the form; everything else is an ordinary form POST. Without
script the buttons stay hidden and the password path works as before; on an IP-address
issuer (browsers refuse WebAuthn there) the pages say why instead of offering them.
"""

from __future__ import annotations

from typing import Any

from flask import Response, flash, request, session, url_for
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response as BaseResponse

from authserver.identity import browser_login, passkeys
from authserver.identity.login import LoginAttempt, passkey_login
from authserver.platform.errors import (
    Conflict,
    InvalidCredentials,
    InvalidPasskey,
    Throttled,
    ValidationFailed,
)
from authserver.platform.errors import NotFound as DomainNotFound
from authserver.platform.extensions import db
from authserver.platform.i18n import gettext
from authserver.platform.models import AuthMethod, Passkey, User
from authserver.platform.web import no_store

from . import common, signin
from .blueprint import bp
from .common import Page, SignedIn, see_other, signed_in
from .forms import (
    ButtonForm,
    CodeForm,
    LoginForm,
    PasskeyAnswerForm,
    PasskeyForm,
    PasskeyNameForm,
    ProofForm,
)
from .security import _code_message


def _options(make: Any) -> Response:
    """A ceremony's options as JSON (never cached); 404 where passkeys cannot work."""
    if not passkeys.available():
        return common.render_http_error(NotFound())
    response = Response(make(), mimetype="application/json")
    return no_store(response)


def _not_verified() -> str:
    return gettext("The passkey could not be used. Try again, or sign in another way.")


# --- passwordless sign-in -----------------------------------------------------------------


@bp.post("/login/passkey/options")
def login_passkey_options() -> BaseResponse:
    """A challenge for any discoverable passkey (rate-limited per IP)."""
    try:
        return _options(lambda: passkeys.start_authentication(None, request.remote_addr))
    except Throttled as exc:
        return common.render_domain_error(exc)


@bp.post("/login/passkey")
def login_passkey() -> BaseResponse:
    """The passkey's answer: a complete (multi-factor) login for its user in the `aid`
    account, like a password plus a second factor."""
    answer = PasskeyAnswerForm()
    form = LoginForm(formdata=None)
    target = common.safe_next(request.args.get("next"))
    page = Page(
        "pages/login.html",
        form,
        {
            "action": url_for(".login", **signin._carried()),
            "forgot_url": signin._forgot(),
            "passkey_action": url_for(".login_passkey", **signin._carried()),
            # No autofill offer right after a refused passkey: the browser would offer
            # the same one again at once.
            "passkey_autofill": False,
        },
    )
    if not answer.validate_on_submit():
        return page.field_error(form.username, _not_verified(), 422)
    client = common.flow_client()
    attempt = LoginAttempt(
        username="",
        password="",
        account_id=common.requested_account_id(),
        ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent"),
        client_id=client.client_id if client is not None else None,
        allowed_account_ids=signin._allowed_accounts(client),
        allow_global=client is None or client.serves(None),
        passkey=answer.credential.data,
    )
    try:
        result = passkey_login(attempt)
    except (InvalidPasskey, InvalidCredentials):
        return page.field_error(form.username, _not_verified(), 401)
    except Throttled as exc:
        return page.throttled(form.username, exc)
    return signin._finish(result, target)


# --- the second step ------------------------------------------------------------------------


@bp.post("/login/code/passkey/options")
def login_code_passkey_options() -> BaseResponse:
    """A challenge for the passkeys of the user who passed the password step."""
    pending = signin._pending()
    user = db.session.get(User, pending["uid"]) if pending else None
    if user is None:
        return common.render_http_error(NotFound())
    return _options(lambda: passkeys.start_authentication(user))


@bp.post("/login/code/passkey")
def login_code_passkey() -> BaseResponse:
    """The second step answered with a passkey instead of a code."""
    pending = signin._pending()
    if pending is None:
        return signin._restart(session.get(common.PENDING))
    answer = PasskeyAnswerForm()
    form = CodeForm(formdata=None)
    page = Page("pages/login_code.html", form, signin._code_context(pending))
    if not answer.validate_on_submit():
        return page.field_error(form.code, _not_verified(), 422)
    try:
        return signin._second_step(page, form.code, pending, passkey=answer.credential.data)
    except InvalidPasskey:
        return page.field_error(form.code, _not_verified(), 401)


# --- the security page's passkeys --------------------------------------------------------


def _proof_values(form: ProofForm) -> dict[str, str | None]:
    return {
        "password": form.password.data,
        "otp": (form.code.data or "").strip() or None,
        "recovery_code": (form.recovery_code.data or "").strip() or None,
    }


def _proof_message(error: ValidationFailed) -> str:
    if error.code == "too_many_passkeys":
        return gettext("You have as many passkeys as allowed. Remove one first.")
    if error.code == "invalid_name":
        return gettext("A name is at most 64 characters, without control characters.")
    return _code_message(error)  # the other proof forms' messages


@bp.route("/account/security/passkeys/add", methods=["GET", "POST"])
@signed_in
def passkey_add(me: SignedIn) -> BaseResponse:
    """Step 1: prove it is you (the password, and a code when a code method is on)."""
    form = ProofForm()
    page = Page(
        "pages/passkey_add.html",
        form,
        {"user": me.user, "send_form": ButtonForm(prefix="send")},
    )
    if not passkeys.available():
        return page.show()
    if not form.validate_on_submit():
        return page.invalid()
    try:
        passkeys.prove_for_enrolment(me.user, **_proof_values(form))
    except Throttled as exc:
        return page.throttled(form.password, exc)
    except ValidationFailed as exc:
        field = common.form_field(form, exc, default=form.password)
        return page.field_error(field, _proof_message(exc), 422)
    return see_other(url_for(".passkey_new"))


@bp.post("/account/security/passkeys/options")
@signed_in
def passkey_options(me: SignedIn) -> BaseResponse:
    """The registration options (after the proof); 404 without one."""
    if not passkeys.enrolment_proven(me.user):
        return common.render_http_error(NotFound())
    try:
        return _options(lambda: passkeys.start_registration(me.user))
    except ValidationFailed:
        return common.render_http_error(NotFound())


@bp.route("/account/security/passkeys/new", methods=["GET", "POST"])
@signed_in
def passkey_new(me: SignedIn) -> BaseResponse:
    """Step 2: name the passkey and let the browser make it."""
    if not passkeys.enrolment_proven(me.user):
        return see_other(url_for(".passkey_add"))
    form = PasskeyForm()
    if request.method == "GET" and not form.name.data:
        form.name.data = gettext("My passkey")
    page = Page("pages/passkey_new.html", form)
    if not form.validate_on_submit():
        return page.invalid()
    try:
        passkeys.finish_registration(me.user, form.credential.data, form.name.data)
    except InvalidPasskey:
        return page.field_error(form.name, _not_made(), 422)
    except Conflict:
        return page.field_error(form.name, gettext("This passkey is registered already."), 409)
    except ValidationFailed as exc:
        if exc.code == "proof_required":
            return see_other(url_for(".passkey_add"))
        return page.field_error(form.name, _proof_message(exc), 422)
    browser_login.keep_login(session, me.user)  # a first factor ended every other login
    flash(gettext("Your passkey was added."))
    return see_other(url_for(".security"))


def _not_made() -> str:
    return gettext("The passkey was not made. Try again.")


def _own_passkey(me: SignedIn, passkey_id: str) -> Passkey | None:
    try:
        return passkeys.get_passkey(me.user.id, passkey_id)
    except DomainNotFound:  # unknown, or another user's: the page's 404
        return None


@bp.post("/account/security/passkeys/<passkey_id>/rename")
@signed_in
def passkey_rename(me: SignedIn, passkey_id: str) -> BaseResponse:
    """Give a passkey another name."""
    passkey = _own_passkey(me, passkey_id)
    if passkey is None:
        return common.render_http_error(NotFound())
    form = PasskeyNameForm()
    if not form.validate_on_submit():
        flash(gettext("A name is at most 64 characters, without control characters."))
        return see_other(url_for(".security"))
    try:
        passkeys.rename(passkey, form.name.data)
    except ValidationFailed:
        flash(gettext("A name is at most 64 characters, without control characters."))
        return see_other(url_for(".security"))
    flash(gettext("The passkey was renamed."))
    return see_other(url_for(".security"))


@bp.route("/account/security/passkeys/<passkey_id>/remove", methods=["GET", "POST"])
@signed_in
def passkey_remove(me: SignedIn, passkey_id: str) -> BaseResponse:
    """Remove a passkey, after the password (and a code when a code method is on)."""
    passkey = _own_passkey(me, passkey_id)
    if passkey is None:
        return common.render_http_error(NotFound())
    form = ProofForm()
    page = Page(
        "pages/passkey_remove.html",
        form,
        {
            "user": me.user,
            "passkey": passkey,
            "send_form": ButtonForm(prefix="send"),
            "last": not _other_factor(me.user, passkey.id),
        },
    )
    if not form.validate_on_submit():
        return page.invalid()
    try:
        off = passkeys.remove_with_proof(me.user, passkey.id, **_proof_values(form))
    except Throttled as exc:
        return page.throttled(form.password, exc)
    except ValidationFailed as exc:
        field = common.form_field(form, exc, default=form.password)
        return page.field_error(field, _proof_message(exc), 422)
    if off:
        browser_login.keep_login(session, me.user)  # every other login of the user ended
        flash(gettext("The passkey was removed. Two-step login is off."))
    else:
        flash(gettext("The passkey was removed."))
    return see_other(url_for(".security"))


def _other_factor(user: User, passkey_id: str) -> bool:
    """Whether the user keeps a second factor once this passkey is gone."""
    if user.auth_method != AuthMethod.SIMPLE:
        return True
    return any(p.id != passkey_id for p in passkeys.list_passkeys(user.id))
