"""The hosted pages' forms (Flask-WTF): fields, labels and the input limits they enforce.

Every form carries the session-bound CSRF token; messages are lazy gettext strings, so
they read in the page's language. Limits match the domain's (login.USERNAME_MAX...).
"""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Optional

from authserver.identity.login import PASSWORD_MAX, USERNAME_MAX
from authserver.identity.passkeys import NAME_MAX, RESPONSE_MAX
from authserver.identity.twofactor import OTP_MAX, RECOVERY_CODE_MAX
from authserver.platform.captcha import TOKEN_MAX as CAPTCHA_TOKEN_MAX
from authserver.platform.i18n import lazy_gettext

REQUIRED = lazy_gettext("This field is required.")
TOO_LONG = lazy_gettext("This is too long.")


def password_field(label: Any) -> PasswordField:
    """A required password input, capped at the length the login policy accepts."""
    return PasswordField(
        label, validators=[DataRequired(REQUIRED), Length(max=PASSWORD_MAX, message=TOO_LONG)]
    )


class LoginForm(FlaskForm):
    username = StringField(
        lazy_gettext("Username"),
        validators=[DataRequired(REQUIRED), Length(max=USERNAME_MAX, message=TOO_LONG)],
    )
    password = password_field(lazy_gettext("Password"))
    # Filled by static/captcha.js when the page shows the proof-of-work check.
    captcha_token = HiddenField(validators=[Length(max=CAPTCHA_TOKEN_MAX)])


class CodeForm(FlaskForm):
    code = StringField(
        lazy_gettext("Verification code"),
        validators=[DataRequired(REQUIRED), Length(max=OTP_MAX, message=TOO_LONG)],
    )


class RecoveryCodeForm(FlaskForm):
    recovery_code = StringField(
        lazy_gettext("Recovery code"),
        validators=[DataRequired(REQUIRED), Length(max=RECOVERY_CODE_MAX, message=TOO_LONG)],
    )


class ButtonForm(FlaskForm):
    """A form that is only a button (logout, send a new code): the CSRF token is its content."""


class ForgotPasswordForm(FlaskForm):
    username = StringField(
        lazy_gettext("Username or email"),
        validators=[DataRequired(REQUIRED), Length(max=USERNAME_MAX, message=TOO_LONG)],
    )
    captcha_token = HiddenField(validators=[Length(max=CAPTCHA_TOKEN_MAX)])


class NewPasswordFields(FlaskForm):
    """A new password, typed twice (templates place the fields by name)."""

    password = password_field(lazy_gettext("New password"))
    confirmation = PasswordField(
        lazy_gettext("New password again"),
        validators=[
            DataRequired(REQUIRED),
            EqualTo("password", message=lazy_gettext("The two passwords are not the same.")),
        ],
    )


# --- security settings ----------------------------------------------------------------


class ChangePasswordForm(NewPasswordFields):
    current_password = password_field(lazy_gettext("Current password"))


class ProofForm(FlaskForm):
    """The password, and for a factor already on a code or a recovery code (either one)."""

    password = password_field(lazy_gettext("Password"))
    code = StringField(
        lazy_gettext("Verification code"),
        validators=[Optional(), Length(max=OTP_MAX, message=TOO_LONG)],
    )
    recovery_code = StringField(
        lazy_gettext("Recovery code"),
        validators=[Optional(), Length(max=RECOVERY_CODE_MAX, message=TOO_LONG)],
    )


class PasskeyForm(FlaskForm):
    """A new passkey: its name, and the browser's answer that the page's script fills in."""

    name = StringField(
        lazy_gettext("Name of the passkey"),
        validators=[DataRequired(REQUIRED), Length(max=NAME_MAX, message=TOO_LONG)],
    )
    credential = HiddenField(validators=[Length(max=RESPONSE_MAX, message=TOO_LONG)])


class PasskeyNameForm(FlaskForm):
    name = StringField(
        lazy_gettext("New name"),
        validators=[DataRequired(REQUIRED), Length(max=NAME_MAX, message=TOO_LONG)],
    )


class PasskeyAnswerForm(FlaskForm):
    """A sign-in with a passkey: the browser's answer, filled in by the page's script."""

    credential = HiddenField(
        validators=[DataRequired(REQUIRED), Length(max=RESPONSE_MAX, message=TOO_LONG)]
    )
