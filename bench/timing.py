"""Wall-clock timing of the answers that must not tell who exists, with production argon2.

    .venv/bin/python bench/timing.py [--rounds 20]

The suite checks these deterministically (an unknown user costs exactly one argon2 verify
with the production parameters, like a wrong password; a reset request runs the same SQL
whatever the username); this measures the clocks on a quiet machine. It builds the app on
a temporary SQLite file and memory:// (nothing else needed) and prints, for each pair,
the median and minimum milliseconds of both sides and their difference. Loaded machines
add noise: read the minimums. Nothing here is imported by the product.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from flask import Flask

from authserver import create_app
from authserver.identity import accounts, clients, users
from authserver.platform import background
from authserver.platform.extensions import db
from authserver.platform.keys import rotate

PASSWORD = "bench password 123"
WRONG = "not the password at all"


def build(folder: str) -> Flask:
    os.environ["AUTHSERVER_INSTANCE_PATH"] = folder
    app = create_app(
        {
            "TESTING": True,  # production argon2 parameters: the defaults stay
            "SECRET_KEY": "timing-secret-key-that-is-long-enough",
            "DATABASE_URL": f"sqlite:///{folder}/timing.sqlite3",
            "REDIS_URL": "memory://",
            "MAIL_URL": "memory:",
            "SMS_URL": "memory:",
            "LOG_LEVEL": "WARNING",
        }
    )
    with app.app_context():
        db.create_all()
        rotate(app.extensions["authserver.keys"])
    return app


def timed(call: Callable[[], int], expected: int) -> float:
    started = time.perf_counter()
    status = call()
    elapsed = time.perf_counter() - started
    if status != expected:
        sys.exit(f"unexpected status {status} (wanted {expected})")
    return elapsed


def report(name: str, times: dict[str, list[float]]) -> None:
    (a, ta), (b, tb) = times.items()
    ma, mb = statistics.median(ta) * 1000, statistics.median(tb) * 1000
    print(
        f"{name}: median {a} {ma:.2f} ms, {b} {mb:.2f} ms (difference {ma - mb:+.2f} ms);"
        f" minimum {a} {min(ta) * 1000:.2f} ms, {b} {min(tb) * 1000:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    if not 1 <= args.rounds <= 45:
        # Each round is one wrong password for the same known user: past the per-user
        # throttle (50 in 15 minutes) the answers would be 429s, not the timing asked for.
        parser.error("--rounds must be 1 to 45")
    with tempfile.TemporaryDirectory() as folder:
        app = build(folder)
        with app.app_context():
            account = accounts.create_account("Timing")
            client_id = clients.create_client(
                account.live, "t", public=True, grant_types=["password"]
            ).client.client_id
            users.create_user(account=None, username="tim", password=PASSWORD, role="customer")
            for i in range(args.rounds):
                users.create_user(
                    account=account.live,
                    username=f"user{i}",
                    password=PASSWORD,
                    role="customer",
                    email=f"user{i}@example.com",
                )
            prt = account.live.publishable_token
        http = app.test_client()

        logins: dict[str, list[float]] = {"unknown user": [], "wrong password": []}
        for i in range(-1, args.rounds):  # one attempt per username and IP: no throttle
            for username, label in (("nobody", "unknown user"), ("tim", "wrong password")):

                def attempt(
                    username: str = username, ip: str = f"10.0.{i + 2}.{len(label)}"
                ) -> int:
                    form = {"grant_type": "password", "client_id": client_id}
                    form |= {"username": username, "password": WRONG}
                    response = http.post(
                        "/oauth/token", data=form, environ_base={"REMOTE_ADDR": ip}
                    )
                    return response.status_code

                elapsed = timed(attempt, 400)
                if i >= 0:  # the first round warms up
                    logins[label].append(elapsed)
        report("password grant", logins)

        guest = http.post(
            "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": prt}
        ).get_json()["access_token"]
        resets: dict[str, list[float]] = {"existing": [], "unknown": []}
        for i in range(args.rounds):
            for prefix, label in (("user", "existing"), ("nobody", "unknown")):

                def ask(username: str = f"{prefix}{i}", ip: str = f"10.9.{i}.{len(prefix)}") -> int:
                    body = {"data": {"type": "PasswordResetToken", "attributes": {}}}
                    body["data"]["attributes"]["username"] = username
                    response = http.post(
                        "/v1/password_reset_tokens",
                        json=body,
                        headers={"Authorization": f"Bearer {guest}"},
                        environ_base={"REMOTE_ADDR": ip},
                    )
                    return response.status_code

                resets[label].append(timed(ask, 204))
                background.jobs(app).drain()  # each request starts on a quiet server
        report("password reset request", resets)
        background.jobs(app).close()


if __name__ == "__main__":
    main()
