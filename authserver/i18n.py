"""Placeholder: languages (replaced by the i18n work)."""

from flask import Flask


def init_app(app: Flask) -> None:
    return None
