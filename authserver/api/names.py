"""How the API words the domain: the camelCase attribute a snake_case domain field is sent
as, and the detail the API gives instead of the domain's for errors that send the caller
to another route. The only table of such names in the API; resource modules derive theirs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from authserver.platform.errors import DomainError

# Domain fields whose attribute is not simply their camelCase name (PATCH /v1/password
# takes the new password as `value`).
RENAMED = {"new_password": "value", "confirmation": "valueConfirmation"}
_FIELDS = {attribute: field for field, attribute in RENAMED.items()}

# (code, field) -> the detail the API gives: where the caller should go instead.
_NOT_HERE = "Not for yourself here: use PATCH /v1/password, or the emailed link."
_OWN_CONTACT = "Change your own email or phone with PATCH /v1/user (it asks for your password)."
DETAILS = {
    ("self_not_allowed", "password"): _NOT_HERE,
    ("self_not_allowed", "email_verified"): _NOT_HERE,
    ("self_not_allowed", "email"): _OWN_CONTACT,
    ("self_not_allowed", "phone_number"): _OWN_CONTACT,
    ("self_not_allowed", "auth_method"): (
        "Change your own two-step login with PATCH /v1/user (it asks for your password)."
    ),
    ("tfa_disablement_required", "auth_method"): (
        "Switching two-step login off needs your password and a code: use "
        "POST /v1/tfa_disablements (or ask an administrator)."
    ),
}


def to_snake(name: str) -> str:
    """`mfaEnabled` -> `mfa_enabled`, `userID` -> `user_id`."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def to_camel(name: str) -> str:
    """`mfa_enabled` -> `mfaEnabled`; camelCase names pass through."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def attribute_of(field: str) -> str:
    """The attribute a domain field is sent as: `phone_number` -> `phoneNumber`."""
    return RENAMED.get(field) or to_camel(field)


def field_of(attribute: str) -> str:
    """The domain field an attribute carries: `phoneNumber` -> `phone_number`."""
    return _FIELDS.get(attribute) or to_snake(attribute)


def attributes_of(fields: Iterable[str]) -> frozenset[str]:
    """The attributes of a domain allow-list."""
    return frozenset(attribute_of(f) for f in fields)


def detail_of(error: DomainError) -> str:
    """What the API says for a domain error: its own words where it names a route."""
    return DETAILS.get((error.code, error.field or ""), error.detail)
