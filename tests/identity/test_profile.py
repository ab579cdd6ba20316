"""Profile rules speak the domain: their errors name snake_case fields and no route (the
front doors add where to go)."""

from __future__ import annotations

import pytest
from factories import make_user

from authserver.identity import profile, users
from authserver.platform.errors import DomainError, Forbidden, ValidationFailed
from authserver.platform.extensions import db
from authserver.platform.models import Account, User


def _no_wire(error: DomainError) -> None:
    assert "/v1" not in error.detail and "/data" not in error.detail, error.detail


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"password": "a brand new long password"}, "password"),
        ({"email_verified": True}, "email_verified"),
        ({"phone_number": "+15550007777"}, "phone_number"),
    ],
)
def test_a_manager_editing_themselves_is_refused_in_domain_terms(app, world, changes, field):
    """self_not_allowed names the domain field and no route."""
    with app.app_context():
        account = db.session.get(Account, world.live_id)
        actor = users.Actor(role="owner", user_id=world.alice_id, account=account)
        with pytest.raises(Forbidden) as caught:
            profile.update_user(actor, world.alice_id, changes)
    assert (caught.value.code, caught.value.field) == ("self_not_allowed", field)
    _no_wire(caught.value)


def test_switching_two_step_login_off_is_refused_in_domain_terms(app, world):
    """tfa_disablement_required names auth_method and no route."""
    user_id = make_user(
        app,
        world.live_id,
        "tfa",
        email="tfa@example.com",
        email_verified=True,
        auth_method="tfa_email",
    )
    with app.app_context():
        account = db.session.get(Account, world.live_id)
        user = db.session.get(User, user_id)
        with pytest.raises(ValidationFailed) as caught:
            profile.update_current_user(user, account, {"auth_method": "simple"})
    assert (caught.value.code, caught.value.field) == ("tfa_disablement_required", "auth_method")
    _no_wire(caught.value)
