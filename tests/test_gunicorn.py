"""Production serving: gunicorn with several workers on the real services, and memory://."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import pytest
from factories import PASSWORD
from key_helpers import TEST_KEY_SECRET

GUNICORN = os.path.join(os.path.dirname(sys.executable), "gunicorn")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def serve(instance_path, database_url, make_config):
    """Starts gunicorn on a free port with the given worker count and settings (on the
    test's database, which make_config gives the suite's signing keys)."""
    procs: list[subprocess.Popen[str]] = []

    def start(workers: int, **env: str) -> tuple[subprocess.Popen[str], str]:
        port = _free_port()
        proc = subprocess.Popen(
            [GUNICORN, "-w", str(workers), "-b", f"127.0.0.1:{port}", "authserver:create_app()"],
            env={
                **os.environ,
                "AUTHSERVER_INSTANCE_PATH": instance_path,
                "AUTHSERVER_SECRET_KEY": "g" * 40,
                "AUTHSERVER_KEY_ENCRYPTION_SECRET": TEST_KEY_SECRET,  # opens the seeded keys
                "AUTHSERVER_DATABASE_URL": database_url,
                "AUTHSERVER_MAIL_URL": "console:",
                "AUTHSERVER_SMS_URL": "console:",
                **env,
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        return proc, f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=20)
        assert proc.stdout is not None
        proc.stdout.close()


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _wait_up(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "gunicorn exited early"
        try:
            _get(url + "/healthz")
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("gunicorn did not come up")


def test_several_workers_serve_on_postgres_and_redis(app, serve):
    """Three gunicorn workers start on the real services and every request is ready (200)."""
    redis_url = app.config["REDIS_URL"]
    if redis_url.startswith("memory://"):
        redis_url = "redis://127.0.0.1:6379/15"
    proc, url = serve(3, AUTHSERVER_REDIS_URL=redis_url)
    _wait_up(url, proc)
    assert [_get(url + "/readyz") for _ in range(30)] == [200] * 30


def test_memory_store_refuses_a_second_worker(serve):
    """With memory://, two workers make gunicorn stop, saying memory:// serves one process."""
    proc, _ = serve(2, AUTHSERVER_REDIS_URL="memory://")
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "memory:// serves one process only" in output


def test_memory_store_serves_a_single_worker(serve):
    """With memory:// and one worker, gunicorn serves and the store is ready."""
    proc, url = serve(1, AUTHSERVER_REDIS_URL="memory://")
    _wait_up(url, proc)
    assert _get(url + "/readyz") == 200


def _post(url: str, form: dict[str, str]) -> tuple[int, dict[str, str], str]:
    data = urllib.parse.urlencode(form).encode()
    try:
        with urllib.request.urlopen(url, data=data, timeout=30) as response:  # noqa: S310 - loopback only
            return int(response.status), dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), dict(exc.headers), exc.read().decode()


def test_database_faults_under_gunicorn(app, world, serve, pg_proxy, database_url):
    """Findings 2 and 3 as measured: with PostgreSQL cut, then frozen, behind gunicorn the
    token endpoint answers 503 temporarily_unavailable with Retry-After (never the
    server's bare 500 page) within seconds, /healthz stays up, and it heals on its own."""
    from faults import through_proxy

    redis_url = app.config["REDIS_URL"]
    if redis_url.startswith("memory://"):
        pytest.skip("needs a Redis shared with the workers")
    proc, url = serve(
        1,
        AUTHSERVER_DATABASE_URL=through_proxy(database_url, pg_proxy),
        AUTHSERVER_REDIS_URL=redis_url,
        AUTHSERVER_REDIS_PREFIX=app.config["REDIS_PREFIX"],
        AUTHSERVER_DATABASE_CONNECT_TIMEOUT="2",
        AUTHSERVER_DATABASE_STATEMENT_TIMEOUT="1",
        GUNICORN_CMD_ARGS="--threads 4",
    )
    _wait_up(url, proc)
    form = {
        "grant_type": "password",
        "username": "alice",
        "password": PASSWORD,
        "client_id": world.public_id,
        "scope": f"aid:{world.live_id}",
    }
    assert _post(url + "/oauth/token", form)[0] == 200
    token_url = url + "/oauth/token"
    for break_it in (pg_proxy.cut, pg_proxy.freeze):
        break_it()
        answers: list[tuple[int, dict[str, str], str]] = []
        started = time.monotonic()
        call = threading.Thread(target=lambda box=answers: box.append(_post(token_url, form)))
        call.start()
        assert _get(url + "/healthz") == 200  # while the token request waits on the database
        call.join(30)
        assert time.monotonic() - started < 6
        status, headers, body = answers[0]
        assert status == 503 and '"temporarily_unavailable"' in body
        assert int(headers["Retry-After"]) > 0
        pg_proxy.restore()
        assert _post(url + "/oauth/token", form)[0] == 200
