"""The README's role table is the truth about /v1: it matches what each view admits, and
every cell that says `no` is refused (403 for a role, 401 without a token) and changes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from factories import World, make_user
from oauth_helpers import bearer, login
from verification_helpers import guest_token

from authserver.api.openapi import ANY_TOKEN, openapi_path
from authserver.platform.extensions import db
from authserver.platform.models import ROLES, Account, RecoveryCode, RefreshToken, User

README = Path(__file__).resolve().parents[2] / "README.md"
COLUMNS = {
    "own": "owner",
    "adm": "administrator",
    "dev": "developer",
    "man": "manager",
    "sup": "support_specialist",
    "mkt": "marketing_specialist",
    "gds": "goods_specialist",
    "ro": "read_only",
    "cus": "customer",
    "gst": "guest",
    "anon": "anonymous",
}


def read_table() -> dict[tuple[str, str], dict[str, bool]]:
    """{(METHOD, path): {role: allowed}} from the table between the roles-table markers."""
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- roles-table -->", 1)[1].split("<!-- /roles-table -->", 1)[0]
    lines = [line for line in block.strip().splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert [COLUMNS[c] for c in header[1:]] == list(COLUMNS.values())
    table = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        method, path = cells[0].strip("`").split(" ", 1)
        allowed = {}
        for role, cell in zip(COLUMNS.values(), cells[1:], strict=True):
            assert re.fullmatch(r"(yes|no)\S*", cell), f"{cells[0]}: bad cell {cell!r}"
            allowed[role] = cell.startswith("yes")  # "yes*": allowed, with finer rules
        table[(method, path)] = allowed
    return table


TABLE = read_table()


def _view_roles(app: Any, method: str, path: str) -> tuple[str, ...] | None:
    adapter = app.url_map.bind("localhost")
    endpoint, _ = adapter.match(re.sub(r"\{[^}]+\}", "x", path), method=method)
    return getattr(app.view_functions[endpoint], "required_roles", None)


def test_table_covers_every_route_and_matches_the_code(app):
    """Each /v1 route has a row, each row a route, and its yes cells are what the view admits."""
    routes = {
        (method, "/v1" + openapi_path(rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert routes == set(TABLE)
    for (method, path), allowed in TABLE.items():
        roles = _view_roles(app, method, path)
        admitted = set(ANY_TOKEN if roles == () else roles or ())
        expected = {r for r, ok in allowed.items() if ok and r != "anonymous"}
        if roles is None:  # not guarded: open to everyone
            assert all(allowed.values()), (method, path)
        else:
            assert expected == admitted, (method, path)
            assert not allowed["anonymous"], (method, path)


def _tokens(app: Any, client: Any, world: World) -> dict[str, str]:
    """An access token per role of the live account (a new user each), and a guest token."""
    tokens = {}
    for role in ROLES:
        make_user(app, world.live_id, f"role-{role}", role=role)
    for role in ROLES:
        body = login(client, world, username=f"role-{role}", client_id=world.public_id)
        tokens[role] = body["access_token"]
    tokens["guest"] = guest_token(client, world.live_prt)
    return tokens


def _fingerprint(app: Any) -> tuple[Any, ...]:
    """What a refused call must not have changed."""
    with app.app_context():
        rows = db.session.execute(
            db.select(Account.id, Account.status, Account.publishable_token, Account.name)
        ).all()
        users = db.session.execute(
            db.select(User.id, User.status, User.role, User.auth_method, User.password_hash)
        ).all()
        counts = [
            db.session.scalar(db.select(db.func.count()).select_from(model))
            for model in (RefreshToken, RecoveryCode)
        ]
        return sorted(map(tuple, rows)), sorted(map(tuple, users)), counts


NO_CELLS = [
    pytest.param(method, path, role, id=f"{method} {path} as {role}")
    for (method, path), allowed in TABLE.items()
    for role, ok in allowed.items()
    if not ok
]


@pytest.mark.parametrize(
    "method,path", sorted({(m, p) for m, p, _ in (c.values for c in NO_CELLS)})
)
def test_every_no_cell_is_refused(app, client, world, method, path):
    """Every role the table says `no` to gets 403 (anonymous 401) and changes nothing."""
    tokens = _tokens(app, client, world)
    before = _fingerprint(app)
    url = re.sub(r"\{[^}]+\}", world.alice_id, path)
    refused = [role for role, ok in TABLE[(method, path)].items() if not ok]
    assert refused
    for role in refused:
        headers = bearer(tokens[role]) if role != "anonymous" else {}
        response = client.open(url, method=method, headers=headers)
        expected = 401 if role == "anonymous" else 403
        assert response.status_code == expected, (role, response.get_data(as_text=True))
        assert response.get_json()["errors"][0]["code"] in ("forbidden", "unauthenticated")
    assert _fingerprint(app) == before
