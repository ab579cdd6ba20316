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
    """Starts gunicorn on a free port with the given worker count, options and settings (on
    the test's database, which make_config gives the suite's signing keys)."""
    procs: list[subprocess.Popen[str]] = []

    def start(workers: int, *options: str, **env: str) -> tuple[subprocess.Popen[str], str]:
        port = _free_port()
        app_spec = "authserver:create_app()"
        proc = subprocess.Popen(
            [GUNICORN, *options, "-w", str(workers), "-b", f"127.0.0.1:{port}", app_spec],
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


DEPLOY_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "deploy", "gunicorn.conf.py"
)
HEALTHZ = (
    "authserver_http_requests_total",
    (("endpoint", "web.healthz"), ("method", "GET"), ("status", "200")),
)


def _healthz_count(samples_text: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(samples_text):
        for sample in family.samples:
            if (sample.name, tuple(sorted(sample.labels.items()))) == HEALTHZ:
                return float(sample.value)
    return 0.0


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:  # noqa: S310 - loopback only
        return response.read().decode()


def _per_worker(folder: str) -> dict[int, float]:
    """The healthz count in each worker's own counter file (read one file at a time)."""
    import shutil
    import tempfile

    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    counts = {}
    for name in os.listdir(folder):
        if name.startswith("counter_") and name.endswith(".db"):
            with tempfile.TemporaryDirectory() as alone:
                shutil.copy(os.path.join(folder, name), os.path.join(alone, name))
                registry = CollectorRegistry()
                MultiProcessCollector(registry, path=alone)
                text = generate_latest(registry).decode()
            counts[int(name[len("counter_") : -3])] = _healthz_count(text)
    return counts


def test_metrics_add_up_over_two_workers(app, serve, tmp_path):
    """Under gunicorn with the shipped config and 2 workers, every worker's /metrics shows
    the requests of both (multiprocess mode), and a killed worker's counts stay in the sum."""
    import signal as signals
    from concurrent.futures import ThreadPoolExecutor

    redis_url = app.config["REDIS_URL"]
    if redis_url.startswith("memory://"):
        redis_url = "redis://127.0.0.1:6379/15"
    folder = str(tmp_path / "metrics")
    os.mkdir(folder)
    proc, url = serve(
        2,
        "-c",
        DEPLOY_CONFIG,
        AUTHSERVER_REDIS_URL=redis_url,
        PROMETHEUS_MULTIPROC_DIR=folder,
        WEB_CONCURRENCY="2",
    )
    _wait_up(url, proc)
    base = _healthz_count(_scrape(url))
    sent = 0
    with ThreadPoolExecutor(8) as pool:
        for _ in range(25):  # until the kernel has handed requests to both workers
            statuses = list(pool.map(lambda _: _get(url + "/healthz"), range(40)))
            assert statuses == [200] * 40
            sent += 40
            if sum(1 for c in _per_worker(folder).values() if c) >= 2:
                break
    per_worker = _per_worker(folder)
    assert sum(1 for c in per_worker.values() if c) >= 2, per_worker
    # Whichever worker answers the scrape, it reports the sum of both.
    totals = {_healthz_count(_scrape(url)) - base for _ in range(6)}
    assert totals == {sent}

    # A worker killed (and replaced) leaves its counts in the sum: counters never go back.
    victim = max(per_worker, key=lambda pid: per_worker[pid])
    os.kill(victim, signals.SIGKILL)
    deadline = time.monotonic() + 20
    while len(_per_worker(folder)) <= len(per_worker) and time.monotonic() < deadline:
        time.sleep(0.2)  # the replacement writes its own file when it boots
    assert len(_per_worker(folder)) > len(per_worker)
    assert {_healthz_count(_scrape(url)) - base for _ in range(4)} == {sent}
