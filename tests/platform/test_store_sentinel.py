"""Redis Sentinel URLs: the store finds the master through a real `redis-server --sentinel`
the test starts (its own master, replica and sentinel on free ports, never the shared
Redis), follows a failover, and fails closed (StoreUnavailable, 503) with no master."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis

from authserver.platform.config import ConfigError
from authserver.platform.store import Store, StoreUnavailable, parse_sentinel_url

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
SERVICE = "authmaster"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Sentinels:
    """A master, its replica and one sentinel watching them, all local."""

    master_port: int
    replica_port: int
    sentinel_port: int

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SERVICE}/0"

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, decode_responses=True, socket_timeout=2)

    def replica_ready(self) -> bool:
        """The sentinel knows the replica, reaches it and sees its link to the master up."""
        replicas = self.client(self.sentinel_port).sentinel_slaves(SERVICE)
        return any(
            r["port"] == self.replica_port
            and r["flags"] == "slave"
            and r["master-link-status"] == "ok"
            for r in replicas
        )

    def master_address(self) -> tuple[str, int]:
        host, port = self.client(self.sentinel_port).sentinel_get_master_addr_by_name(SERVICE)
        return host, int(port)


@pytest.fixture
def start_sentinels(tmp_path) -> Iterator[Callable[[bool], Sentinels]]:
    """start(with_replica): a master (with a synced replica if asked) and a sentinel
    watching it, without persistence, in a temp dir; all stopped afterwards."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(with_replica: bool) -> Sentinels:
        ports = Sentinels(free_port(), free_port(), free_port())
        base = [REDIS_SERVER, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]

        def spawn(args: list[str], name: str) -> None:
            folder = tmp_path / name
            folder.mkdir()
            processes.append(
                subprocess.Popen(
                    [*args, "--dir", str(folder)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

        # No 5 s wait before the replica's first sync (Redis's diskless default).
        master = ["--port", str(ports.master_port), "--repl-diskless-sync-delay", "0"]
        spawn([*base, *master], "master")
        if with_replica:
            replica = ["--replicaof", "127.0.0.1", str(ports.master_port)]
            spawn([*base, "--port", str(ports.replica_port), *replica], "replica")
            wait_for(
                lambda: (
                    ports.client(ports.replica_port).info("replication")["master_link_status"]
                    == "up"
                ),
                "the replica to sync",
            )
        else:
            wait_for(lambda: ports.client(ports.master_port).ping(), "the master")
        conf = tmp_path / "sentinel.conf"
        conf.write_text(
            f"port {ports.sentinel_port}\nbind 127.0.0.1\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {ports.master_port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
        )
        spawn([REDIS_SERVER, str(conf), "--sentinel"], "sentinel")
        wait_for(lambda: ports.master_address()[1] == ports.master_port, "the sentinel")
        return ports

    try:
        yield start
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


@pytest.fixture
def sentinels(start_sentinels) -> Sentinels:
    """A master with a replica, watched by a sentinel."""
    return start_sentinels(True)


@pytest.fixture
def make_store() -> Iterator[Callable[[str], Store]]:
    made: list[Store] = []

    def make(url: str) -> Store:
        store = Store.from_url(url, "sentinel-test:", "/nonexistent")
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def test_sentinel_url_finds_the_master(sentinels, make_store):
    """Through the sentinel the store writes to the master (the replica gets a copy), and
    the take-once and throttle operations behave as on plain Redis."""
    store = make_store(sentinels.url)
    assert store.ping()
    store.put("code", "123456", 60)
    assert sentinels.client(sentinels.master_port).get("sentinel-test:code") == "123456"
    wait_for(
        lambda: sentinels.client(sentinels.replica_port).get("sentinel-test:code") == "123456",
        "replication",
    )
    assert store.take("code") == "123456"
    assert store.take("code") is None
    assert [store.hit("t", 2, 60).allowed for _ in range(3)] == [True, True, False]


def test_store_follows_a_failover(sentinels, make_store):
    """After SENTINEL FAILOVER the replica is master; the store's next operations go to it
    (the first may retry once on the demoted old master) and see the data written before."""
    wait_for(sentinels.replica_ready, "the sentinel to find the replica fit to promote")
    store = make_store(sentinels.url)
    store.put("before", "1", 60)
    wait_for(
        lambda: sentinels.client(sentinels.replica_port).get("sentinel-test:before") == "1",
        "replication",
    )
    sentinels.client(sentinels.sentinel_port).execute_command("SENTINEL", "FAILOVER", SERVICE)
    wait_for(lambda: sentinels.master_address()[1] == sentinels.replica_port, "the failover", 30)
    wait_for(
        lambda: sentinels.client(sentinels.master_port).info("replication")["role"] == "slave",
        "the old master to become a replica",
        30,
    )

    def writes() -> bool:
        try:
            store.put("after", "2", 60)
            return True
        except StoreUnavailable:
            return False  # mid-failover: fail closed, and the next call tries again

    wait_for(writes, "a write through the store", 30)
    assert sentinels.client(sentinels.replica_port).get("sentinel-test:after") == "2"
    assert store.get("before") == "1"


def test_no_master_known_fails_closed(sentinels, make_store):
    """A service name the sentinel does not watch is StoreUnavailable, not an empty answer."""
    store = make_store(f"redis+sentinel://127.0.0.1:{sentinels.sentinel_port}/nosuch/0")
    with pytest.raises(StoreUnavailable):
        store.get("anything")


def test_sentinel_down_fails_closed_quickly(make_store):
    """With no sentinel answering, every operation is StoreUnavailable within seconds."""
    store = make_store(f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{free_port()}/m/0")
    started = time.monotonic()
    for call in (lambda: store.get("k"), lambda: store.mark_once("k", 10), store.ping):
        with pytest.raises(StoreUnavailable):
            call()
    assert time.monotonic() - started < 10


def test_master_down_fails_closed(start_sentinels, make_store):
    """The sentinel still names a master that is gone (no replica to promote): the store
    refuses (no silent success) within its short timeouts."""
    sentinels = start_sentinels(False)
    store = make_store(sentinels.url)
    store.put("k", "v", 60)
    sentinels.client(sentinels.master_port).shutdown(nosave=True)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.get("k")
    assert time.monotonic() - started < 10


def test_app_on_a_sentinel_url_is_ready_and_says_503_without_one(sentinels, make_app):
    """/readyz answers 200 on a sentinel URL and 503 when no sentinel answers."""
    ready = make_app(REDIS_URL=sentinels.url).test_client().get("/readyz")
    assert ready.status_code == 200, ready.get_data(as_text=True)
    down = f"redis+sentinel://127.0.0.1:{free_port()}/{SERVICE}/0"
    assert make_app(REDIS_URL=down).test_client().get("/readyz").status_code == 503


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://127.0.0.1/svc/0",
        "redis+sentinel://127.0.0.1:26379/",
        "redis+sentinel://127.0.0.1:26379/svc/zero",
        "redis+sentinel://127.0.0.1:99999/svc/0",
    ],
)
def test_malformed_sentinel_url_stops_start_up(make_app, url):
    """A malformed sentinel URL is a configuration error naming the setting."""
    with pytest.raises(ConfigError, match="AUTHSERVER_REDIS_URL"):
        make_app(REDIS_URL=url)


def test_parse_sentinel_url():
    """Several sentinels, the service, the database and the master's password are read."""
    parts = parse_sentinel_url("redis+sentinel://:s%40cret@h1:26379,[::1]:26380/svc/3")
    assert parts.sentinels == [("h1", 26379), ("::1", 26380)]
    assert (parts.service, parts.db, parts.password) == ("svc", 3, "s@cret")
    assert parse_sentinel_url("redis+sentinel://h:1/svc").db == 0
