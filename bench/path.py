"""In-process cost of the request path: microseconds and database round trips per request.

    .venv/bin/python bench/path.py [--requests 2000] [--profile SCENARIO]

No HTTP server and no wrk: each request is one call of the WSGI app with a ready environ,
so the figures are the app's own (Flask, our hooks, SQLAlchemy, the driver, Redis), not a
server's. It makes a fresh PostgreSQL database (dropped afterwards) and a unique Redis
prefix, seeds an account, a user, a confidential client and refresh tokens, and prints per
scenario the median CPU microseconds per request (of 5 batches) and the database round trips
per request: statements, BEGIN, COMMIT, ROLLBACK and pool pings counted separately.
`--sql` lists the statements per request; `--profile NAME` prints the top of a cProfile
of that scenario. Nothing here is imported by the product.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

ADMIN_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PASSWORD = "bench password 123"

Environ = Callable[[], dict[str, Any]]


def environ(method: str, path: str, body: bytes = b"", **headers: str) -> Environ:
    """A factory of fresh WSGI environs for one request (the body stream is new each time)."""
    base = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    if body:
        base["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
        base["CONTENT_LENGTH"] = str(len(body))
    for name, value in headers.items():
        base["HTTP_" + name.upper()] = value

    def make() -> dict[str, Any]:
        return {**base, "wsgi.input": io.BytesIO(body)}

    return make


class RoundTrips:
    """Counts what the engine sends to the server while `active`."""

    def __init__(self, engine: sa.Engine):
        self.counts: Counter[str] = Counter()
        self.statements: Counter[str] = Counter()
        self.active = False
        pre_ping = bool(engine.pool._pre_ping)  # type: ignore[attr-defined]

        def note(kind: str) -> Callable[..., None]:
            def listener(*_args: Any, **_kwargs: Any) -> None:
                if self.active:
                    self.counts[kind] += 1

            return listener

        event.listen(engine, "before_cursor_execute", note("statements"))

        def sent(kind: str) -> Callable[..., None]:
            # What the driver really sends: nothing in autocommit, and psycopg sends no
            # COMMIT or ROLLBACK when no transaction is open.
            def listener(conn: Any, *_args: Any) -> None:
                dbapi = conn.connection.dbapi_connection
                if not self.active or dbapi is None or dbapi.autocommit:
                    return
                if kind != "begin" and dbapi.info.transaction_status == 0:  # IDLE
                    return
                self.counts[kind] += 1

            return listener

        def statement(_conn: Any, _cursor: Any, text: str, *_args: Any) -> None:
            if self.active:
                self.statements[" ".join(text.split())[:150]] += 1

        event.listen(engine, "before_cursor_execute", statement)
        event.listen(engine, "begin", sent("begin"))
        event.listen(engine, "commit", sent("commit"))
        event.listen(engine, "rollback", sent("rollback"))
        if pre_ping:
            event.listen(engine.pool, "checkout", note("ping"))


def seed(app: Any, tokens_needed: int) -> tuple[dict[str, str], Iterator[str]]:
    from authserver.identity import accounts, clients, tokens, users
    from authserver.platform.extensions import db
    from authserver.platform.models import RefreshToken, utcnow
    from authserver.platform.security import digest

    with app.app_context():
        pair = accounts.create_account("Bench")
        user = users.create_user(
            account=pair.live, username="bench", password=PASSWORD, role="customer"
        )
        made = clients.create_client(
            pair.live,
            "Bench",
            redirect_uris=["https://b.example/cb"],
            grant_types=["authorization_code", "refresh_token", "client_credentials"],
        )
        values = [tokens.new_refresh_token_value() for _ in range(tokens_needed)]
        now = utcnow()
        db.session.add_all(
            RefreshToken(
                token_hash=digest(v),
                family_id=uuid.uuid4().hex,
                client_id=made.client.id,
                user_id=user.id,
                account_id=pair.live.id,
                scope="",
                amr=["pwd"],
                auth_time=now,
                issued_at=now,
                expires_at=now + timedelta(days=1),
            )
            for v in values
        )
        db.session.commit()
        principal = tokens.user_principal(user, pair.live, "customer", ["pwd"])
        access = tokens.sign_access_token(made.client.client_id, principal, "", 900)
        basic = f"{made.client.client_id}:{made.secret}".encode()
    return {
        "basic": "Basic " + base64.b64encode(basic).decode(),
        "access_token": access,
    }, iter(values)


def scenarios(data: dict[str, str], refresh_values: Iterator[str]) -> dict[str, Environ]:
    refresh_base = environ("POST", "/oauth/token", b"x", AUTHORIZATION=data["basic"])

    def refresh() -> dict[str, Any]:
        body = f"grant_type=refresh_token&refresh_token={next(refresh_values)}".encode()
        env = refresh_base()
        env["CONTENT_LENGTH"] = str(len(body))
        env["wsgi.input"] = io.BytesIO(body)
        return env

    return {
        "healthz": environ("GET", "/healthz"),
        "discovery": environ("GET", "/.well-known/openid-configuration"),
        "jwks": environ("GET", "/oauth/jwks"),
        "client_credentials": environ(
            "POST", "/oauth/token", b"grant_type=client_credentials", AUTHORIZATION=data["basic"]
        ),
        "introspection": environ(
            "POST",
            "/oauth/introspect",
            f"token={data['access_token']}".encode(),
            AUTHORIZATION=data["basic"],
        ),
        "refresh": refresh,
    }


def call(app: Any, make: Environ) -> int:
    status: list[str] = []

    def start_response(s: str, _headers: Any, _exc: Any = None) -> Any:
        status.append(s)
        return lambda _data: None

    body = app(make(), start_response)
    try:
        for _chunk in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close:
            close()
    return int(status[0].split()[0])


def measure(
    app: Any, trips: RoundTrips, make: Environ, requests: int
) -> tuple[float, dict[str, float]]:
    for _ in range(20):  # warm-up: caches, pool, prepared statements
        status = call(app, make)
        if status != 200:
            raise SystemExit(f"unexpected status {status}")
    batch = max(requests // 5, 1)
    means: list[float] = []
    trips.counts.clear()
    trips.statements.clear()
    trips.active = True
    for _ in range(5):
        # CPU time of this process, not the wall clock: steady on a busy machine. (The
        # database's and Redis's own CPU is not in it: round trips are counted instead.)
        started = time.process_time()
        for _ in range(batch):
            call(app, make)
        means.append((time.process_time() - started) / batch * 1e6)
    trips.active = False
    per = {k: v / (batch * 5) for k, v in trips.counts.items()}
    return statistics.median(means), per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--profile", help="print a cProfile of this scenario")
    parser.add_argument("--sql", action="store_true", help="list the statements per request")
    args = parser.parse_args()
    name = f"authserver_path_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(ADMIN_DB, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    work = tempfile.mkdtemp(prefix="authserver-path-")
    os.environ["AUTHSERVER_INSTANCE_PATH"] = work
    try:
        from authserver import create_app
        from authserver.platform.extensions import db
        from authserver.platform.keys import rotate

        app = create_app(
            {
                "SECRET_KEY": uuid.uuid4().hex * 2,
                "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
                "REDIS_URL": "redis://127.0.0.1:6379/14",
                "REDIS_PREFIX": f"path-{uuid.uuid4().hex[:8]}:",
                "ISSUER": "http://127.0.0.1:8000",
                "MAIL_URL": "memory:",
                "SMS_URL": "memory:",
                "LOG_LEVEL": "WARNING",
            },
            require_keys=False,
        )
        with app.app_context():
            db.create_all()
            rotate(app.extensions["authserver.keys"])
        data, values = seed(app, args.requests + 200)
        with app.app_context():
            engine = db.engine
        trips = RoundTrips(engine)
        print(f"{'scenario':<20} {'CPU us':>8}  round trips per request")
        for label, make in scenarios(data, values).items():
            if args.profile == label:
                profile = cProfile.Profile()
                profile.enable()
                us, per = measure(app, trips, make, args.requests // 4)
                profile.disable()
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(40)
                print(out.getvalue())
            else:
                us, per = measure(app, trips, make, args.requests)
            total = sum(per.values())
            detail = ", ".join(f"{k} {v:.2f}" for k, v in sorted(per.items())) or "none"
            print(f"{label:<20} {us:>8.0f}  {total:.2f} ({detail})", flush=True)
            if args.sql:
                runs = args.requests // 4 if args.profile == label else args.requests
                for text, n in trips.statements.most_common():
                    print(f"    {n / (max(runs // 5, 1) * 5):.2f} x {text}")
        with app.app_context():
            db.engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
