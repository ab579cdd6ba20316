"""authserver side by side with the peer (node oidc-provider), scenario by scenario, in one run.

    make bench                                       # or: .venv/bin/python bench/compare.py
    python bench/compare.py --quick                  # 1 round of 3 s: does everything work?
    python bench/compare.py --baseline f02bb75       # also the code of another revision
    python bench/compare.py --scenarios introspection,userinfo --rounds 5

Starts the peer from ../shared/bench-peer (or --peer / AUTHSERVER_BENCH_PEER) as its README
says: copied to ~/.cache/authserver-bench/ once, `npm ci`, then by default two processes
sharing a Redis database (the fair layout against several gunicorn workers; `--peer-layout
memory` is one process with in-memory storage). Starts authserver as docs/production.md
says: gunicorn with deploy/gunicorn.conf.py on a fresh PostgreSQL database and Redis (with
`--baseline REV`, a second one built from that revision's tree, exported with `git
archive`, imported through PYTHONPATH). Data comes from bench/seed.py (the product's own
functions); tokens are minted right before each scenario.

Each scenario runs peer, baseline, current, for --rounds rounds, with the same wrk settings
(-t1 -c64 -d10s by default, --latency, a 5 s timeout). Per server it prints req/s (median,
min-max), p50/p99, server CPU us per request (the process tree from /proc; for authserver
its PostgreSQL backends and redis-server separately), errors (non-2xx, socket errors), RSS
per worker and the load average, then each goal of issue 11 as PASS or MISS. Results are
appended to bench/results/compare.jsonl with the commit and the settings. The password
grant's reference is argon2 verifies/s with the server's parameters, measured in the same
run by as many processes as cores. Needs wrk (apt-get install wrk), node and npm, and the
local PostgreSQL and Redis. Never part of `make test`; nothing here is imported by the product.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.dirname(sys.executable)
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = ("127.0.0.1", 6379)
AUTHSERVER_REDIS_DB = 14
PEER_BASIC = "Basic " + base64.b64encode(b"bench:bench-secret").decode()
CACHE = os.path.expanduser("~/.cache/authserver-bench")
TICK = os.sysconf("SC_CLK_TCK")

# --- processes and their CPU time -------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and its reaped children) from /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            rest = fh.read().rpartition(")")[2].split()
    except OSError:
        return None
    # After the name: state ppid ... utime(11) stime(12) cutime(13) cstime(14).
    return int(rest[1]), sum(int(v) for v in rest[11:15]) / TICK


def _all_stats() -> dict[int, tuple[int, float]]:
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := _stat(int(name))) is not None:
            found[int(name)] = stat
    return found


def tree(root: int) -> tuple[list[int], float]:
    """The live process tree under `root` (root first) and its CPU seconds. A worker that
    exited was reaped by its parent, whose children's time then holds its time."""
    stats = _all_stats()
    pids, queue = [], [root]
    while queue:
        pid = queue.pop()
        if pid in stats:
            pids.append(pid)
            queue += [p for p, (ppid, _) in stats.items() if ppid == pid]
    return pids, sum(stats[p][1] for p in pids)


def cpu_of(pids: list[int]) -> dict[int, float]:
    return {p: s[1] for p in pids if (s := _stat(p)) is not None}


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            kb = re.search(r"VmRSS:\s+(\d+)", fh.read())
    except OSError:
        return 0.0
    return int(kb.group(1)) / 1024 if kb else 0.0


def pids_titled(*parts: str) -> list[int]:
    """Processes whose command line (or title) holds every one of `parts`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(part in cmd for part in parts):
            found.append(int(name))
    return found


def redis_server_pid() -> int | None:
    found = pids_titled("redis-server", f":{REDIS[1]}")
    return found[0] if found else None


def free_port(pair: bool = False) -> int:
    """A free loopback port (with `pair`, also the next one: the peer's helper uses it)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if not pair or port >= 65535:
            return port
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind(("127.0.0.1", port + 1))
            return port
    sys.exit("bench: no free port pair")


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bench: {what} exited with {proc.returncode} while starting")
        try:
            urllib.request.urlopen(url, timeout=1)  # noqa: S310 - loopback
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"bench: {what} did not answer {url} within {limit} s")


def http(
    url: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> Any:
    """One request (GET, or a form POST); the body, parsed when JSON. Fails loudly."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers=headers or {})  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
        raw = response.read().decode()
    with contextlib.suppress(ValueError):
        return json.loads(raw)
    return raw


# --- the servers ------------------------------------------------------------------------


@dataclass
class Server:
    """A server under test: the peer, or authserver from a tree (current or baseline)."""

    label: str
    kind: str  # "peer" or "authserver"
    base: str
    proc: Any  # subprocess.Popen; None until started
    database: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    work: str = ""
    commit: str = ""
    refresh_rate: float = 1000.0  # last measured refresh req/s, to size the next token batch

    def workers(self) -> list[int]:
        pids, _ = tree(self.proc.pid)
        return pids[1:] or pids

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def peer_dir(args: argparse.Namespace) -> str:
    """The peer's files, copied once into the cache with node_modules installed there."""
    source = os.path.abspath(args.peer)
    if not os.path.isfile(os.path.join(source, "server.mjs")):
        sys.exit(
            f"bench: the peer is not at {source} (expected server.mjs there). It lives in"
            " ../shared/bench-peer next to the checkout; point --peer or"
            " AUTHSERVER_BENCH_PEER at a copy, or run with --no-peer."
        )
    files = sorted(n for n in os.listdir(source) if os.path.isfile(os.path.join(source, n)))
    digest = hashlib.sha256()
    for name in files:
        with open(os.path.join(source, name), "rb") as fh:
            digest.update(name.encode() + b"\0" + fh.read())
    target = os.path.join(CACHE, "peer-" + digest.hexdigest()[:12])
    if not os.path.isdir(os.path.join(target, "node_modules")):
        os.makedirs(target, exist_ok=True)
        for name in files:
            shutil.copy(os.path.join(source, name), target)
        print(f"bench: npm ci in {target} (once)", flush=True)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=target, check=True)
    return target


def start_peer(args: argparse.Namespace, work: str) -> Server:
    folder = peer_dir(args)
    port = free_port(pair=True)
    env = {**os.environ, "NODE_ENV": "production"}
    if args.peer_layout == "redis":
        env |= {"WORKERS": "2", "ADAPTER": "redis", "REDIS_URL": args.peer_redis}
    log = open(os.path.join(work, "peer.log"), "wb")  # noqa: SIM115 - closed with the run
    proc = subprocess.Popen(
        ["node", "server.mjs", str(port)], cwd=folder, env=env, stdout=log, stderr=log
    )
    server = Server("peer", "peer", f"http://127.0.0.1:{port}", proc)
    wait_http(server.base + "/.well-known/openid-configuration", proc, "the peer")
    wait_http(f"http://127.0.0.1:{port + 1}/mint-user-token", proc, "the peer's helper")
    return server


def export_tree(rev: str, work: str) -> tuple[str, str]:
    """The files of `rev` in a new folder (git archive: the repository is left as it was)."""
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    folder = os.path.join(work, f"tree-{commit[:10]}")
    os.makedirs(folder)
    archive = subprocess.Popen(["git", "archive", commit], cwd=ROOT, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", folder], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        sys.exit(f"bench: git archive {rev} failed")
    return folder, commit


def prepare_authserver(
    label: str, tree_dir: str, commit: str, work: str, workers: int | None
) -> Server:
    """A fresh database (schema, signing keys) and Redis prefix for the code in `tree_dir`,
    seeded by bench/seed.py; the Server's settings in `env`, not started yet."""
    database = f"authserver_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')  # type: ignore[arg-type]
    folder = os.path.join(work, label)
    os.makedirs(folder)
    port = free_port()
    settings = {
        "AUTHSERVER_INSTANCE_PATH": folder,
        "AUTHSERVER_SECRET_KEY": uuid.uuid4().hex * 2,
        "AUTHSERVER_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
        "AUTHSERVER_REDIS_URL": f"redis://{REDIS[0]}:{REDIS[1]}/{AUTHSERVER_REDIS_DB}",
        "AUTHSERVER_REDIS_PREFIX": f"bench-{uuid.uuid4().hex[:8]}:",
        "AUTHSERVER_ISSUER": f"http://127.0.0.1:{port}",
        "AUTHSERVER_MAIL_URL": f"file://{folder}/outbox",
        "AUTHSERVER_SMS_URL": f"file://{folder}/outbox",
    }
    env = {**os.environ, **settings, "PYTHONPATH": tree_dir, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the config file makes a private one
    if workers:
        env["WEB_CONCURRENCY"] = str(workers)
    server = Server(label, "authserver", settings["AUTHSERVER_ISSUER"], None, database)
    server.env, server.work, server.commit = env, folder, commit
    try:
        for step in (["db", "upgrade"], ["keys", "rotate"]):
            subprocess.run([f"{BIN}/authserver", *step], env=env, check=True, capture_output=True)
        world = os.path.join(folder, "world.json")
        seed = [sys.executable, os.path.join(HERE, "seed.py"), "world", world]
        subprocess.run(seed, env=env, check=True)
    except BaseException:
        drop_authserver(server)
        raise
    with open(world, encoding="utf-8") as fh:
        server.data = json.load(fh)
    return server


def start_authserver(
    label: str, tree_dir: str, commit: str, args: argparse.Namespace, work: str
) -> Server:
    """gunicorn -c deploy/gunicorn.conf.py (of `tree_dir`) on a fresh, seeded database."""
    server = prepare_authserver(label, tree_dir, commit, work, args.workers)
    folder, env, port = server.work, server.env, server.base.rsplit(":", 1)[1]
    log = open(os.path.join(folder, "server.log"), "wb")  # noqa: SIM115 - closed with the run
    config = os.path.join(tree_dir, "deploy", "gunicorn.conf.py")
    server.proc = subprocess.Popen(
        [f"{BIN}/gunicorn", "-c", config, "-b", f"127.0.0.1:{port}", "authserver:create_app()"],
        cwd=tree_dir,
        env=env,
        stdout=log,
        stderr=log,
    )
    wait_http(server.base + "/healthz", server.proc, f"authserver ({label})")
    return server


def drop_authserver(server: Server) -> None:
    if server.database:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{server.database}" WITH (FORCE)')  # type: ignore[arg-type]
    prefix = server.env.get("AUTHSERVER_REDIS_PREFIX")
    if prefix:
        with contextlib.suppress(OSError):
            redis_delete_prefix(AUTHSERVER_REDIS_DB, prefix)


def redis_delete_prefix(db: int, prefix: str) -> None:
    """Delete the run's keys (redis-cli: no Redis client library needed here)."""
    cli = shutil.which("redis-cli")
    if not cli:
        return
    keys = subprocess.run(
        [cli, "-n", str(db), "--scan", "--pattern", prefix + "*"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    for start in range(0, len(keys), 500):
        subprocess.run(
            [cli, "-n", str(db), "DEL", *keys[start : start + 500]],
            capture_output=True,
            check=False,
        )


def git(*argv: str) -> str:
    return subprocess.run(
        ["git", *argv], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


# --- one measurement --------------------------------------------------------------------

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(match.group(1)) * UNITS[match.group(2)] if match else float("nan")


def parse_wrk(out: str) -> dict[str, Any]:
    def number(pattern: str) -> int:
        found = re.search(pattern, out)
        return int(found.group(1)) if found else 0

    latency = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    top = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    sockets = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": number(r"(\d+) requests in"),
        "p50_ms": _ms(latency.get("50", "")),
        "p99_ms": _ms(latency.get("99", "")),
        "max_ms": _ms(top.group(1)) if top else float("nan"),
        "non2xx": number(r"Non-2xx or 3xx responses: (\d+)"),
        "socket_errors": sum(int(v) for v in sockets.groups()) if sockets else 0,
        "timeouts": int(sockets.group(4)) if sockets else 0,
    }


@dataclass(frozen=True)
class Load:
    """What wrk sends: a URL and a Lua script with its arguments."""

    url: str
    script: str | None = None
    script_args: tuple[str, ...] = ()


def wrk(load: Load, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    cmd = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
    ]
    cmd += ["--timeout", f"{max(1, round(args.timeout))}s"]
    if load.script:
        cmd += ["-s", os.path.join(HERE, load.script), load.url, "--", *load.script_args]
    else:
        cmd.append(load.url)
    return parse_wrk(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


class Meter:
    """CPU seconds of a server's process tree (and, for authserver, of its PostgreSQL
    backends and of redis-server) across one measurement; RSS of its workers after it."""

    def __init__(self, server: Server, redis_pid: int | None):
        self.server, self.redis_pid = server, redis_pid

    def _backends(self) -> list[int]:
        """The database's PostgreSQL backends, by their process titles ("postgres: USER DB
        HOST(PORT) STATE"): no connection of our own, which a full server would refuse."""
        if not self.server.database:
            return []
        return pids_titled(f" {self.server.database} ")

    @contextlib.contextmanager
    def measure(self, result: dict[str, Any]) -> Iterator[None]:
        _, own = tree(self.server.proc.pid)
        pg = cpu_of(self._backends())
        redis = cpu_of([self.redis_pid]) if self.redis_pid else {}
        yield
        _, own_after = tree(self.server.proc.pid)
        pg_after = cpu_of(self._backends())
        redis_after = cpu_of([self.redis_pid]) if self.redis_pid else {}
        requests = max(1, result["requests"])
        result["cpu_us"] = (own_after - own) * 1e6 / requests
        if self.server.kind == "authserver":
            pg_s = sum(v - pg.get(p, 0.0) for p, v in pg_after.items())
            result["pg_cpu_us"] = pg_s * 1e6 / requests
        redis_s = sum(v - redis.get(p, 0.0) for p, v in redis_after.items())
        result["redis_cpu_us"] = redis_s * 1e6 / requests
        rss = [rss_mib(p) for p in self.server.workers()]
        result["rss_mib"] = round(statistics.mean(rss), 1) if rss else 0.0


# --- scenarios --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A load for authserver and what it is compared with: a peer load (its own, or the
    one of another scenario: `peer_ref`) or argon2 verifies (`argon2`)."""

    name: str
    title: str
    authserver: Callable[[Server, argparse.Namespace], Load] | None
    peer: Callable[[Server], Load] | None = None
    peer_ref: str | None = None  # reuse another scenario's peer figures
    goal: float | None = None  # least authserver/reference req/s ratio
    cpu_goal: float | None = None  # most authserver/peer CPU-per-request ratio
    argon2: bool = False
    warmup: bool = True  # a warm-up run does no harm (nothing is spent)


def _user_token(server: Server) -> str:
    """A user access token (scope openid profile email) from the password grant."""
    data = server.data
    reply = http(
        server.base + "/oauth/token",
        {
            "grant_type": "password",
            "username": data["username"],
            "password": data["password"],
            "scope": f"{data['scope']} aid:{data['aid']}",
        },
        {"Authorization": data["basic"]},
    )
    return str(reply["access_token"])


def _peer_user_token(server: Server) -> str:
    port = int(server.base.rsplit(":", 1)[1])
    return str(http(f"http://127.0.0.1:{port + 1}/mint-user-token")).strip()


def _refresh_tokens(server: Server, args: argparse.Namespace) -> str:
    """A fresh batch of refresh tokens, enough for one run at the last measured rate."""
    count = int(min(200_000, max(2_000, server.refresh_rate * args.seconds * 2)))
    out = os.path.join(server.work, "refresh-tokens.txt")
    world = os.path.join(server.work, "world.json")
    cmd = [sys.executable, os.path.join(HERE, "seed.py"), "refresh-tokens", world, str(count), out]
    subprocess.run(cmd, env=server.env, check=True)
    return out


def _form(base: str, path: str, body: str, auth: str) -> Load:
    return Load(base + path, "post.lua", (body, auth))


SCENARIOS = [
    Scenario(
        "discovery",
        "discovery",
        lambda s, a: Load(s.base + "/.well-known/openid-configuration"),
        lambda p: Load(p.base + "/.well-known/openid-configuration"),
        goal=1.0,
    ),
    Scenario(
        "jwks",
        "JWKS",
        lambda s, a: Load(s.base + "/oauth/jwks"),
        lambda p: Load(p.base + "/jwks"),
        goal=1.0,
    ),
    Scenario(
        "client_credentials",
        "client_credentials (peer: ES256 JWT)",
        lambda s, a: _form(
            s.base, "/oauth/token", "grant_type=client_credentials", s.data["basic"]
        ),
        lambda p: _form(
            p.base,
            "/token",
            "grant_type=client_credentials&scope=api%3Aread&resource=urn%3Abench%3Aes256",
            PEER_BASIC,
        ),
        goal=1.0,
        cpu_goal=2.0,
    ),
    Scenario(
        "client_credentials_opaque",
        "client_credentials, peer's opaque token (reference for refresh)",
        None,
        lambda p: _form(
            p.base, "/token", "grant_type=client_credentials&scope=api%3Aread", PEER_BASIC
        ),
    ),
    Scenario(
        "introspection",
        "introspection",
        lambda s, a: _form(s.base, "/oauth/introspect", f"token={_user_token(s)}", s.data["basic"]),
        lambda p: _form(p.base, "/token/introspection", f"token={_peer_user_token(p)}", PEER_BASIC),
        goal=1.0,
    ),
    Scenario(
        "userinfo",
        "userinfo",
        lambda s, a: Load(s.base + "/oauth/userinfo", "get.lua", (f"Bearer {_user_token(s)}",)),
        lambda p: Load(p.base + "/me", "get.lua", (f"Bearer {_peer_user_token(p)}",)),
        goal=1.0,
    ),
    Scenario(
        "v1_user",
        "GET /v1/user (peer: userinfo)",
        lambda s, a: Load(s.base + "/v1/user", "get.lua", (f"Bearer {_user_token(s)}",)),
        peer_ref="userinfo",
        goal=1.0,
    ),
    Scenario(
        "refresh",
        "refresh grant (peer: opaque client_credentials)",
        lambda s, a: Load(
            s.base + "/oauth/token",
            "refresh.lua",
            (_refresh_tokens(s, a), str(a.threads), s.data["basic"]),
        ),
        peer_ref="client_credentials_opaque",
        goal=0.25,
        warmup=False,
    ),
    Scenario(
        "password",
        "password grant (reference: argon2 verifies/s)",
        lambda s, a: Load(
            s.base + "/oauth/token",
            "password.lua",
            (
                str(s.data["users"]),
                urllib.parse.quote_plus(s.data["password"]),
                s.data["aid"],
                s.data["basic"],
            ),
        ),
        goal=0.9,
        argon2=True,
        warmup=False,
    ),
]
BY_NAME = {s.name: s for s in SCENARIOS}

ARGON2_LOOP = """
import sys, time
from argon2 import PasswordHasher
t, m, p, seconds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
hasher = PasswordHasher(time_cost=t, memory_cost=m, parallelism=p)
stored = hasher.hash("bench password 123")
n, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    hasher.verify(stored, "bench password 123")
    n += 1
print(n)
"""


def argon2_rate(args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    """argon2id verifies/s with the server's parameters, one process per core at once
    (the hash made first is not counted: it is outside the timed loop's count)."""
    from authserver.platform.config import Defaults

    params = [Defaults.ARGON2_TIME_COST, Defaults.ARGON2_MEMORY_COST, Defaults.ARGON2_PARALLELISM]
    load = round(os.getloadavg()[0], 2)
    before = os.times()
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ARGON2_LOOP, *map(str, params), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(os.cpu_count() or 1)
    ]
    counts = [int(p.communicate()[0]) for p in procs]
    elapsed = time.monotonic() - started
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    total = sum(counts)
    return {
        "rps": total / max(elapsed, 1e-9),
        "requests": total,
        "cpu_us": cpu * 1e6 / max(1, total),
        "p50_ms": float("nan"),
        "p99_ms": float("nan"),
        "max_ms": float("nan"),
        "non2xx": 0,
        "socket_errors": 0,
        "timeouts": 0,
        "processes": len(procs),
        "loadavg": load,
        "params": params,
    }


# --- the run ----------------------------------------------------------------------------


def run_one(
    scenario: Scenario, server: Server, args: argparse.Namespace, redis_pid: int | None, first: bool
) -> dict[str, Any]:
    if server.kind == "peer":
        source = scenario if scenario.peer else BY_NAME[scenario.peer_ref or ""]
        assert source.peer is not None
        load = source.peer(server)
    else:
        assert scenario.authserver is not None
        load = scenario.authserver(server, args)
    if first and scenario.warmup and args.warmup > 0:
        wrk(load, args, args.warmup)
    result: dict[str, Any] = {"loadavg": round(os.getloadavg()[0], 2)}
    meter = Meter(server, redis_pid)
    with meter.measure(result):
        result |= wrk(load, args, args.seconds)
    if scenario.name == "refresh" and server.kind == "authserver":
        server.refresh_rate = result["rps"]
    return result


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float:
        values = [r[key] for r in results if key in r and r[key] == r[key]]
        return statistics.median(values) if values else float("nan")

    rps = [r["rps"] for r in results]
    return {
        "rps": med("rps"),
        "rps_min": min(rps),
        "rps_max": max(rps),
        "p50_ms": med("p50_ms"),
        "p99_ms": med("p99_ms"),
        "max_ms": max(
            (r["max_ms"] for r in results if r["max_ms"] == r["max_ms"]), default=float("nan")
        ),
        "cpu_us": med("cpu_us"),
        "pg_cpu_us": med("pg_cpu_us"),
        "redis_cpu_us": med("redis_cpu_us"),
        "errors": sum(r["non2xx"] + r["socket_errors"] for r in results),
        "timeouts": sum(r["timeouts"] for r in results),
        "rss_mib": med("rss_mib"),
        "loadavg": [r.get("loadavg") for r in results],
    }


def _f(value: float, fmt: str = ".0f") -> str:
    return "-" if value != value else format(value, fmt)


def print_scenario(scenario: Scenario, table: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The scenario's lines and its goals; returns the goal verdicts."""
    print(f"\n== {scenario.title}")
    print(
        f"  {'server':<10} {'req/s':>8} {'(min-max)':>15} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'CPU us/req':>10} {'+pg':>6} {'+redis':>6} {'errors':>6} {'RSS MiB':>8}  load"
    )
    for label, s in table.items():
        spread = f"{_f(s['rps_min'])}-{_f(s['rps_max'])}"
        print(
            f"  {label:<10} {_f(s['rps']):>8} {spread:>15} {_f(s['p50_ms'], '.1f'):>8}"
            f" {_f(s['p99_ms'], '.1f'):>8} {_f(s['cpu_us']):>10} {_f(s['pg_cpu_us']):>6}"
            f" {_f(s['redis_cpu_us']):>6} {s['errors']:>6} {_f(s['rss_mib'], '.0f'):>8}"
            f"  {' '.join(str(v) for v in s['loadavg'])}"
        )
    verdicts = []
    reference = table.get("argon2") or table.get("peer")
    current = table.get("current")
    if current is None:
        return verdicts

    def verdict(goal: str, value: float, ok: bool) -> None:
        verdicts.append({"goal": goal, "value": round(value, 3), "pass": bool(ok)})
        print(f"  {'PASS' if ok else 'MISS'}  {goal}: {_f(value, '.2f')}")

    if "baseline" in table and table["baseline"]["rps"]:
        print(
            f"  current/baseline: req/s {current['rps'] / table['baseline']['rps']:.2f}x,"
            f" CPU {current['cpu_us'] / table['baseline']['cpu_us']:.2f}x"
        )
    if reference is not None and scenario.goal is not None:
        ratio = current["rps"] / reference["rps"]
        verdict(f"req/s >= {scenario.goal}x the reference", ratio, ratio >= scenario.goal)
        if scenario.cpu_goal is not None:
            cpu = current["cpu_us"] / reference["cpu_us"]
            verdict(
                f"CPU per request <= {scenario.cpu_goal}x the peer's", cpu, cpu <= scenario.cpu_goal
            )
        if not scenario.argon2:
            p99 = current["p99_ms"] / reference["p99_ms"]
            verdict("p99 <= 2x the peer's", p99, p99 <= 2.0)
    if scenario.argon2:
        verdict(
            "no request past 5 s (max latency, s)",
            current["max_ms"] / 1000,
            current["timeouts"] == 0 and current["max_ms"] < 5000,
        )
    else:
        verdict("errors == 0", current["errors"], current["errors"] == 0)
    return verdicts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10, help="wrk duration per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--timeout", type=float, default=5, help="wrk's per-request timeout, s")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of unrecorded load first")
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s, 1 s warm-up")
    parser.add_argument("--scenarios", default="", help=f"comma-separated: {','.join(BY_NAME)}")
    parser.add_argument("--baseline", metavar="REV", help="also run authserver at this revision")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: the config's)")
    parser.add_argument(
        "--peer",
        default=os.environ.get("AUTHSERVER_BENCH_PEER")
        or os.path.join(ROOT, "..", "shared", "bench-peer"),
    )
    parser.add_argument("--peer-layout", choices=["redis", "memory"], default="redis")
    parser.add_argument("--peer-redis", default=f"redis://{REDIS[0]}:{REDIS[1]}/9")
    parser.add_argument("--no-peer", action="store_true", help="authserver alone, no ratios")
    parser.add_argument("--results", default=os.path.join(HERE, "results", "compare.jsonl"))
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 3, 1
    names = [n for n in args.scenarios.split(",") if n] or [
        s.name for s in SCENARIOS if s.authserver is not None
    ]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    args.names = names
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for tool in ("wrk",) + (() if args.no_peer else ("node", "npm")):
        if not shutil.which(tool):
            sys.exit(
                f"bench: {tool} is missing"
                " (wrk: apt-get install wrk; node and npm: apt-get install nodejs npm)"
            )
    work = tempfile.mkdtemp(prefix="authserver-compare-")
    servers: list[Server] = []
    record: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "host": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
        "settings": {
            k: getattr(args, k)
            for k in (
                "rounds",
                "seconds",
                "connections",
                "threads",
                "timeout",
                "warmup",
                "workers",
                "peer_layout",
                "baseline",
            )
        },
        "scenarios": {},
    }
    # SIGTERM (a CI timeout, kill) cleans up like Ctrl-C: servers stopped, databases dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench: terminated"))
    try:
        peer = None if args.no_peer else start_peer(args, work)
        if peer:
            servers.append(peer)
        if args.baseline:
            tree_dir, commit = export_tree(args.baseline, work)
            servers.append(start_authserver("baseline", tree_dir, commit, args, work))
        servers.append(start_authserver("current", ROOT, record["commit"], args, work))
        redis_pid = redis_server_pid()
        print(
            f"bench: {', '.join(f'{s.label} {s.base}' for s in servers)};"
            f" wrk -t{args.threads} -c{args.connections} -d{args.seconds:g}s x {args.rounds};"
            f" {os.cpu_count()} CPUs; load {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
            flush=True,
        )
        peer_runs: dict[tuple[str, int], dict[str, Any]] = {}
        verdicts: list[dict[str, Any]] = []
        for name in args.names:
            scenario = BY_NAME[name]
            runs: dict[str, list[dict[str, Any]]] = {}
            for round_ in range(args.rounds):
                if scenario.argon2 and not args.no_peer:
                    runs.setdefault("argon2", []).append(argon2_rate(args, args.seconds))
                for server in servers:
                    if server.kind == "peer":
                        key = (scenario.peer_ref or name, round_)
                        if scenario.argon2:
                            continue
                        if key not in peer_runs:
                            peer_runs[key] = run_one(scenario, server, args, redis_pid, round_ == 0)
                        result = peer_runs[key]
                    elif scenario.authserver is None:
                        continue
                    else:
                        try:
                            result = run_one(scenario, server, args, redis_pid, round_ == 0)
                        except (subprocess.CalledProcessError, OSError, KeyError) as exc:
                            # A busy machine (PostgreSQL out of connections while seeding,
                            # a token that could not be minted): this run is lost, not all.
                            print(f"  {server.label} round {round_ + 1}: failed: {exc}")
                            record.setdefault("failures", []).append(
                                {"scenario": name, "server": server.label, "error": str(exc)}
                            )
                            continue
                    runs.setdefault(server.label, []).append(result)
            table = {label: summary(r) for label, r in runs.items()}
            for v in print_scenario(scenario, table):
                verdicts.append({"scenario": name, **v})
            sys.stdout.flush()
            record["scenarios"][name] = {"runs": runs, "summary": table}
        record["verdicts"] = verdicts
        record["baseline_commit"] = next((s.commit for s in servers if s.label == "baseline"), None)
        record["host"]["loadavg_end"] = os.getloadavg()
        os.makedirs(os.path.dirname(args.results), exist_ok=True)
        with open(args.results, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        missed = [v for v in verdicts if not v["pass"]]
        print(
            f"\nbench: {len(verdicts) - len(missed)} goals met, {len(missed)} missed;"
            f" appended to {args.results}"
        )
    finally:
        for server in servers:
            server.stop()
        for server in servers:
            if server.kind == "authserver":
                drop_authserver(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
