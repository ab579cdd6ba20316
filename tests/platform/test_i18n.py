"""Languages: negotiation, the current locale, gettext in Python and Jinja, complete catalogs."""

from __future__ import annotations

import os
import re

import pytest
from flask import g

from authserver.platform import i18n
from authserver.platform.config import SUPPORTED_LOCALES
from authserver.platform.i18n import (
    best_request_locale,
    force_locale,
    gettext,
    lazy_gettext,
    negotiate,
    ngettext,
)

TRANSLATED = [locale for locale in SUPPORTED_LOCALES if locale != i18n.SOURCE_LOCALE]
TEMPLATES = os.path.join(i18n.ROOT, "templates")
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        (["fr-CA"], "fr"),
        (["FR_ca"], "fr"),
        (["de", "es-419", "fr"], "es"),
        ([None, "", "  ", "es"], "es"),
        (["de", "zh-Hant"], "en"),
        ([], "en"),
    ],
)
def test_negotiate_first_supported(app, candidates, expected):
    """negotiate picks the first supported language, regional tags included, else the default."""
    with app.app_context():
        assert negotiate(candidates) == expected


def test_negotiate_falls_back_to_configured_default(make_app):
    """With nothing supported, the answer is DEFAULT_LOCALE from the config."""
    app = make_app(DEFAULT_LOCALE="fr")
    with app.app_context():
        assert negotiate(["de", None]) == "fr"


@pytest.mark.parametrize(
    ("ui_locales", "accept", "account_default", "expected"),
    [
        ("de fr-CA", "es", "es", "fr"),  # ui_locales first
        ("de", "it, es;q=0.8, fr;q=0.5", "fr", "es"),  # then Accept-Language by quality
        (None, "fr;q=0, *", "es", "es"),  # q=0 and * choose nothing: the account default
        (None, None, None, "en"),  # nothing at all: the config default
    ],
)
def test_best_request_locale_order(app, ui_locales, accept, account_default, expected):
    """ui_locales, then Accept-Language, then the account default, then the config default."""
    headers = {"Accept-Language": accept} if accept else {}
    with app.test_request_context("/", headers=headers):
        assert best_request_locale(ui_locales, account_default) == expected


def test_gettext_follows_forced_locale(app):
    """gettext translates into the forced locale and English is the default outside it."""
    with app.app_context():
        assert gettext("Hello,") == "Hello,"
        with force_locale("es"):
            assert gettext("Hello,") == "Hola:"
            with force_locale("fr-CA"):
                assert gettext("Hello %(name)s,", name="Zoé") == "Bonjour Zoé,"
            assert i18n.current_locale() == "es"
        assert i18n.current_locale() == "en"


def test_force_locale_unsupported_uses_default(app):
    """Forcing an unsupported language gives the configured default, not untranslated chaos."""
    with app.app_context(), force_locale("de") as chosen:
        assert chosen == "en"
        assert gettext("Hello,") == "Hello,"


def test_g_locale_is_used_by_pages(app):
    """In a request, the HTTP layer's `g.locale` is the current locale unless one is forced."""
    with app.test_request_context("/"):
        g.locale = "fr"
        assert gettext("Hello,") == "Bonjour,"
        with force_locale("es"):
            assert gettext("Hello,") == "Hola:"


def test_ngettext_uses_each_language_plural_rule(app):
    """Plural forms come from the catalog header: French 0 is singular, Spanish 0 is plural."""
    singular = "The code expires in %(count)s minute."
    plural = "The code expires in %(count)s minutes."
    with app.app_context():
        with force_locale("fr"):
            assert ngettext(singular, plural, 0, count=0) == "Ce code expire dans 0 minute."
            assert ngettext(singular, plural, 2, count=2) == "Ce code expire dans 2 minutes."
        with force_locale("es"):
            assert ngettext(singular, plural, 0, count=0) == "El código caduca en 0 minutos."
            assert ngettext(singular, plural, 1, count=1) == "El código caduca en 1 minuto."


def test_lazy_gettext_translates_when_used(app):
    """A lazy string (a form label) is translated in the locale current when it is rendered."""
    label = lazy_gettext("Reset your password")
    with app.app_context():
        with force_locale("fr"):
            assert str(label) == "Réinitialisez votre mot de passe"
        with force_locale("es"):
            assert str(label) == "Restablece tu contraseña"


def test_jinja_trans_block_uses_current_locale_and_escapes(app):
    """{% trans %} in a template translates, and autoescaping still escapes variables."""
    with app.app_context():
        template = app.jinja_env.from_string(
            "{% autoescape true %}{% trans %}Hello {{ name }},{% endtrans %}{% endautoescape %}"
        )
        with force_locale("fr"):
            assert template.render(name="<b>") == "Bonjour &lt;b&gt;,"
        assert template.render(name="Ann") == "Hello Ann,"


@pytest.mark.parametrize("locale", TRANSLATED)
def test_catalog_entries_all_translated(locale):
    """Every msgid in the catalog has a non-fuzzy translation keeping the same placeholders."""
    catalog = i18n.read_catalog(locale)
    entries = [message for message in catalog if message.id]
    assert len(entries) >= 20
    for message in entries:
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings), f"{locale}: untranslated {ids[0]!r}"
        assert not message.fuzzy, f"{locale}: fuzzy {ids[0]!r}"
        expected = set(PLACEHOLDER.findall(" ".join(map(str, ids))))
        for string in strings:
            assert set(PLACEHOLDER.findall(str(string))) == expected, f"{locale}: {ids[0]!r}"


@pytest.mark.parametrize("locale", TRANSLATED)
def test_every_used_string_is_in_the_catalog(locale):
    """Each {% trans %} string in the templates (and gettext call in the package) is translated."""
    extracted = [message for message in i18n.extract_messages() if message.id]
    assert "Your login code" in {message.id for message in extracted}  # the extractor works
    catalog = i18n.read_catalog(locale)
    for message in extracted:
        found = catalog.get(message.id)
        assert found is not None, f"{locale}: missing {message.id!r} from {message.locations}"
        strings = found.string if isinstance(found.string, tuple) else (found.string,)
        assert all(strings) and not found.fuzzy, f"{locale}: untranslated {message.id!r}"


def _message_templates() -> list[str]:
    names = []
    for folder in ("email", "sms"):
        for name in sorted(os.listdir(os.path.join(TEMPLATES, folder))):
            if not name.startswith("_"):
                names.append(f"{folder}/{name}")
    return names


@pytest.mark.parametrize("name", _message_templates())
def test_message_templates_render_translated(app, name):
    """Each email/SMS template reads differently in es and fr than in English, line by line."""
    context = {
        "name": "Ann",
        "account_name": "Acme",
        "support_email": "help@acme.test",
        "code": "123456",
        "minutes": 5,
        "link": "https://id.acme.test/x?token=t",
        "issuer": "https://id.acme.test",
    }
    template = app.jinja_env.get_template(name)
    with app.app_context():
        english = template.render(context)
        for locale in TRANSLATED:
            with force_locale(locale):
                translated = template.render(context)
            # Lines with words that stay English are the untranslated ones.
            same = [
                line
                for line in set(english.splitlines()) & set(translated.splitlines())
                if re.search(r"[a-z]{3}", line) and "token=" not in line and line != "Acme"
            ]
            assert not same, f"{name} in {locale}: untranslated {same}"
