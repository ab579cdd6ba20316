"""The hosted pages' proof-of-work CAPTCHA: the challenge its widget (static/captcha.js)
solves, and the widget's context for the pages that show it (login past the failure
threshold, the forgotten-password form whenever a verifier is configured)."""

from __future__ import annotations

from typing import Any

from flask import jsonify, url_for
from werkzeug.wrappers import Response

from authserver.platform import captcha
from authserver.platform.i18n import gettext

from .blueprint import bp


@bp.get("/captcha/challenge")
def captcha_challenge() -> Response:
    """A fresh signed challenge (ALTCHA v1 JSON); 404 while no verifier is configured."""
    if not captcha.enabled():
        return Response(status=404)
    response = jsonify(captcha.new_challenge())
    response.headers["Cache-Control"] = "no-store"
    return response


def widget(message: str | None = None) -> dict[str, Any]:
    """The template context of the check: where its challenge is, what it says."""
    return {
        "captcha": {
            "challenge_url": url_for(".captcha_challenge"),
            "message": message,
            "working": gettext("Checking that you are a person…"),
            "done": gettext("Check done: you can continue."),
            "failed": gettext("The check did not work. Reload the page and try again."),
            "noscript": gettext("This check needs JavaScript: turn it on, then reload the page."),
        }
    }


def needed_message() -> str:
    return gettext(
        "There were many failed sign-ins. Let the check below finish, then sign in again."
    )


def failed_message() -> str:
    return gettext("The check did not work. Let it run again, then send the form.")
