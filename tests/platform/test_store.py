"""The short-lived store on real Redis and on memory://: TTLs, take-once, counters, fail-closed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from authserver.platform.errors import ServiceUnavailable
from authserver.platform.store import Store, StoreUnavailable

CLOSED_PORT_URL = "redis://127.0.0.1:1/0"

# Run in a second interpreter: build a memory store on the given instance dir and use it.
PING_SCRIPT = """
import sys
from authserver.platform.store import Store, StoreUnavailable
store = Store.from_url("memory://", "p:", sys.argv[1])
try:
    store.ping()
except StoreUnavailable as exc:
    print("refused:", exc)
    sys.exit(3)
print("ok")
"""


def _unique(base: str) -> str:
    """A key name no concurrent run of these tests on the same Redis database shares."""
    return f"{base}:{uuid.uuid4().hex}"


@contextmanager
def _frequent_thread_switches() -> Iterator[None]:
    """Switch threads every microsecond, so a non-atomic read-then-write gets interleaved."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _race(n: int, fn: Callable[[], Any]) -> list[Any]:
    """Run `fn` in `n` threads released together by a barrier; return every result."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = fn()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    with _frequent_thread_switches():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors, errors
    return results


@pytest.fixture(params=["configured", "memory"])
def store(request: pytest.FixtureRequest, app: Any, tmp_path: Any) -> Iterator[Store]:
    """Each store test runs on the suite's backend (Redis, when it answers) and on the
    embedded memory://, so the two stay equal."""
    if request.param == "configured":
        yield app.extensions["authserver.store"]
        return
    folder = tmp_path / "memory-store"
    folder.mkdir()
    store = Store.from_url("memory://", app.config["REDIS_PREFIX"], str(folder))
    yield store
    if store._claim is not None:
        store._claim.release()


@pytest.fixture
def down_store(tmp_path: Any) -> Iterator[Store]:
    store = Store.from_url(CLOSED_PORT_URL, "p:", str(tmp_path))
    yield store
    store._client.close()


@pytest.fixture
def memory_store(tmp_path: Any) -> Iterator[Store]:
    store = Store.from_url("memory://", "p:", str(tmp_path))
    yield store
    assert store._claim is not None
    store._claim.release()


def _ping_in_subprocess(instance_dir: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PING_SCRIPT, instance_dir],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- values and TTLs --------------------------------------------------------------------


def test_put_get_with_ttl(store):
    """A value put with a TTL reads back and reports a TTL within (0, ttl]."""
    name = _unique("code")
    store.put(name, "123456", 30)
    assert store.get(name) == "123456"
    assert 0 < store.ttl(name) <= 30


def test_put_replaces_value_and_ttl(store):
    """A second put replaces both the value and its TTL."""
    name = _unique("code")
    store.put(name, "first", 300)
    store.put(name, "second", 5)
    assert store.get(name) == "second"
    assert 0 < store.ttl(name) <= 5


def test_ttl_and_get_of_missing_key_are_none(store):
    """A key that was never set has no value and no TTL."""
    name = _unique("nothing")
    assert store.get(name) is None
    assert store.ttl(name) is None


def test_value_expires_after_its_ttl(store):
    """A one-second value reports its TTL rounded up while it lives and is gone after 1.2 s."""
    name = _unique("short")
    store.put(name, "v", 1)
    assert store.get(name) == "v"
    time.sleep(0.6)
    left = store.ttl(name)
    assert left is not None  # about 0.4 s left
    # Rounded up, not to nearest (which says 0 here): never less than what is really left.
    assert left * 1000 >= store._client.pttl(store.key(name))
    time.sleep(0.6)
    assert store.get(name) is None
    assert store.ttl(name) is None


@pytest.mark.parametrize(
    "call",
    [
        lambda s, n: s.put(n, "v", ttl=0),
        lambda s, n: s.put(n, "v", ttl=-5),
        lambda s, n: s.mark_once(n, ttl=0),
        lambda s, n: s.incr(n, ttl=0),
        lambda s, n: s.hit(n, limit=3, window=0),
    ],
    ids=["put-0", "put-negative", "mark_once", "incr", "hit"],
)
def test_ttl_below_one_second_is_refused(store, call):
    """A TTL under one second raises ValueError and stores nothing."""
    name = _unique("k")
    with pytest.raises(ValueError, match="TTL"):
        call(store, name)
    assert store.get(name) is None


# --- take-once, mark-once, counters -----------------------------------------------------


def test_take_returns_then_deletes(store):
    """take() hands the value out once and leaves nothing behind."""
    name = _unique("once")
    store.put(name, "secret", 60)
    assert store.take(name) == "secret"
    assert store.take(name) is None
    assert store.get(name) is None


def test_concurrent_take_gives_value_to_exactly_one(store):
    """Of 20 threads taking the same key at once, exactly one gets the value (10 rounds)."""
    for _ in range(10):
        name = _unique("race")
        store.put(name, "prize", 60)
        results = _race(20, lambda name=name: store.take(name))
        assert results.count("prize") == 1
        assert results.count(None) == 19


def test_mark_once_is_true_only_first_time(store):
    """mark_once() is True for the first caller and False afterwards, with its TTL set."""
    name = _unique("step")
    assert store.mark_once(name, 30) is True
    assert store.mark_once(name, 30) is False
    assert 0 < store.ttl(name) <= 30


def test_concurrent_mark_once_has_exactly_one_winner(store):
    """Of 20 threads marking the same key at once, exactly one gets True (10 rounds)."""
    for _ in range(10):
        name = _unique("marker")
        results = _race(20, lambda name=name: store.mark_once(name, 60))
        assert results.count(True) == 1
        assert results.count(False) == 19


def test_concurrent_incr_counts_all_and_sets_ttl_once(store):
    """20 concurrent increments count to 20; the TTL starts once and later ones keep it."""
    for _ in range(5):
        name = _unique("attempts")
        results = _race(20, lambda name=name: store.incr(name, 2))
        assert sorted(results) == list(range(1, 21))
        assert store.count(name) == 20
        assert 0 < store.ttl(name) <= 2
    time.sleep(1.1)
    assert store.incr(name, 2) == 21
    # Not refreshed to 2 s: under a second is left of the first increment's window.
    assert 0 < store._client.pttl(store.key(name)) < 1000


def test_count_of_missing_counter_is_zero(store):
    """A counter that was never incremented counts zero."""
    assert store.count(_unique("none")) == 0


def test_hit_allows_up_to_limit_then_throttles_until_window_ends(store):
    """hit() allows `limit` attempts, then refuses with retry_after in (0, window], then resets."""
    name = _unique("login:ip")
    for expected in (1, 2, 3):
        hit = store.hit(name, limit=3, window=2)
        assert (hit.count, hit.allowed, hit.retry_after) == (expected, True, 0)
    refused = store.hit(name, limit=3, window=2)
    assert (refused.count, refused.allowed) == (4, False)
    assert 0 < refused.retry_after <= 2
    time.sleep(0.6)
    # About 1.4 s are left: retry_after must not say 1 (TTL rounds to nearest), a client
    # waiting only that long would be refused again.
    slow = store.hit(name, limit=3, window=2)
    assert not slow.allowed
    assert slow.retry_after * 1000 >= store._client.pttl(store.key(name))
    time.sleep(1.5)
    again = store.hit(name, limit=3, window=2)
    assert (again.count, again.allowed, again.retry_after) == (1, True, 0)


# --- prefix -----------------------------------------------------------------------------


def test_keys_live_under_the_prefix(store):
    """Every key the store writes is stored under the configured prefix."""
    prefix = store._prefix
    assert prefix.startswith("authserver") and prefix.endswith(":")
    names = [_unique("code"), _unique("marker"), _unique("counter")]
    store.put(names[0], "1", 60)
    store.mark_once(names[1], 60)
    store.incr(names[2], 60)
    for name in names:
        assert store._client.exists(prefix + name) == 1
        assert store._client.exists(name) == 0


def test_flush_prefix_deletes_only_prefixed_keys(store):
    """flush_prefix() removes the store's keys and leaves other keys alone."""
    # A prefix of its own, so tests running at the same time on this database don't count.
    prefix = _unique("authserver") + ":"
    mine = Store(store._client, prefix, store._claim)
    mine.put("a", "1", 60)
    mine.incr("b", 60)
    others = [_unique("other"), prefix.rstrip(":") + "-sibling", prefix[:-2]]
    for key in others:
        store._client.set(key, "x", ex=60)
    assert mine.flush_prefix() == 2
    assert mine.get("a") is None
    assert mine.count("b") == 0
    for key in others:
        assert store._client.get(key) == "x"


def test_flush_prefix_treats_glob_characters_literally(store):
    """A prefix with glob characters flushes only its own keys, not keys the glob matches."""
    tag = uuid.uuid4().hex
    odd = Store(store._client, f"{tag}?[1]*:", store._claim)
    odd.put("mine", "1", 60)
    matched_by_glob = [f"{tag}x1:keep", f"{tag}a1zz:keep"]
    for key in matched_by_glob:
        store._client.set(key, "x", ex=60)
    assert odd.flush_prefix() == 1
    assert odd.get("mine") is None
    for key in matched_by_glob:
        assert store._client.get(key) == "x"


# --- Redis unreachable: fail closed -----------------------------------------------------

OPERATIONS: list[tuple[str, Callable[[Store], Any]]] = [
    ("put", lambda s: s.put("k", "v", 60)),
    ("get", lambda s: s.get("k")),
    ("take", lambda s: s.take("k")),
    ("mark_once", lambda s: s.mark_once("k", 60)),
    ("delete", lambda s: s.delete("k")),
    ("ttl", lambda s: s.ttl("k")),
    ("incr", lambda s: s.incr("k", 60)),
    ("count", lambda s: s.count("k")),
    ("hit", lambda s: s.hit("k", 5, 60)),
    ("ping", lambda s: s.ping()),
    ("flush_prefix", lambda s: s.flush_prefix()),
]


@pytest.mark.parametrize("call", [op for _, op in OPERATIONS], ids=[n for n, _ in OPERATIONS])
def test_unreachable_redis_fails_closed_quickly(down_store, call):
    """Every operation against a closed port raises StoreUnavailable (a 503 error) within 5 s."""
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        call(down_store)
    assert time.monotonic() - started < 5
    assert isinstance(info.value, ServiceUnavailable)
    assert info.value.code == "store_unavailable"


def test_silent_redis_times_out_within_bounded_time(tmp_path):
    """A server that accepts but never answers gives StoreUnavailable within 5 s, not a hang."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        store = Store.from_url(f"redis://127.0.0.1:{port}/0", "p:", str(tmp_path))
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="TimeoutError"):
                store.take("code")
            assert time.monotonic() - started < 5
        finally:
            store._client.close()


def test_non_redis_server_fails_closed(tmp_path):
    """A URL pointing at something that is not Redis gives StoreUnavailable, not a crash."""
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.1)
        port = listener.getsockname()[1]

        def serve() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.recv(1024)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=serve)
        thread.start()
        store = Store.from_url(f"redis://127.0.0.1:{port}/0", "p:", str(tmp_path))
        try:
            with pytest.raises(StoreUnavailable):
                store.mark_once("step", 30)
        finally:
            stop.set()
            thread.join()
            store._client.close()


def test_connection_closed_by_redis_is_reopened(app):
    """A pooled connection that Redis closed (e.g. a restart) is replaced on the next call."""
    store = app.extensions["authserver.store"]
    if store.is_memory:
        pytest.skip("this run has no Redis: memory:// has no network connection to lose")
    name = _unique("k")
    store.put(name, "v", 60)
    own_id = store._client.client_id()
    killer = store._client.connection_pool.make_connection()
    try:
        killer.send_command("CLIENT", "KILL", "ID", own_id)
        assert killer.read_response() == 1
    finally:
        killer.disconnect()
    assert store.get(name) == "v"


# --- memory:// is for one process -------------------------------------------------------


def test_memory_store_refuses_second_process_until_released(memory_store, tmp_path):
    """While one process holds memory://, another is refused; after release it may claim it."""
    memory_store.put("k", "v", 60)
    refused = _ping_in_subprocess(str(tmp_path))
    assert refused.returncode == 3, refused.stderr
    assert "memory://" in refused.stdout
    assert str(os.getpid()) in refused.stdout
    assert memory_store.get("k") == "v"

    memory_store._claim.release()
    allowed = _ping_in_subprocess(str(tmp_path))
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert allowed.stdout.strip() == "ok"


def test_memory_store_refuses_forked_child(memory_store):
    """A forked child using its parent's memory store is refused; the parent keeps working."""
    memory_store.put("k", "v", 60)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report what happened, never return into pytest
        try:
            try:
                memory_store.get("k")
                message = "allowed"
            except StoreUnavailable as exc:
                message = f"refused: {exc}"
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    assert message.startswith("refused:"), message
    assert "memory://" in message
    assert memory_store.get("k") == "v"


def test_memory_store_first_use_from_many_threads(memory_store):
    """Threads of the claiming process share the claim, even when they first use it together."""
    results = _race(20, memory_store.ping)
    assert results == [True] * 20
