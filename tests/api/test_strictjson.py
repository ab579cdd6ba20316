"""The strict JSON loader on its own, without Flask or JSON:API."""

from __future__ import annotations

import pytest

from authserver.api import strictjson
from authserver.api.strictjson import StrictJSONError


def test_loads_plain_documents() -> None:
    """Ordinary JSON parses to the usual Python values, paired surrogates included."""
    raw = b'{"a": [1, -2.5, true, null], "b": "\\ud83d\\ude00"}'
    assert strictjson.loads(raw) == {"a": [1, -2.5, True, None], "b": "\U0001f600"}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff",
        b'{"a": 1, "a": 2}',
        b"[NaN]",
        b"[-Infinity]",
        b"1" * (strictjson.MAX_INT_DIGITS + 1),
        b"1e999",
        b"[" * (strictjson.MAX_DEPTH + 1) + b"]" * (strictjson.MAX_DEPTH + 1),
        b"{",
    ],
)
def test_refusals_are_malformed_without_pointer(raw: bytes) -> None:
    """Each refused input raises StrictJSONError with code MALFORMED and no pointer."""
    with pytest.raises(StrictJSONError) as info:
        strictjson.loads(raw)
    assert info.value.code == strictjson.MALFORMED
    assert info.value.pointer is None
    assert info.value.detail == str(info.value)


def test_nesting_at_the_limit_is_accepted() -> None:
    """Exactly MAX_DEPTH levels of nesting still parse."""
    depth = strictjson.MAX_DEPTH
    assert strictjson.loads(b"[" * depth + b"]" * depth) is not None


def test_nul_is_invalid_character_with_pointer() -> None:
    """NUL in a string is INVALID_CHARACTER, pointing at it with RFC 6901 escaping."""
    with pytest.raises(StrictJSONError) as info:
        strictjson.loads(b'{"a/b~": ["x", "\\u0000"]}')
    assert (info.value.code, info.value.pointer) == (strictjson.INVALID_CHARACTER, "/a~1b~0/1")


def test_lone_surrogate_is_malformed_with_pointer() -> None:
    """A lone surrogate escape is MALFORMED, pointing at the string that holds it."""
    with pytest.raises(StrictJSONError) as info:
        strictjson.loads(b'{"k": "\\ud800"}')
    assert (info.value.code, info.value.pointer) == (strictjson.MALFORMED, "/k")
