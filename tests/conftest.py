"""Shared fixtures: an app on real PostgreSQL and Redis (or the embedded defaults), clients.

`AUTHSERVER_TEST_DATABASE_URL` / `AUTHSERVER_TEST_REDIS_URL` choose the backends. Unset,
the local PostgreSQL (127.0.0.1:5432, database `test`) and Redis (127.0.0.1:6379, db 15)
are used when they answer, and SQLite / memory:// otherwise, which the run says up front.
Each test process (one per pytest-xdist worker) gets its own PostgreSQL database with the
schema built once; each test gets its own Redis key prefix, and its rows and keys are
deleted after it, so every test starts with empty tables and no keys, and runs on one
machine (a developer's and CI's, say) never touch each other's data.
"""

from __future__ import annotations

import email
import email.policy
import io
import itertools
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from factories import OidcWorld, World, make_oidc_world, make_world
from faults import RedisServer, TcpProxy, target_of, through_proxy
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from http_helpers import serving
from key_helpers import TEST_KEY_SECRET
from redis import Redis
from werkzeug.routing import Rule

from authserver import create_app
from authserver.platform import background, delivery, keys
from authserver.platform.extensions import db
from authserver.platform.models import SigningKey
from authserver.platform.store import Store

LOCAL_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LOCAL_REDIS = "redis://127.0.0.1:6379/15"
CHEAP_ARGON2 = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 8, "ARGON2_PARALLELISM": 1}


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _choose_backends() -> tuple[str, str, list[str]]:
    notes = []
    database = os.environ.get("AUTHSERVER_TEST_DATABASE_URL", "")
    if not database:
        if _reachable("127.0.0.1", 5432):
            database = LOCAL_PG
        else:
            database = "sqlite://"  # replaced per session by a file in a temp dir
            notes.append("PostgreSQL on 127.0.0.1:5432 is not reachable: using SQLite")
    redis_url = os.environ.get("AUTHSERVER_TEST_REDIS_URL", "")
    if not redis_url:
        if _reachable("127.0.0.1", 6379):
            redis_url = LOCAL_REDIS
        else:
            redis_url = "memory://"
            notes.append("Redis on 127.0.0.1:6379 is not reachable: using memory://")
    return database, redis_url, notes


DATABASE_URL, REDIS_URL, NOTES = _choose_backends()


def _reuse_url_builders() -> None:
    """Build each URL rule's builder once per test process instead of once per app.

    Werkzeug compiles two small functions (with `ast` and `compile`) for every URL rule
    of every app: ~50 ms an app, and the suite builds an app or two per test. A builder
    is a pure function of the rule's text, parsed parts and defaults (the rule comes in
    as an argument), so apps with the same rules can share them. Tests only: the server
    builds one app per process.
    """
    compile_builder = Rule._compile_builder
    builders: dict[tuple[Any, ...], Any] = {}

    def shared(rule: Rule, append_unknown: bool = True) -> Any:
        key = (rule.rule, tuple(rule._trace), repr(rule.defaults), append_unknown)
        if key not in builders:
            builders[key] = compile_builder(rule, append_unknown)
        return builders[key]

    Rule._compile_builder = shared  # type: ignore[method-assign]


_reuse_url_builders()
RUN_PREFIX = f"authserver-test-{uuid.uuid4().hex[:12]}"  # this process's; a test adds its number


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"authserver backends: database={DATABASE_URL} (a fresh database per run)"
        f" redis={REDIS_URL} (prefix {RUN_PREFIX}-<test>:)",
        *NOTES,
    ]


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("authserver-session"))


@contextmanager
def temporary_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database next to `admin_url`, dropped on exit."""
    name = f"authserver_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(session_dir: str) -> Iterator[str]:
    """This process's database, with the schema built once: a fresh PostgreSQL database,
    or a SQLite file."""
    if DATABASE_URL == "sqlite://":
        url = f"sqlite:///{session_dir}/test.sqlite3"
        _create_schema(url)
        yield url
    elif DATABASE_URL.startswith("postgresql"):
        with temporary_database(DATABASE_URL) as url:
            _create_schema(url)
            yield url
    else:
        _create_schema(DATABASE_URL)
        yield DATABASE_URL


def _create_schema(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        db.metadata.create_all(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def cleaner(database_url: str) -> Iterator[Callable[[str], None]]:
    """cleaner(prefix): empty every table and delete the Redis keys under `prefix`, on one
    connection kept for the whole session (a test's own apps close theirs)."""
    engine = sa.create_engine(database_url, pool_size=1)
    tables = list(reversed(db.metadata.sorted_tables))
    # memory:// lives and dies with its app; a Redis server keeps keys until deleted.
    redis = None if REDIS_URL.startswith("memory:") else Redis.from_url(REDIS_URL)

    def forget_keys(prefix: str) -> None:
        if redis is not None:
            Store(redis, prefix).flush_prefix()

    # PostgreSQL takes every DELETE in one round trip; SQLite's driver runs one at a time.
    one_trip = engine.dialect.name == "postgresql"
    everything = "; ".join(f'DELETE FROM "{table.name}"' for table in tables)  # noqa: S608 - our own table names

    def clean(prefix: str) -> None:
        with engine.begin() as conn:
            if one_trip:
                conn.exec_driver_sql(everything)
            else:
                for table in tables:
                    conn.execute(table.delete())
        forget_keys(prefix)

    yield clean
    engine.dispose()
    forget_keys(RUN_PREFIX)  # anything a failed test left behind
    if redis is not None:
        redis.close()


@pytest.fixture
def fresh_database_url(tmp_path: Any, database_url: str) -> Iterator[str]:
    """Another empty database of the kind the suite runs on, dropped afterwards."""
    if not database_url.startswith("postgresql"):
        yield f"sqlite:///{tmp_path}/fresh.sqlite3"
        return
    with temporary_database(database_url) as url:
        yield url


@pytest.fixture(scope="session")
def session_keys() -> list[keys.Key]:
    """One ES256 and one RSA key per session: generating an RSA key costs ~0.1 s."""
    now = datetime.now(UTC)
    return [keys.generate(alg, now) for alg in keys.ALGORITHMS]


@pytest.fixture(scope="session")
def seed_keys(database_url: str, session_keys: list[keys.Key]) -> Iterator[Callable[[], None]]:
    """seed_keys(): store the session's keys as current (encrypted with TEST_KEY_SECRET), as
    `authserver keys rotate` on a fresh install would; the cleaner deletes them after."""
    engine = sa.create_engine(database_url, pool_size=1)
    cipher = keys.derive_cipher(TEST_KEY_SECRET)
    since = datetime.now(UTC) - timedelta(hours=1)

    def seed() -> None:
        rows = [
            {
                "kid": str(key.kid),
                "alg": str(key.alg),
                "public_jwk": key.as_dict(private=False),
                "private_jwk": keys.encrypt_jwk(cipher, str(key.kid), key.as_dict(private=True)),
                "created_at": since,
                "activates_at": since,
            }
            for key in session_keys
        ]
        with engine.begin() as conn:
            conn.execute(sa.insert(SigningKey.__table__), rows)

    yield seed
    engine.dispose()


@pytest.fixture
def instance_path(tmp_path: Any) -> str:
    path = tmp_path / "instance"
    path.mkdir()
    return str(path)


@pytest.fixture
def redis_prefix() -> str:
    """This test's Redis key prefix, unique in the run."""
    return f"{RUN_PREFIX}-{next(_test_numbers)}:"


_test_numbers = itertools.count(1)


@pytest.fixture
def make_config(
    database_url: str,
    instance_path: str,
    redis_prefix: str,
    cleaner: Callable[[str], None],
    seed_keys: Callable[[], None],
) -> Iterator[Callable[..., dict[str, Any]]]:
    """Builds a test config; tests override single keys. The database starts with the
    session's signing keys; whatever the test wrote, rows and Redis keys, is deleted
    afterwards."""
    seed_keys()

    def make(**overrides: Any) -> dict[str, Any]:
        config = {
            "TESTING": True,
            "SECRET_KEY": "test-secret-key-that-is-long-enough-for-checks",
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "REDIS_PREFIX": redis_prefix,
            "MAIL_URL": "memory:",
            "SMS_URL": "memory:",
            "KEY_ENCRYPTION_SECRET": TEST_KEY_SECRET,
            "WTF_CSRF_ENABLED": False,
            # Tests run the delivery worker themselves (tests/webhook_helpers.py), so no
            # thread of a finished test's app retries into the next test's tables.
            "OUTBOX_IN_PROCESS": False,
            **CHEAP_ARGON2,
        }
        config.update(overrides)
        return config

    yield make
    cleaner(redis_prefix)


@pytest.fixture
def app(make_config: Any, instance_path: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    """The app on this process's database (empty tables) and this test's Redis prefix."""
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", instance_path)
    app = create_app(make_config())
    yield app
    background.jobs(app).close()  # no job may outlive its test's rows
    delivery.stop_in_process(app)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    app.extensions["authserver.store"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def web(app: Flask, make_app: Callable[..., Flask]) -> Flask:
    """An app with CSRF protection on, as in production (the suite's default has it off),
    on `app`'s tables and Redis: for the hosted pages and the browser-facing OAuth paths."""
    return make_app(WTF_CSRF_ENABLED=True)


@pytest.fixture
def browser(web: Flask) -> FlaskClient:
    """A test client of `web` (a browser with cookies)."""
    return web.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def store(app: Flask) -> Any:
    return app.extensions["authserver.store"]


@pytest.fixture
def make_app(
    make_config: Any, instance_path: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Flask]]:
    """Builds extra apps with config overrides (no tables); closes their pools afterwards."""
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", instance_path)
    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        app = create_app(make_config(**overrides))
        apps.append(app)
        return app

    yield make
    for app in apps:
        background.jobs(app).close()
        delivery.stop_in_process(app)
        with app.app_context():
            db.engine.dispose()
        app.extensions["authserver.store"].close()


@pytest.fixture
def log_stream(app: Flask) -> Iterator[io.StringIO]:
    """Points the app's real logfmt handler at a buffer for the test."""
    handler = next(
        h for h in logging.getLogger("authserver").handlers if h.get_name() == "authserver.logfmt"
    )
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    old = handler.setStream(stream)
    yield stream
    handler.setStream(old)


# ---------------------------------------------------------------- outside-world sinks
# A real local SMTP server (aiosmtpd) and an HTTP webhook standing in for the SMS gateway.


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unused_port() -> int:
    """A loopback port nobody listens on (a refused connection)."""
    return free_port()


class SmtpSink:
    """An aiosmtpd handler keeping every message it accepted."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(e.original_content, policy=email.policy.default)
            for e in self.envelopes
        ]


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpSink, int]]:
    """A real SMTP server on 127.0.0.1: (sink, port)."""
    sink = SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


class WebhookSink:
    """What a local SMS gateway received, and how it should answer."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.delay = 0.0
        self.release = threading.Event()
        self.url = ""


@pytest.fixture
def webhook() -> Iterator[WebhookSink]:
    """A real HTTP server on 127.0.0.1 recording JSON POSTs; `sink.url` is its address."""
    sink = WebhookSink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            sink.requests.append({"headers": dict(self.headers), "json": json.loads(raw)})
            sink.release.wait(sink.delay)
            try:
                self.send_response(sink.status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the client gave up waiting

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as base:
        sink.url = f"{base}/sms"
        yield sink
        sink.release.set()  # a held answer must not keep the server from stopping


class EventSink:
    """A local webhook receiver: every POST's raw body and headers, answered with the next
    status of `statuses` (then 200); `hold` makes it wait before answering."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.hold = threading.Event()
        self.hold.set()
        self.url = ""
        self.lock = threading.Lock()

    def ids(self) -> list[str]:
        return [r["headers"]["webhook-id"] for r in self.received]


@pytest.fixture
def event_sink() -> Iterator[EventSink]:
    """A real threaded HTTP server on 127.0.0.1 that records webhook deliveries."""
    sink = EventSink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            with sink.lock:
                sink.received.append({"headers": dict(self.headers), "body": raw})
                status = sink.statuses.pop(0) if sink.statuses else 200
            sink.hold.wait(30)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the worker gave up waiting (or was killed)

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as base:
        sink.url = f"{base}/hooks"
        yield sink
        sink.hold.set()  # a held answer must not keep the server from stopping


# ---------------------------------------------------------------- test data, mailing app
# The worlds of tests/factories.py as fixtures, and an app that mails over SMTP.


@pytest.fixture
def world(app: Flask) -> World:
    """Two account pairs, the users alice and tess, and the OAuth clients (make_world)."""
    return make_world(app)


@pytest.fixture
def oidc_world(app: Flask, world: World) -> OidcWorld:
    """`world` plus clients for the browser flows, with redirect URIs (make_oidc_world)."""
    return make_oidc_world(app, world)


@pytest.fixture
def mail_app(
    app: Flask, make_app: Callable[..., Flask], smtp: Any
) -> Callable[..., tuple[Flask, SmtpSink]]:
    """mail_app(**overrides) builds an app on `app`'s tables that sends its email to the
    `smtp` fixture's real local SMTP server: (that app, the SmtpSink)."""
    sink, port = smtp

    def make(**overrides: Any) -> tuple[Flask, SmtpSink]:
        return make_app(MAIL_URL=f"smtp://127.0.0.1:{port}", **overrides), sink

    return make


# ---------------------------------------------------------------- fault harness
# Servers a test owns and breaks (tests/faults.py); the shared ones are never touched.
FAST_DATABASE_FAULTS = {
    "DATABASE_CONNECT_TIMEOUT": 2,  # libpq's least
    "DATABASE_STATEMENT_TIMEOUT": 1,  # a mute server is cut after 2 s
    "DATABASE_POOL_TIMEOUT": 1,
}


@pytest.fixture
def pg_proxy(database_url: str) -> Iterator[TcpProxy]:
    """A TCP proxy in front of this process's PostgreSQL that the test can cut or freeze."""
    if not database_url.startswith("postgresql"):
        pytest.skip("database fault tests need PostgreSQL")
    proxy = TcpProxy(*target_of(database_url))
    yield proxy
    proxy.close()


@pytest.fixture
def db_fault_app(make_app: Callable[..., Flask], database_url: str, pg_proxy: TcpProxy) -> Flask:
    """An app on this test's tables and Redis, reaching PostgreSQL only through `pg_proxy`,
    with short database timeouts."""
    return make_app(DATABASE_URL=through_proxy(database_url, pg_proxy), **FAST_DATABASE_FAULTS)


@pytest.fixture
def own_redis(tmp_path: Any) -> Iterator[RedisServer]:
    """A redis-server of this test's own on a free port, to kill, freeze and restart."""
    server = RedisServer(str(tmp_path))
    yield server
    server.close()
