"""Schemathesis hooks for `make api-fuzz` (loaded through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

from typing import Any

import schemathesis

from authserver.api import strictjson


def _has_long_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return len(str(abs(value))) > strictjson.MAX_INT_DIGITS
    if isinstance(value, dict):
        return any(_has_long_integer(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_long_integer(v) for v in value)
    return False


@schemathesis.hook
def filter_body(context: Any, body: Any) -> bool:
    """Leave out bodies with integers the strict reader refuses (400 malformed_json) inside
    free-form objects (meta, customData): JSON Schema cannot bound digits there without a
    recursive schema, and tests/api/test_strictjson.py pins that limit."""
    return not _has_long_integer(body)
