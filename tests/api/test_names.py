"""The API's names for domain fields (the few renamed ones included) and the route-citing
details the API gives for domain errors."""

from __future__ import annotations

import pytest

from authserver.api import names
from authserver.platform.errors import Forbidden, ValidationFailed


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
