"""Webhook outbox benchmark: deliveries/s with 1 and 2 worker processes, and the latency a
request pays for the event it emits.

    .venv/bin/python bench/webhooks.py [--events 1000] [--requests 150]

Needs the local PostgreSQL (a fresh database, dropped afterwards; Redis is not touched:
memory://). A local threaded HTTP sink answers every delivery 204 at once, so the numbers
are the outbox's own cost (claim, sign, POST, settle), not a slow receiver's.

1. Throughput: `--events` deliveries are committed at once, then 1 (and then 2) real
   `authserver worker` processes, started and idle beforehand, drain them: deliveries/s
   from the commit until every row had its first try (a failed try would wait out its
   backoff, which times the schedule, not the workers; failures are printed).
2. Added latency: the password grant of a user (it emits identity.login.success) with no
   webhook endpoint, then with one endpoint listening (the request writes the delivery row
   in its transaction): median and p95 of each, cheap argon2 so hashing does not drown it.
Nothing here is imported by the product.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import sqlalchemy as sa

ADMIN_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SECRET = "bench-secret-key-that-is-long-enough-0123456789"
PASSWORD = "bench password 123"
EVENT = "identity.account.update.success"
CHEAP = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 8, "ARGON2_PARALLELISM": 1}


class Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def config(url: str) -> dict[str, Any]:
    return {
        "TESTING": True,
        "SECRET_KEY": SECRET,
        "DATABASE_URL": url,
        "MAIL_URL": "memory:",
        "SMS_URL": "memory:",
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": True,
        "OUTBOX_IN_PROCESS": False,
        "OUTBOX_POLL_INTERVAL": 1,
        **CHEAP,
    }


def worker_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in config(url).items():
        env[f"AUTHSERVER_{key}"] = (
            "true" if value is True else "false" if value is False else str(value)
        )
    return env


def drain(
    app: Any, url: str, events: int, processes: int, endpoint_id: str, account_id: str
) -> float:
    from authserver.platform import outbox
    from authserver.platform.extensions import db
    from authserver.platform.models import OutboxItem

    workers = [
        subprocess.Popen(
            [sys.executable, "-c", "from authserver.cli import main; main()", "worker"],
            env=worker_env(url),
            stderr=subprocess.DEVNULL,
        )
        for _ in range(processes)
    ]
    try:
        time.sleep(15)  # start-up (imports) on a loaded machine; they idle-poll afterwards
        body = json.dumps({"type": EVENT, "timestamp": "2026-01-01T00:00:00Z", "data": None})
        with app.app_context():
            for _ in range(events):
                outbox.add(
                    "webhook",
                    EVENT,
                    body,
                    account_id=account_id,
                    endpoint_id=endpoint_id,
                )
            db.session.commit()
            start = time.perf_counter()
            # Until every row had its first try: a failed try waits out its backoff (5 s,
            # then 5 min), which measures the schedule, not the workers.
            untried = (
                sa.select(sa.func.count())
                .select_from(OutboxItem)
                .where(OutboxItem.status == "pending", OutboxItem.attempts == 0)
            )
            while True:
                left = db.session.scalar(untried)
                db.session.commit()
                if not left:
                    break
                time.sleep(0.05)
            elapsed = time.perf_counter() - start
            failed = db.session.scalars(
                sa.select(OutboxItem.last_error).where(OutboxItem.status != "delivered")
            ).all()
            if failed:
                print(f"  {len(failed)} first tries failed, e.g. {failed[0]!r}")
            db.session.execute(sa.delete(OutboxItem))
            db.session.commit()
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(30)
    return events / elapsed


def login_times(http: Any, client_id: str, secret: str, aid: str, n: int) -> list[float]:
    auth = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    data = {
        "grant_type": "password",
        "username": "bench",
        "password": PASSWORD,
        "scope": f"aid:{aid}",  # the account whose user signs in
    }
    times = []
    for _ in range(n):
        start = time.perf_counter()
        response = http.post(
            "/oauth/token",
            data=data,
            headers={"Authorization": f"Basic {auth}"},
        )
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.get_data(as_text=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=150)
    args = parser.parse_args()

    from authserver import create_app
    from authserver.identity import accounts, clients, users, webhooks
    from authserver.platform.extensions import db

    name = f"bench_webhooks_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_DB, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        app = create_app(config(url), require_keys=False)
        with app.app_context():
            db.create_all()
        from authserver.platform import keys

        with app.test_request_context():
            keys.rotate(app.extensions["authserver.keys"], immediate=True)  # tokens need a key
            pair = accounts.create_account("Bench")
            users.create_user(
                account=pair.live,
                username="bench",
                password=PASSWORD,
                role="administrator",
            )
            made = clients.create_client(pair.live, "Bench", grant_types=["password"])
            account_id, client_id, secret = pair.live.id, made.client.client_id, made.secret
        http = app.test_client()
        login_times(http, client_id, secret, account_id, 20)  # warm up
        without = login_times(http, client_id, secret, account_id, args.requests)
        with app.test_request_context():
            from authserver.platform.models import Account

            account = db.session.get(Account, account_id)
            endpoint = webhooks.create_endpoint(
                account, {"url": f"http://127.0.0.1:{server.server_port}/hook"}
            ).endpoint
            endpoint_id = endpoint.id
        login_times(http, client_id, secret, account_id, 20)
        with_hook = login_times(http, client_id, secret, account_id, args.requests)
        with app.app_context():
            from authserver.platform.models import OutboxItem

            db.session.execute(sa.delete(OutboxItem))
            db.session.commit()

        def summary(times: list[float]) -> str:
            p95 = statistics.quantiles(times, n=20)[-1]
            return f"median {statistics.median(times):.2f} ms, p95 {p95:.2f} ms"

        print(f"password grant, no endpoint:      {summary(without)}")
        print(f"password grant, 1 endpoint:       {summary(with_hook)}")
        print(
            f"added (median): {statistics.median(with_hook) - statistics.median(without):+.2f} ms"
        )
        for processes in (1, 2):
            rate = drain(app, url, args.events, processes, endpoint_id, account_id)
            print(
                f"{args.events} deliveries, {processes} worker process(es):"
                f" {rate:,.0f} deliveries/s"
            )
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    finally:
        server.shutdown()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
