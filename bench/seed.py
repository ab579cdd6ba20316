"""Benchmark data, made with the product's own functions (run by bench/compare.py).

    python bench/seed.py world OUT.json
    python bench/seed.py refresh-tokens WORLD.json COUNT OUT.txt

Runs in its own process with the server's settings (`AUTHSERVER_*`) and the server's code
on PYTHONPATH (the current checkout, or a baseline revision's tree), on a database that
`authserver db upgrade` and `authserver keys rotate` already prepared.

- `world`: an account, USERS simple users (`bench0`.. with PASSWORD; many users, as in
  real traffic: 64 logins of one user at once would rightly meet the per-user throttle),
  and a confidential client allowed every grant the benchmark uses; writes ids and the
  client's Basic header as JSON.
- `refresh-tokens`: COUNT fresh refresh tokens of bench0 through that client, one value a
  line, for one run of the rotating refresh scenario (each request spends one).

Nothing here is imported by the product.
"""

from __future__ import annotations

import base64
import json
import sys
import uuid
from datetime import timedelta

from authserver import create_app

PASSWORD = "bench password 123"
USERS = 200
GRANTS = ["client_credentials", "password", "refresh_token"]
SCOPE = "openid profile email"


def world(out: str) -> None:
    from authserver.identity import accounts, clients, users

    app = create_app()
    with app.app_context():
        pair = accounts.create_account("Bench")
        made = [
            users.create_user(
                account=pair.live,
                username=f"bench{i}",
                password=PASSWORD,
                role="customer",
                email=f"bench{i}@example.test",
            )
            for i in range(USERS)
        ]
        client = clients.create_client(pair.live, "Bench", grant_types=GRANTS, scope=SCOPE)
        basic = f"{client.client.client_id}:{client.secret}".encode()
        data = {
            "aid": pair.live.id,
            "user_id": made[0].id,
            "username": "bench0",
            "password": PASSWORD,
            "users": USERS,
            "client_row_id": client.client.id,
            "client_id": client.client.client_id,
            "basic": "Basic " + base64.b64encode(basic).decode(),
            "scope": SCOPE,
        }
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(data, fh)


def refresh_tokens(world_file: str, count: int, out: str) -> None:
    from authserver.identity import tokens
    from authserver.platform.extensions import db
    from authserver.platform.models import RefreshToken, utcnow
    from authserver.platform.security import digest

    with open(world_file, encoding="utf-8") as fh:
        data = json.load(fh)
    app = create_app()
    with app.app_context():
        values = [tokens.new_refresh_token_value() for _ in range(count)]
        now = utcnow()
        # In bulk (the product writes one per login), with the fields save_refresh_token
        # writes; each its own family, as after COUNT separate logins.
        db.session.add_all(
            RefreshToken(
                token_hash=digest(v),
                family_id=uuid.uuid4().hex,
                client_id=data["client_row_id"],
                user_id=data["user_id"],
                account_id=data["aid"],
                scope="",
                amr=["pwd"],
                auth_time=now,
                issued_at=now,
                expires_at=now + timedelta(days=1),
            )
            for v in values
        )
        db.session.commit()
    with open(out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(values) + "\n")


def main(argv: list[str]) -> None:
    if argv[:1] == ["world"] and len(argv) == 2:
        world(argv[1])
    elif argv[:1] == ["refresh-tokens"] and len(argv) == 4:
        refresh_tokens(argv[1], int(argv[2]), argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
