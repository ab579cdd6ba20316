"""Round trips per request on each hot path: SQL statements and Redis commands, in-process.

    PYTHONPATH=. .venv/bin/python bench/roundtrips.py [--requests 50] [--profile 5]
    PYTHONPATH=/path/to/other/tree .venv/bin/python bench/roundtrips.py   # another revision

Builds the app whose code is on PYTHONPATH on a fresh PostgreSQL database and Redis
prefix (seeded like bench/compare.py, through bench/seed.py), then sends each scenario's
request through the Flask test client (no WSGI server, no network) and prints per request:
SQL statements, transaction round trips (BEGIN, COMMIT/ROLLBACK) and pool pings apart
(their sum is the PostgreSQL round trips), Redis commands and Redis round trips (a
pipeline is one), and the process CPU time. With --profile N, the N heaviest functions of
each scenario by own CPU time (cProfile). The password grant's CPU beside argon2 is its CPU
minus one verify with the same parameters (measured here too). Nothing here is imported by
the product; it is a measuring tool, never a test.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis.connection
from compare import HERE, drop_authserver, git, prepare_authserver
from flask.testing import FlaskClient
from sqlalchemy import event

COUNTS: Counter[str] = Counter()
SHOWN: list[str] | None = None  # the statements of the request being shown (--sql)


def instrument_redis() -> None:
    """Count commands (each one sent alone or packed into a pipeline) and round trips (each
    write to the socket: a pipeline sends all its commands at once) on redis-py's
    connections."""
    cls = redis.connection.AbstractConnection
    single, many, send = cls.send_command, cls.pack_commands, cls.send_packed_command

    def send_command(self: Any, *args: Any, **kwargs: Any) -> None:
        COUNTS["redis_commands"] += 1
        return single(self, *args, **kwargs)

    def pack_commands(self: Any, commands: Any) -> Any:
        commands = list(commands)
        COUNTS["redis_commands"] += len(commands)
        return many(self, commands)

    def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
        COUNTS["redis_round_trips"] += 1
        return send(self, command, check_health)

    cls.send_command = send_command  # type: ignore[method-assign]
    cls.pack_commands = pack_commands  # type: ignore[method-assign]
    cls.send_packed_command = send_packed_command  # type: ignore[method-assign]


def instrument_sql(engine: Any) -> None:
    """Count statements, transaction ends and begins, and pool checkouts (each checkout
    pings the server first when pool_pre_ping is on)."""

    @event.listens_for(engine, "before_cursor_execute")
    def statement(conn: Any, cursor: Any, text: str, *_: Any) -> None:
        COUNTS["sql_statements"] += 1
        if SHOWN is not None:
            SHOWN.append(" ".join(text.split())[:160])

    @event.listens_for(engine, "begin")
    def begin(*_: Any) -> None:
        COUNTS["sql_begin"] += 1

    @event.listens_for(engine, "commit")
    def commit(*_: Any) -> None:
        COUNTS["sql_end"] += 1

    @event.listens_for(engine, "rollback")
    def rollback(*_: Any) -> None:
        COUNTS["sql_end"] += 1

    @event.listens_for(engine, "checkout")
    def checkout(*_: Any) -> None:
        COUNTS["pool_checkouts"] += 1


Request = Callable[[FlaskClient], Any]


def scenarios(app: Any, data: dict[str, Any], refresh_tokens: list[str]) -> dict[str, Request]:
    basic = {"Authorization": data["basic"]}
    client = app.test_client()
    grant = {
        "grant_type": "password",
        "username": data["username"],
        "password": data["password"],
        "scope": f"{data['scope']} aid:{data['aid']}",
    }
    reply = client.post("/oauth/token", data=grant, headers=basic)
    assert reply.status_code == 200, reply.get_data(as_text=True)
    bearer = {"Authorization": "Bearer " + reply.json["access_token"]}
    spent = iter(refresh_tokens)
    users = iter(range(10**9))

    def ok(response: Any) -> Any:
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        return response

    return {
        "discovery": lambda c: ok(c.get("/.well-known/openid-configuration")),
        "jwks": lambda c: ok(c.get("/oauth/jwks")),
        "client_credentials": lambda c: ok(
            c.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=basic)
        ),
        "introspection": lambda c: ok(
            c.post("/oauth/introspect", data={"token": bearer["Authorization"][7:]}, headers=basic)
        ),
        "userinfo": lambda c: ok(c.get("/oauth/userinfo", headers=bearer)),
        "v1_user": lambda c: ok(c.get("/v1/user", headers=bearer)),
        "refresh": lambda c: ok(
            c.post(
                "/oauth/token",
                data={"grant_type": "refresh_token", "refresh_token": next(spent)},
                headers=basic,
            )
        ),
        "password": lambda c: ok(
            c.post(
                "/oauth/token",
                data={**grant, "username": f"bench{next(users) % data['users']}"},
                headers=basic,
            )
        ),
    }


@contextmanager
def counted() -> Iterator[Counter[str]]:
    before = COUNTS.copy()
    delta: Counter[str] = Counter()
    yield delta
    delta.update({k: v - before.get(k, 0) for k, v in COUNTS.items()})


def verify_ms(app: Any, rounds: int = 20) -> float:
    """CPU ms of one argon2 verify with the app's parameters (the password grant's floor)."""
    from argon2 import PasswordHasher

    config = app.config
    hasher = PasswordHasher(
        time_cost=config["ARGON2_TIME_COST"],
        memory_cost=config["ARGON2_MEMORY_COST"],
        parallelism=config["ARGON2_PARALLELISM"],
    )
    stored = hasher.hash("x")
    started = time.process_time()
    for _ in range(rounds):
        hasher.verify(stored, "x")
    return (time.process_time() - started) * 1000 / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50, help="per scenario (password: /5)")
    parser.add_argument("--profile", type=int, default=5, help="top N functions (0: none)")
    parser.add_argument("--scenarios", default="", help="comma-separated (default: all)")
    parser.add_argument("--sql", action="store_true", help="print one request's statements")
    args = parser.parse_args()

    import authserver

    tree_dir = os.path.dirname(os.path.dirname(os.path.abspath(authserver.__file__)))
    commit = git("-C", tree_dir, "rev-parse", "HEAD") if os.path.isdir(f"{tree_dir}/.git") else "?"
    work = tempfile.mkdtemp(prefix="authserver-roundtrips-")
    server = prepare_authserver("roundtrips", tree_dir, commit, work, None)
    try:
        tokens_file = os.path.join(work, "refresh.txt")
        count = str(2 * args.requests + 10)  # measured, then profiled
        world = os.path.join(server.work, "world.json")
        seed = [sys.executable, os.path.join(HERE, "seed.py"), "refresh-tokens", world]
        subprocess.run([*seed, count, tokens_file], env=server.env, check=True)
        with open(tokens_file, encoding="utf-8") as fh:
            refresh_tokens = fh.read().split()
        os.environ.update({k: v for k, v in server.env.items() if k.startswith("AUTHSERVER_")})
        os.environ["AUTHSERVER_LOG_LEVEL"] = "WARNING"  # no request lines on the console
        instrument_redis()
        from authserver import create_app
        from authserver.platform.extensions import db

        app = create_app()
        with app.app_context():
            instrument_sql(db.engine)
        client = app.test_client()
        requests = scenarios(app, server.data, refresh_tokens)
        names = [n for n in args.scenarios.split(",") if n] or list(requests)
        floor = verify_ms(app)
        print(f"code: {authserver.__file__} ({commit[:10]}); one argon2 verify: {floor:.1f} ms CPU")
        print(
            f"{'scenario':<20} {'SQL':>5} {'BEGIN':>6} {'END':>5} {'pings':>6} {'PG trips':>9}"
            f" {'Redis cmds':>11} {'Redis trips':>12} {'CPU ms':>7}"
        )
        profiles = {}
        statements: dict[str, list[str]] = {}
        counts: dict[str, int] = {}
        for name in names:
            send = requests[name]
            n = max(3, args.requests // 5) if name == "password" else args.requests
            counts[name] = n
            for _ in range(3 if name != "refresh" else 0):
                send(client)  # warm: caches, compiled statements, pool
            with counted() as delta:
                started = time.process_time()
                for _ in range(n):
                    send(client)
                cpu = (time.process_time() - started) * 1000 / n
            per = {k: v / n for k, v in delta.items()}
            trips = per.get("sql_statements", 0) + per.get("sql_begin", 0) + per.get("sql_end", 0)
            trips += per.get("pool_checkouts", 0)
            extra = f" (beside argon2: {cpu - floor:.1f})" if name == "password" else ""
            print(
                f"{name:<20} {per.get('sql_statements', 0):>5.1f} {per.get('sql_begin', 0):>6.1f}"
                f" {per.get('sql_end', 0):>5.1f} {per.get('pool_checkouts', 0):>6.1f} {trips:>9.1f}"
                f" {per.get('redis_commands', 0):>11.1f} {per.get('redis_round_trips', 0):>12.1f}"
                f" {cpu:>7.2f}{extra}",
                flush=True,
            )
            if args.sql:
                global SHOWN
                SHOWN = []
                send(client)
                statements[name], SHOWN = SHOWN, None
            if args.profile:
                profiler = cProfile.Profile(time.process_time)  # CPU, not waits
                profiler.enable()
                for _ in range(n):
                    send(client)
                profiler.disable()
                profiles[name] = profiler
        for name, lines in statements.items():
            print(f"\n-- {name}: the SQL of one request")
            print("\n".join(f"   {line}" for line in lines))
        for name, profiler in profiles.items():
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(args.profile)
            lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
            head = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
            n = counts[name]
            per = f"{stats.total_calls / n:.0f} calls, {stats.total_tt * 1000 / n:.2f} ms CPU"  # type: ignore[attr-defined]
            print(f"\n-- {name}: top {args.profile} by own CPU time ({per} a request, profiled)")
            print("\n".join(lines[head : head + 1 + args.profile]))
        with app.app_context():
            db.engine.dispose()
    finally:
        drop_authserver(server)


if __name__ == "__main__":
    main()
