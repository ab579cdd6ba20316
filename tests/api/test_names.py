"""The API's names for domain fields: attributes derived from the domain's allow-lists,
the few renamed ones, and the route-citing details the API gives for domain errors."""

from __future__ import annotations

import pytest

from authserver.api import accounts as accounts_api
from authserver.api import names
from authserver.api import users as users_api
from authserver.identity import accounts
from authserver.platform.errors import Forbidden, ValidationFailed


def test_user_allow_lists_are_the_domain_lists_in_api_names() -> None:
    """Who may send which User attributes is the domain's lists, camelCased."""
    admin = {
        "username",
        "password",
        "email",
        "emailVerified",
        "phoneNumber",
        "phoneVerificationCode",
        "name",
        "firstName",
        "lastName",
        "authMethod",
        "role",
        "status",
        "customData",
    }
    assert admin == users_api.ADMIN_ATTRIBUTES
    assert admin - {"status", "emailVerified"} == users_api.GUEST_ATTRIBUTES
    assert (
        admin - {"status", "emailVerified", "role", "password"}
        | {"currentPassword", "allowSupportLogin", "emailVerificationCode"}
    ) == users_api.SELF_ATTRIBUTES


def test_every_user_attribute_has_a_wire_type() -> None:
    """A field the domain lets anyone set has a wire type (else it would answer 500)."""
    assert set(users_api.ATTRIBUTES) == users_api.ADMIN_ATTRIBUTES | users_api.SELF_ATTRIBUTES


def test_every_account_attribute_is_read() -> None:
    """Each writable Account attribute is type-checked and passed on, none dropped silently."""
    assert set(accounts_api.ATTRIBUTES) == names.attributes_of(accounts.ACCOUNT_FIELDS)
    assert "companyName" in accounts_api.ATTRIBUTES


@pytest.mark.parametrize(
    ("field", "attribute"),
    [
        ("phone_number", "phoneNumber"),
        ("current_password", "currentPassword"),
        ("reset_token", "resetToken"),
        ("new_password", "value"),
        ("confirmation", "valueConfirmation"),
        ("otp", "otp"),
    ],
)
def test_fields_and_attributes_map_both_ways(field: str, attribute: str) -> None:
    """A domain field has one attribute name and back, renamed ones included."""
    assert names.attribute_of(field) == attribute
    assert names.field_of(attribute) == field


def test_detail_of_names_the_route_only_where_the_api_has_one() -> None:
    """Self refusals get the API's route-citing text; other errors keep the domain's."""
    own_factor = Forbidden("domain words", field="auth_method", code="self_not_allowed")
    assert names.detail_of(own_factor) == (
        "Change your own two-step login with PATCH /v1/user (it asks for your password)."
    )
    plain = ValidationFailed("Must be a string.", field="auth_method", code="invalid_type")
    assert names.detail_of(plain) == "Must be a string."
    assert names.detail_of(Forbidden("No field.", code="self_not_allowed")) == "No field."
