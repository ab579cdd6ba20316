"""WSGI servers side by side: gunicorn gthread against granian (WSGI interface), same app.

    PYTHONPATH=<granian's folder> .venv/bin/python bench/servers.py [--rounds 3] [--seconds 5]

Needs wrk and the local PostgreSQL and Redis, and granian importable (it is not a project
dependency: `pip install --target DIR granian`, then put DIR on PYTHONPATH). Each round
starts each server in turn (same workers and threads, same data: bench/run.py seeds it),
runs `wrk -t1 -c64` on /healthz, discovery and the client_credentials grant, and reads
the server process tree's CPU time from /proc, so a busy machine still gives a steady
CPU-per-request figure next to the swinging req/s. Nothing here is imported by the product.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import ADMIN_DB, BIN, free_port, wrk

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    found = [pid]
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as fh:
                for child in fh.read().split():
                    found += tree(int(child))
        except OSError:
            continue
    return found


def cpu_seconds(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            continue
    return total / TICKS


def seed(env: dict[str, str]) -> str:
    """An account and a confidential client that may use client_credentials; its Basic
    Authorization header."""
    os.environ.update(env)
    from authserver import create_app
    from authserver.identity import accounts, clients
    from authserver.platform.extensions import db

    app = create_app()
    with app.app_context():
        pair = accounts.create_account("Servers")
        made = clients.create_client(
            pair.live,
            "Servers",
            redirect_uris=["https://b.example/cb"],
            grant_types=["authorization_code", "refresh_token", "client_credentials"],
        )
        basic = f"{made.client.client_id}:{made.secret}".encode()
        db.engine.dispose()
    return "Basic " + base64.b64encode(basic).decode()


def command(server: str, port: int, workers: int, threads: int) -> list[str]:
    if server == "gunicorn":
        return [
            f"{BIN}/gunicorn",
            "-c",
            os.path.join(ROOT, "deploy", "gunicorn.conf.py"),
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(workers),
            "--threads",
            str(threads),
            "--log-level",
            "warning",
            "authserver:create_app()",
        ]
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--factory",
        "--no-ws",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--blocking-threads",
        str(threads),
        "--log-level",
        "warning",
        "authserver:create_app",
    ]


def serve(server: str, args: argparse.Namespace, env: dict[str, str], port: int) -> Any:
    # Its own process group, so stop() ends the workers too.
    cmd = command(server, port, args.workers, args.threads)
    process = subprocess.Popen(cmd, env=env, start_new_session=True)
    deadline = time.monotonic() + 300  # a loaded 2-core machine builds the app slowly
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
            return process
        except OSError:
            time.sleep(0.5)
    stop(process)
    raise SystemExit(f"{server} did not start")


def stop(process: Any) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="gunicorn,granian")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    args.wrk_threads = 1
    name = f"authserver_servers_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(ADMIN_DB, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    work = tempfile.mkdtemp(prefix="authserver-servers-")
    port = free_port()
    env = {
        "AUTHSERVER_INSTANCE_PATH": work,
        "AUTHSERVER_SECRET_KEY": uuid.uuid4().hex * 2,
        "AUTHSERVER_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
        "AUTHSERVER_REDIS_URL": "redis://127.0.0.1:6379/14",
        "AUTHSERVER_REDIS_PREFIX": f"servers-{uuid.uuid4().hex[:8]}:",
        "AUTHSERVER_ISSUER": f"http://127.0.0.1:{port}",
        "AUTHSERVER_MAIL_URL": f"file://{work}/outbox",
        "AUTHSERVER_SMS_URL": f"file://{work}/outbox",
        "AUTHSERVER_LOG_LEVEL": "WARNING",
        "PROMETHEUS_MULTIPROC_DIR": os.path.join(work, "metrics"),
    }
    os.makedirs(env["PROMETHEUS_MULTIPROC_DIR"])
    full_env = {**os.environ, **env}
    results: dict[tuple[str, str], list[tuple[float, float, str]]] = {}
    try:
        for step in (["db", "upgrade"], ["keys", "rotate"]):
            subprocess.run(
                [f"{BIN}/authserver", *step], env=full_env, check=True, capture_output=True
            )
        authorization = seed(env)
        base = f"http://127.0.0.1:{port}"
        scenarios: list[tuple[str, str, str | None, list[str]]] = [
            ("healthz", base + "/healthz", None, []),
            ("discovery", base + "/.well-known/openid-configuration", None, []),
            (
                "client_credentials",
                base + "/oauth/token",
                "post.lua",
                ["grant_type=client_credentials", authorization],
            ),
        ]
        for round_no in range(args.rounds):
            for server in args.servers.split(","):
                process = serve(server, args, full_env, port)
                try:
                    for label, url, script, script_args in scenarios:
                        wrk(url, args, script, *script_args)  # warm-up, not counted
                        before = cpu_seconds(process.pid)
                        result = wrk(url, args, script, *script_args)
                        used = cpu_seconds(process.pid) - before
                        us = used / max(result["requests"], 1) * 1e6
                        results.setdefault((label, server), []).append(
                            (result["rps"], us, result["p99"])
                        )
                        print(
                            f"round {round_no + 1} {server:<9} {label:<19} {result['rps']:>8.0f}"
                            f" req/s {us:>6.0f} us CPU/req p99 {result['p99']:>8}"
                            f" non-2xx {result['non2xx']}",
                            flush=True,
                        )
                finally:
                    stop(process)
        print(f"\nmedians over {args.rounds} rounds, load average {os.getloadavg()[0]:.1f}")
        for (label, server), runs in sorted(results.items()):
            rps = statistics.median(r[0] for r in runs)
            us = statistics.median(r[1] for r in runs)
            print(f"{label:<19} {server:<9} {rps:>8.0f} req/s {us:>6.0f} us CPU/req")
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
