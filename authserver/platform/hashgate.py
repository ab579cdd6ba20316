"""A per-process bound on concurrent password hashing (argon2id, and imported bcrypt/PBKDF2).

A password check is ~20 ms of one core in C, without the GIL. Unbounded, 64 grants at once
on 2 cores each get a sliver of a core and all finish late (at 64 connections some waited
past 5 s). The gate lets at most `permits` checks run in this process; the others wait in
line, and a check whose wait would exceed `max_wait` is refused at once with
`PasswordCheckBusy` (a ServiceUnavailable: every front door answers it 503 + Retry-After).

The refusal comes before any secret is compared, so the request's throttle counts are
given back like for any other 5xx (attempts.py): a busy server never locks anyone out.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from authserver.platform import metrics
from authserver.platform.errors import ServiceUnavailable

# Weight of the newest check in the running average of how long a check holds its slot.
SMOOTHING = 0.2


class PasswordCheckBusy(ServiceUnavailable):
    """Too many password checks in line in this process: try again shortly (503)."""

    title = "Too many sign-ins at once; try again in a moment."


def usable_cores() -> int:
    """Cores this process may run on (a cpuset is honoured, a CPU quota is not)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def auto_permits() -> int:
    """This process's share of the cores, at least 1: the server processes on the host
    (`WEB_CONCURRENCY`, which deploy/gunicorn.conf.py sets in each worker; unset: one)
    together run about as many checks as there are cores, or one each when there are more
    processes than cores (2 cores, 4 gunicorn workers: 1 each, 4 at most in all)."""
    try:
        processes = max(1, int(os.environ.get("WEB_CONCURRENCY", "1")))
    except ValueError:
        processes = 1
    return max(1, math.ceil(usable_cores() / processes))


class HashGate:
    """At most `permits` holders at once; a wait beyond `max_wait` seconds is refused.

    `expected_hold` (seconds) is the first guess of how long a holder keeps its slot, until
    real holds are measured (Passwords gives the time its start-up hash took)."""

    def __init__(self, permits: int, max_wait: float, expected_hold: float = 0.0):
        self.permits = permits
        self.max_wait = max_wait
        self._slots = threading.BoundedSemaphore(permits)
        self._lock = threading.Lock()
        self._waiting = 0
        self._hold = expected_hold  # running average of seconds a slot is held

    def expect_hold(self, seconds: float) -> None:
        """Set the guess of a hold's length before any was measured (start-up)."""
        with self._lock:
            self._hold = seconds

    @property
    def waiting(self) -> int:
        """Callers in line right now (for tests and diagnostics)."""
        return self._waiting

    @contextmanager
    def slot(self, *, may_refuse: bool = True) -> Iterator[None]:
        """Hold a slot for the block. With `may_refuse`, raise PasswordCheckBusy instead of
        waiting longer than `max_wait` (at once when the line ahead already promises that);
        without it (hashing a new password after the decision was made) wait for a slot."""
        if not self._slots.acquire(blocking=False):
            self._wait(may_refuse)
        started = time.perf_counter()
        try:
            yield
        finally:
            held = time.perf_counter() - started
            with self._lock:
                self._hold += (held - self._hold) * SMOOTHING
            self._slots.release()

    def _wait(self, may_refuse: bool) -> None:
        with self._lock:
            ahead = self._waiting
            self._waiting += 1
            expected = (ahead + 1) / self.permits * self._hold
        try:
            if not may_refuse:
                self._slots.acquire()
                return
            # Refuse quickly what would be refused anyway after waiting out the bound.
            if expected > self.max_wait or not self._slots.acquire(timeout=self.max_wait):
                metrics.counted_password_check_refused()
                raise PasswordCheckBusy()
        finally:
            with self._lock:
                self._waiting -= 1
