"""User-import benchmark: `authserver users import` on a fresh PostgreSQL database.

    .venv/bin/python bench/import_users.py [--users 20000] [--runs 3]

Needs the local PostgreSQL (Redis is not touched: memory://). It makes a fresh database
(dropped afterwards), brings it to the newest schema, creates an account, writes a JSON
lines file of `--users` users with a mix of argon2id, bcrypt and Django PBKDF2 hashes, and
runs the real command `--runs` times into new accounts, printing users/s for the whole
command (start-up included) and the command's own wall time. Target: 1,000 users/s.
Nothing here is imported by the product.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

import bcrypt
import sqlalchemy as sa
from argon2 import PasswordHasher

BIN = os.path.dirname(sys.executable)
ADMIN_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PASSWORD = "bench password 123"
DISTINCT_HASHES = 60  # hashes are made once and reused: checking one does not hash anything


def sample_hashes() -> list[str]:
    """Real hashes of each kind (argon2id at OWASP's settings, bcrypt 12, Django 870k)."""
    argon = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
    made = []
    for i in range(DISTINCT_HASHES):
        if i % 3 == 0:
            made.append(argon.hash(PASSWORD))
        elif i % 3 == 1:
            made.append(bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode())
        else:
            salt = uuid.uuid4().hex[:22]
            raw = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt.encode(), 1000)
            made.append(f"pbkdf2_sha256$870000${salt}${base64.b64encode(raw).decode()}")
    return made


def write_file(path: str, count: int) -> None:
    hashes = sample_hashes()
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(count):
            row = {
                "username": f"user{i}@example.com",
                "email": f"user{i}@example.com",
                "emailVerified": i % 2 == 0,
                "name": f"User {i}",
                "role": "customer",
                "phone": f"+1555{i:07d}",
                "authMethod": "tfa_email" if i % 5 == 0 else "simple",
                "passwordHash": hashes[i % len(hashes)],
            }
            fh.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    name = f"authserver_bench_import_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(ADMIN_DB, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    work = tempfile.mkdtemp(prefix="authserver-bench-import-")
    env = {
        **os.environ,
        "AUTHSERVER_INSTANCE_PATH": work,
        "AUTHSERVER_SECRET_KEY": uuid.uuid4().hex * 2,
        "AUTHSERVER_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
        "AUTHSERVER_REDIS_URL": "memory://",
        "AUTHSERVER_LOG_LEVEL": "WARNING",
    }
    cli = f"{BIN}/authserver"
    try:
        subprocess.run([cli, "db", "upgrade"], env=env, check=True, capture_output=True)
        path = os.path.join(work, "users.jsonl")
        write_file(path, args.users)
        size = os.path.getsize(path) / 1e6
        print(f"{args.users} users, {size:.1f} MB of JSON lines")
        for run in range(args.runs):
            made = subprocess.run(
                [cli, "accounts", "create", "--name", f"Bench {run}", "--json"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            account = json.loads(made.stdout)["id"]
            started = time.perf_counter()
            done = subprocess.run(
                [cli, "users", "import", "--account", account, path, "--json"],
                env=env,
                capture_output=True,
                text=True,
            )
            elapsed = time.perf_counter() - started
            if done.returncode != 0:
                sys.exit(f"bench: import failed: {done.stdout[:500]}{done.stderr[:500]}")
            imported = json.loads(done.stdout)["imported"]
            print(
                f"run {run + 1}: {imported} users in {elapsed:.2f} s = {imported / elapsed:.0f}/s"
            )
    finally:
        admin.dispose()
        with sa.create_engine(ADMIN_DB, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
