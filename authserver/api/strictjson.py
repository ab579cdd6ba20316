"""A strict JSON loader for untrusted bytes: `loads(raw)` or StrictJSONError.

It accepts only what every JSON parser reads the same way and what is cheap to read,
and refuses what the JSON grammar (or Python's json module) would let through:

- an empty body, or bytes that are not valid UTF-8;
- arrays/objects nested deeper than MAX_DEPTH (checked before parsing, so it never
  recurses deep);
- duplicate object members (parsers disagree on which one wins);
- NaN, Infinity and -Infinity (not JSON, though Python's parser reads them);
- integers over MAX_INT_DIGITS digits and floats that are too long or overflow
  (conversion stays cheap, and values stay finite);
- NUL in any string or member name (databases reject it) and lone surrogate escapes
  such as "\\ud800" (not encodable as UTF-8).

Error details are fixed wording plus positions and limits; they never quote the input,
except a duplicate member name (cut to 64 characters).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

MAX_DEPTH = 32  # real documents nest < 10 deep; the bound keeps parsing from recursing deep
MAX_INT_DIGITS = 32  # far below CPython's 4300-digit limit, so conversion stays cheap

MALFORMED = "malformed_json"  # not JSON, or JSON we refuse to read
INVALID_CHARACTER = "invalid_character"  # well-formed, but a string holds NUL


class StrictJSONError(ValueError):
    """Why `loads` refused its input.

    `code` is MALFORMED or INVALID_CHARACTER; `pointer` is the JSON Pointer (RFC 6901)
    of the offending string when the document parsed ("" is the root), else None.
    """

    def __init__(self, detail: str, pointer: str | None = None, code: str = MALFORMED):
        super().__init__(detail)
        self.detail = detail
        self.pointer = pointer
        self.code = code


def loads(raw: bytes) -> Any:
    """Parse `raw` strictly: UTF-8, bounded depth and numbers, unique keys, clean strings."""
    if not raw:
        raise StrictJSONError("The request body is empty.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StrictJSONError(f"The body is not valid UTF-8 (byte {exc.start}).") from None
    if _too_deep(text, MAX_DEPTH):
        raise StrictJSONError(f"The document nests deeper than {MAX_DEPTH} levels.")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_unique_object,
            parse_constant=_reject_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
        )
    except StrictJSONError:
        raise  # from a hook below; a ValueError too, so it must come first
    except json.JSONDecodeError as exc:
        # exc.msg is the parser's fixed wording; it never quotes the input.
        detail = f"Invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}."
        raise StrictJSONError(detail) from None
    except (ValueError, RecursionError):
        raise StrictJSONError("Invalid JSON.") from None
    _check_strings(value, "")
    return value


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Parsers disagree on which duplicate wins; refusing them closes that gap.
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise StrictJSONError(f'Duplicate member "{key[:64]}".')
        obj[key] = value
    return obj


def _reject_constant(name: str) -> NoReturn:
    raise StrictJSONError(f"{name} is not valid JSON.")


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise StrictJSONError(f"Numbers may have at most {MAX_INT_DIGITS} digits.")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > 2 * MAX_INT_DIGITS:
        raise StrictJSONError(f"Numbers may have at most {2 * MAX_INT_DIGITS} characters.")
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError("Number out of range.")
    return value


def _too_deep(text: str, limit: int) -> bool:
    """True when arrays/objects nest deeper than `limit` (one linear pass, strings skipped)."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")


def _check_strings(value: Any, pointer: str) -> None:
    """Refuse NUL (databases reject it) and lone surrogates (not encodable as UTF-8)."""
    if isinstance(value, str):
        match = _BAD_CHAR.search(value)
        if match and match.group() == "\x00":
            raise StrictJSONError("NUL is not allowed.", pointer, INVALID_CHARACTER)
        if match:
            raise StrictJSONError("Unpaired surrogate escape.", pointer, MALFORMED)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key, pointer)
            _check_strings(item, f"{pointer}/{_escape_token(key)}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_strings(item, f"{pointer}/{index}")


def _escape_token(token: str) -> str:
    """Escape one JSON Pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")
