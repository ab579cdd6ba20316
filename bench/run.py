"""Token-endpoint benchmark: gunicorn on PostgreSQL + Redis, measured with wrk.

    .venv/bin/python bench/run.py [--workers 4] [--threads 4] [--connections 64] [--seconds 10]

Needs wrk (`apt-get install wrk`) and the local PostgreSQL and Redis. It makes a fresh
database (dropped afterwards) and a unique Redis key prefix, seeds an account, a simple
user, a confidential client and enough refresh tokens, starts gunicorn on a free port and
reports requests/s, p50 and p99 for: client credentials, refresh, password grant,
introspection, JWKS and discovery. Nothing here is imported by the product.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)
ADMIN_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PASSWORD = "bench password 123"
USERS = 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed(env: dict[str, str], refresh_tokens: int, token_file: str) -> dict[str, str]:
    """Create the data in-process with the product's own functions."""
    os.environ.update(env)
    from authserver import create_app
    from authserver.identity import accounts, clients, tokens, users
    from authserver.platform.extensions import db
    from authserver.platform.models import RefreshToken, utcnow
    from authserver.platform.security import digest

    app = create_app()
    with app.app_context():
        pair = accounts.create_account("Bench")
        # Many users, as in real traffic: one user logging in 64 times at once would
        # (rightly) hit the per-user throttle, which counts attempts before checking.
        users = [
            users.create_user(
                account=pair.live, username=f"bench{i}", password=PASSWORD, role="customer"
            )
            for i in range(USERS)
        ]
        user = users[0]
        client = clients.create_client(pair.live, "Bench", redirect_uris=["https://b.example/cb"])
        principal = tokens.user_principal(user, pair.live, "customer", ["pwd"])
        values = [tokens.new_refresh_token_value() for _ in range(refresh_tokens)]
        now = utcnow()
        # Inserted in bulk (the product writes one per login); same fields as save_refresh_token.
        db.session.add_all(
            RefreshToken(
                token_hash=digest(v),
                family_id=uuid.uuid4().hex,
                client_id=client.client.id,
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
        basic = f"{client.client.client_id}:{client.secret}".encode()
        result = {
            "aid": pair.live.id,
            "basic": "Basic " + base64.b64encode(basic).decode(),
            "access_token": tokens.sign_access_token(client.client.client_id, principal, "", 900),
        }
        db.engine.dispose()
    with open(token_file, "w", encoding="utf-8") as fh:
        fh.write("\n".join(values) + "\n")
    return result


def wrk(
    url: str, args: argparse.Namespace, script: str | None, *script_args: str
) -> dict[str, Any]:
    cmd = [
        "wrk",
        f"-t{args.wrk_threads}",
        f"-c{args.connections}",
        f"-d{args.seconds}s",
        "--latency",
    ]
    if script:
        cmd += ["-s", os.path.join(HERE, script), url, "--", *script_args]
    else:
        cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {
        "rps": rps,
        "p50": latency.get("50", "?"),
        "p99": latency.get("99", "?"),
        "requests": int(total.group(1)) if total else 0,
        "non2xx": int(bad.group(1)) if bad else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4, help="gthread threads per worker")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--refresh-tokens", type=int, default=60000)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is missing (apt-get install wrk)")

    name = f"authserver_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(ADMIN_DB, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    work = tempfile.mkdtemp(prefix="authserver-bench-")
    port = free_port()
    env = {
        "AUTHSERVER_INSTANCE_PATH": work,
        "AUTHSERVER_SECRET_KEY": uuid.uuid4().hex * 2,
        "AUTHSERVER_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
        "AUTHSERVER_REDIS_URL": "redis://127.0.0.1:6379/14",
        "AUTHSERVER_REDIS_PREFIX": f"bench-{uuid.uuid4().hex[:8]}:",
        "AUTHSERVER_ISSUER": f"http://127.0.0.1:{port}",
        "AUTHSERVER_MAIL_URL": f"file://{work}/outbox",
        "AUTHSERVER_SMS_URL": f"file://{work}/outbox",
        "AUTHSERVER_LOG_LEVEL": "WARNING",
    }
    full_env = {**os.environ, **env}
    server = None
    try:
        for step in (["db", "upgrade"], ["keys", "rotate"]):
            subprocess.run(
                [f"{BIN}/authserver", *step], env=full_env, check=True, capture_output=True
            )
        token_file = os.path.join(work, "refresh-tokens.txt")
        data = seed(env, args.refresh_tokens, token_file)
        server = subprocess.Popen(
            [
                f"{BIN}/gunicorn",
                "-w",
                str(args.workers),
                "-k",
                "gthread",
                "--threads",
                str(args.threads),
                "-b",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
                "authserver:create_app()",
            ],
            env=full_env,
        )
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)  # noqa: S310 - loopback
                break
            except OSError:
                time.sleep(0.2)
        token_url = base + "/oauth/token"
        scenarios = [
            (
                "client credentials",
                token_url,
                "post.lua",
                "grant_type=client_credentials",
                data["basic"],
            ),
            (
                "refresh (rotating)",
                token_url,
                "refresh.lua",
                token_file,
                str(args.wrk_threads),
                data["basic"],
            ),
            (
                "password grant (simple user)",
                token_url,
                "password.lua",
                str(USERS),
                PASSWORD.replace(" ", "+"),
                data["aid"],
                data["basic"],
            ),
            (
                "introspection",
                base + "/oauth/introspect",
                "post.lua",
                f"token={data['access_token']}",
                data["basic"],
            ),
            ("JWKS", base + "/oauth/jwks", None),
            ("discovery", base + "/.well-known/openid-configuration", None),
        ]
        print(
            f"gunicorn -w {args.workers} -k gthread --threads {args.threads}; "
            f"wrk -t{args.wrk_threads} -c{args.connections} -d{args.seconds}s; "
            f"{os.cpu_count()} CPUs"
        )
        print(f"{'scenario':<30} {'req/s':>9} {'p50':>9} {'p99':>9} {'non-2xx':>8}")
        for label, url, script, *script_args in scenarios:
            result = wrk(url, args, script, *script_args)
            print(
                f"{label:<30} {result['rps']:>9.0f} {result['p50']:>9} {result['p99']:>9}"
                f" {result['non2xx']:>8}",
                flush=True,
            )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
