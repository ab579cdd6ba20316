"""Placeholder: notification senders (replaced by the notifications work)."""

from __future__ import annotations

from flask import Flask


def parse_sender_urls(value: str, kind: str) -> list[str]:
    return value.split()


def init_app(app: Flask) -> None:
    return None
