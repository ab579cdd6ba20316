"""The identity API under /v1 (JSON:API). Placeholder until the API plumbing lands."""

from flask import Flask


def init_app(app: Flask) -> None:
    return None
