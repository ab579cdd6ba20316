"""Languages: gettext catalogs compiled in memory from `translations/<lang>/LC_MESSAGES/*.po`,
the current locale (a contextvar, or `g.locale` set by the HTTP layer), and negotiation.

English is the source language. `python -m authserver.platform.i18n` merges new msgids from the
templates and the package into the .po files (then translate the empty msgstr entries).
"""

from __future__ import annotations

import contextlib
import functools
import gettext as _gettext
import io
import os
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from babel.support import LazyProxy, Translations
from flask import Flask, current_app, g, has_app_context, request

from authserver.platform.config import SUPPORTED_LOCALES

SOURCE_LOCALE = "en"
TRANSLATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "translations")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# What `extract_messages` reads: our gettext callables in Python, {% trans %} in templates.
KEYWORDS = {"gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "_": None}
METHOD_MAP = [("authserver/**.py", "python"), ("templates/**", "jinja2")]
OPTIONS_MAP = {"templates/**": {"trimmed": "true"}}

_locale: ContextVar[str | None] = ContextVar("authserver_locale", default=None)


@functools.cache
def catalogs() -> dict[str, _gettext.NullTranslations]:
    """Every supported locale's translations, compiled from the .po files once per process."""
    result: dict[str, _gettext.NullTranslations] = {SOURCE_LOCALE: _gettext.NullTranslations()}
    for locale in SUPPORTED_LOCALES:
        if locale != SOURCE_LOCALE:
            result[locale] = _compile(read_catalog(locale))
    return result


def read_catalog(locale: str) -> Catalog:
    """The parsed .po catalog of one locale."""
    with open(os.path.join(TRANSLATIONS_DIR, locale, "LC_MESSAGES", "messages.po"), "rb") as f:
        return read_po(f, locale=locale, domain="messages")


def _compile(catalog: Catalog) -> Translations:
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(fp=buffer, domain="messages")


def init_app(app: Flask) -> None:
    """Load the catalogs and give Jinja `{% trans %}`, `_()`, `gettext()`, `ngettext()`."""
    catalogs()
    app.jinja_env.add_extension("jinja2.ext.i18n")
    # Trimmed blocks collapse whitespace, so the msgids don't depend on template indentation.
    app.jinja_env.policies["ext.i18n.trimmed"] = True
    # The raw callables: Jinja's newstyle wrappers do the %-formatting themselves.
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        _translate, _translate_plural, newstyle=True
    )


def current_locale() -> str:
    """The locale of `force_locale`, else `g.locale` (set by the HTTP layer), else English."""
    forced = _locale.get()
    if forced:
        return forced
    if has_app_context():
        chosen = g.get("locale")
        if isinstance(chosen, str) and chosen in SUPPORTED_LOCALES:
            return chosen
    return SOURCE_LOCALE


@contextlib.contextmanager
def force_locale(locale: str | None) -> Iterator[str]:
    """Translate into `locale` (negotiated to a supported one) inside the block."""
    chosen = negotiate([locale])
    token = _locale.set(chosen)
    try:
        yield chosen
    finally:
        _locale.reset(token)


def _translate(message: str) -> str:
    return catalogs()[current_locale()].gettext(message)


def _translate_plural(singular: str, plural: str, num: int) -> str:
    return catalogs()[current_locale()].ngettext(singular, plural, num)


def gettext(message: str, **variables: Any) -> str:
    """`message` in the current locale, %-formatted with `variables` when any are given."""
    translated = _translate(message)
    return translated % variables if variables else translated


def ngettext(singular: str, plural: str, num: int, **variables: Any) -> str:
    """The singular or plural form for `num`, always %-formatted (`%(num)d` is available)."""
    variables.setdefault("num", num)
    return _translate_plural(singular, plural, num) % variables


def lazy_gettext(message: str, **variables: Any) -> LazyProxy:
    """Like `gettext`, but translated each time it is turned into a string (form labels)."""
    return LazyProxy(gettext, message, enable_cache=False, **variables)


def _supported(tag: str | None) -> str | None:
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-")[0].lower()
    return primary if primary in SUPPORTED_LOCALES else None


def negotiate(candidates: list[str | None]) -> str:
    """The first supported locale among `candidates` (`fr-CA` counts as `fr`), else the default."""
    for candidate in candidates:
        found = _supported(candidate)
        if found:
            return found
    if has_app_context():
        return str(current_app.config["DEFAULT_LOCALE"])
    return SOURCE_LOCALE


def best_request_locale(ui_locales: str | None, account_default: str | None) -> str:
    """HTTP layer only: `ui_locales`, then Accept-Language, then the account default."""
    candidates: list[str | None] = list((ui_locales or "").split())
    candidates += [tag for tag, quality in request.accept_languages if quality > 0 and tag != "*"]
    candidates.append(account_default)
    return negotiate(candidates)


def extract_messages(root: str = ROOT) -> Catalog:
    """Every translatable string in the package and the templates, as a template catalog."""
    catalog = Catalog(locale=None, domain="messages")
    for filename, lineno, message, comments, context in extract_from_dir(
        root, METHOD_MAP, OPTIONS_MAP, keywords=KEYWORDS
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def update_catalogs() -> None:
    """Merge new msgids into each .po file; old ones become obsolete entries."""
    template = extract_messages()
    for locale in SUPPORTED_LOCALES:
        if locale == SOURCE_LOCALE:
            continue
        catalog = read_catalog(locale)
        catalog.update(template, no_fuzzy_matching=True)
        path = os.path.join(TRANSLATIONS_DIR, locale, "LC_MESSAGES", "messages.po")
        with open(path, "wb") as f:
            write_po(f, catalog, width=100, omit_header=False)


if __name__ == "__main__":
    update_catalogs()
