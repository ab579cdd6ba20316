"""Short-lived state in Redis: codes with a TTL, take-once, mark-once, counters and throttles.

One `Store` per app, over one redis-py client (its pool is shared by threads). Every key
gets the configured prefix. `memory://` gives an in-process Redis (fakeredis) that is
claimed by one process only; a second process using it is refused. When Redis cannot be
reached every operation raises `StoreUnavailable`, so callers fail closed.
`redis+sentinel://host:port[,host:port]/SERVICE/DB` asks Redis Sentinel for the master.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import unquote

import fakeredis
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from authserver.platform import attempts, metrics
from authserver.platform.errors import ServiceUnavailable

SOCKET_TIMEOUT = 2  # seconds to connect to, or wait for, Redis or a sentinel


class StoreUnavailable(ServiceUnavailable):
    """Redis is unreachable (or the memory store belongs to another process)."""

    code = "store_unavailable"
    title = "Short-lived store unavailable"


@dataclass(frozen=True)
class Hit:
    """The result of counting one attempt against a throttle."""

    count: int  # attempts in the current window, this one included
    allowed: bool  # count <= limit
    retry_after: int  # seconds until the window resets (0 when allowed)


class Store:
    """The one API for everything short-lived. Values are strings."""

    def __init__(self, client: redis.Redis, prefix: str, claim: ProcessClaim | None = None):
        self._client = client
        self._prefix = prefix
        self._claim = claim
        # fakeredis runs a MULTI/EXEC pipeline command by command: two threads' increments
        # could interleave (both see a missing counter). One operation at a time keeps the
        # memory store as atomic as Redis; real Redis needs no lock.
        self._serial = threading.RLock() if claim is not None else contextlib.nullcontext()

    @classmethod
    def from_url(cls, url: str, prefix: str, instance_path: str) -> Store:
        if url.startswith("memory://"):
            fake = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
            claim = ProcessClaim.for_path(os.path.join(instance_path, ".memory-store.lock"))
            return cls(fake, prefix, claim)
        # Short timeouts and few retries: a request must not hang when Redis is down.
        # Only a refused/reset connection is retried (once: it heals a pooled connection
        # that a Redis restart closed, or one to a master that a failover demoted). A
        # timeout is not retried: redis-py nests the connect retry inside the command
        # retry, so retrying timeouts multiplied into ~20 s per operation against a server
        # that accepts but never answers.
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_connect_timeout": SOCKET_TIMEOUT,
            "socket_timeout": SOCKET_TIMEOUT,
            "retry": Retry(
                ExponentialBackoff(cap=0.2, base=0.02), 1, supported_errors=(redis.ConnectionError,)
            ),
            "health_check_interval": 30,
        }
        if url.startswith("redis+sentinel://"):
            return cls(_sentinel_master(url, options), prefix)
        return cls(redis.Redis.from_url(url, **options), prefix)

    @property
    def is_memory(self) -> bool:
        return self._claim is not None

    def claim(self) -> None:
        """Claim the memory:// store for this process now (a no-op for real Redis)."""
        if self._claim is not None:
            self._claim.ensure()

    def key(self, name: str) -> str:
        return self._prefix + name

    @contextmanager
    def _redis(self) -> Iterator[redis.Redis]:
        if self._claim is not None:
            self._claim.ensure()
        try:
            with self._serial:
                yield self._client
        except _UNREACHABLE as exc:
            metrics.counted_store_error()
            raise StoreUnavailable(f"Redis is unreachable: {type(exc).__name__}") from exc

    # --- values -----------------------------------------------------------------------
    def put(self, name: str, value: str, ttl: int) -> None:
        """Set `name` to `value` for `ttl` seconds, replacing any earlier value."""
        with self._redis() as r:
            r.set(self.key(name), value, ex=_ttl(ttl))

    def get(self, name: str) -> str | None:
        with self._redis() as r:
            return _str(r.get(self.key(name)))

    def get_many(self, *names: str) -> list[str | None]:
        """Several values in one round trip (MGET)."""
        with self._redis() as r:
            return [_str(v) for v in r.mget([self.key(n) for n in names])]

    def put_many(self, values: dict[str, str], ttl: int) -> None:
        """Set several values for `ttl` seconds in one round trip (a pipeline)."""
        if not values:
            return
        with self._redis() as r:
            pipe = r.pipeline(transaction=False)
            for name, value in values.items():
                pipe.set(self.key(name), value, ex=_ttl(ttl))
            pipe.execute()

    def get_or_create(self, values: dict[str, str], ttl: int) -> list[str | None]:
        """Set each name that is absent to its value (SET NX EX), then read them all back,
        in one round trip: the values in order, whoever set them."""
        with self._redis() as r:
            pipe = r.pipeline(transaction=False)
            for name, value in values.items():
                pipe.set(self.key(name), value, ex=_ttl(ttl), nx=True)
            pipe.mget([self.key(n) for n in values])
            return [_str(v) for v in pipe.execute()[-1]]

    def take(self, name: str) -> str | None:
        """Return the value and delete it in one step: of concurrent takers exactly one gets it."""
        with self._redis() as r:
            return _str(r.getdel(self.key(name)))

    def mark_once(self, name: str, ttl: int, value: str = "1") -> bool:
        """Set `name` only if absent (SET NX EX). True for the first caller, False after."""
        with self._redis() as r:
            return bool(r.set(self.key(name), value, ex=_ttl(ttl), nx=True))

    def delete(self, *names: str) -> int:
        if not names:
            return 0
        with self._redis() as r:
            return int(r.delete(*(self.key(n) for n in names)))

    def ttl(self, name: str) -> int | None:
        """Whole seconds left on `name`, rounded up; None when it does not exist (or has no expiry).

        Rounded up from PTTL because Redis's TTL rounds to nearest: a key with 0.4 s left
        read as 0 and one with 1.4 s left as 1, so "retry in N s" came too early.
        """
        with self._redis() as r:
            left = int(r.pttl(self.key(name)))
        return _seconds(left) if left >= 0 else None

    # --- counters and throttles -------------------------------------------------------
    def incr(self, name: str, ttl: int, amount: int = 1) -> int:
        """Add `amount` to a counter; the first change starts its `ttl`, later ones keep it."""
        with self._redis() as r:
            pipe = r.pipeline(transaction=True)
            pipe.incrby(self.key(name), amount)
            pipe.expire(self.key(name), _ttl(ttl), nx=True)
            count, _ = pipe.execute()
        attempts.counted(self, name, amount)
        return int(count)

    def give_back(self, counts: dict[str, int]) -> None:
        """Take `counts` back off their counters in one round trip (attempts.py). A counter
        that is gone meanwhile (cleared by a success, or expired) is not brought back."""
        names = list(counts)
        with self._redis() as r:
            pipe = r.pipeline(transaction=True)
            for name in names:
                pipe.decrby(self.key(name), counts[name])
            values = pipe.execute()
            # DECRBY on a missing key makes a negative counter without a TTL: drop it.
            gone = [self.key(n) for n, v in zip(names, values, strict=True) if int(v) < 0]
            if gone:
                r.delete(*gone)

    def count(self, name: str) -> int:
        with self._redis() as r:
            return int(r.get(self.key(name)) or 0)

    def hit(self, name: str, limit: int, window: int) -> Hit:
        """Count one attempt in a fixed window of `window` seconds allowing `limit` attempts."""
        with self._redis() as r:
            pipe = r.pipeline(transaction=True)
            pipe.incr(self.key(name))
            pipe.expire(self.key(name), _ttl(window), nx=True)
            pipe.pttl(self.key(name))
            count, _, left = pipe.execute()
        attempts.counted(self, name, 1)
        count = int(count)
        allowed = count <= limit
        return Hit(count, allowed, 0 if allowed else max(1, _seconds(int(left))))

    # --- health -------------------------------------------------------------------------
    def ping(self) -> bool:
        with self._redis() as r:
            return bool(r.ping())

    def close(self) -> None:
        """Close the pooled connections (tests build many apps in one process)."""
        self._client.close()

    def flush_prefix(self) -> int:
        """Delete every key under this store's prefix (tests and test-account resets)."""
        with self._redis() as r:
            # Escape glob characters so a prefix like "app[1]:" matches only itself.
            pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self._prefix) + "*"
            keys = list(r.scan_iter(match=pattern, count=500))
            return int(r.delete(*keys)) if keys else 0


@dataclass(frozen=True)
class SentinelURL:
    """The parts of `redis+sentinel://[:password@]host:port[,host:port]/SERVICE[/DB]`."""

    sentinels: list[tuple[str, int]]
    service: str
    db: int
    username: str | None
    password: str | None


def parse_sentinel_url(url: str) -> SentinelURL:
    """Split a sentinel URL; raises ValueError saying what is wrong. The password (if any)
    is the master's; the sentinels are asked without one."""
    rest = url.removeprefix("redis+sentinel://")
    netloc, _, path = rest.partition("/")
    auth, _, hosts = netloc.rpartition("@")
    username, _, password = auth.partition(":") if auth else ("", "", "")
    sentinels = []
    for part in hosts.split(","):
        host, _, port = part.strip().rpartition(":")
        host = host.strip("[]")  # [::1]:26379
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"sentinel address {part!r} must be host:port")
        sentinels.append((host, int(port)))
    service, _, db = path.strip("/").partition("/")
    if not service or "/" in db:
        raise ValueError("a sentinel URL is redis+sentinel://host:port[,host:port]/SERVICE/DB")
    if db and not db.isdigit():
        raise ValueError(f"the database must be a number, got {db!r}")
    return SentinelURL(
        sentinels, service, int(db or 0), unquote(username) or None, unquote(password) or None
    )


def _sentinel_master(url: str, options: dict[str, Any]) -> redis.Redis:
    """A client of the service's current master: each new connection asks the sentinels
    where it is, so after a failover the retry reconnects to the new one; with no sentinel
    answering, every operation fails with MasterNotFoundError (a ConnectionError)."""
    parts = parse_sentinel_url(url)
    sentinel = Sentinel(
        parts.sentinels,
        socket_timeout=SOCKET_TIMEOUT,
        sentinel_kwargs={
            "socket_connect_timeout": SOCKET_TIMEOUT,
            "socket_timeout": SOCKET_TIMEOUT,
        },
    )
    return sentinel.master_for(
        parts.service,
        db=parts.db,
        username=parts.username,
        password=parts.password,
        **options,
    )


class ProcessClaim:
    """Keeps the in-process store to one process: the first process to use it holds a lock.

    The lock is an exclusive `flock` on a file in the instance folder, taken on first use
    (so CLI commands that never touch the store do not collide with a running server) and
    checked again after a fork, because a forked worker would hold a diverging copy.
    """

    _by_path: ClassVar[dict[str, ProcessClaim]] = {}
    _by_path_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def for_path(cls, path: str) -> ProcessClaim:
        """One claim per lock file in a process: several apps of one process (as in tests)
        share it instead of refusing each other; other processes are still refused."""
        path = os.path.abspath(path)
        with cls._by_path_lock:
            claim = cls._by_path.get(path)
            if claim is None:
                claim = cls._by_path[path] = cls(path)
            return claim

    def __init__(self, path: str):
        self.path = path
        self._pid: int | None = None
        self._fd: int | None = None
        # Threads of the claiming process share the claim; without this lock the first
        # concurrent requests each opened the file and all but one were refused.
        self._lock = threading.Lock()

    def ensure(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                self._acquire()

    def _acquire(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise StoreUnavailable(
                "AUTHSERVER_REDIS_URL=memory:// serves one process only and process "
                f"{holder} has it; use redis:// for more than one process or worker"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        self._fd, self._pid = fd, os.getpid()

    def release(self) -> None:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = self._pid = None


# Errors meaning "no Redis we can talk to": refused, timed out, or something else answering.
_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.InvalidResponse)


def _ttl(seconds: int) -> int:
    if seconds < 1:
        raise ValueError("a TTL must be at least one second")
    return int(seconds)


def _seconds(milliseconds: int) -> int:
    return -(-milliseconds // 1000)  # rounded up: never tell a client to retry too early


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
