"""The bound on concurrent password checks (platform/hashgate.py) with real threads and the
real argon2 hasher: never more holders than permits, a bounded wait, a quick refusal."""

from __future__ import annotations

import threading
import time

import pytest

from authserver.platform.hashgate import HashGate, PasswordCheckBusy, auto_permits, usable_cores
from authserver.platform.security import Argon2Params, Passwords

CHEAP = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)
LIMIT = 10.0  # seconds any thread below may take before the test fails instead of hanging


def _wait_until(condition: object, limit: float = LIMIT) -> None:
    deadline = time.monotonic() + limit
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.005)


def test_no_more_holders_than_permits() -> None:
    """Three callers on two permits: two hold a slot, the third waits until one leaves."""
    gate = HashGate(permits=2, max_wait=LIMIT)
    release = threading.Event()
    lock = threading.Lock()
    inside: list[int] = []
    peak = [0]

    def check(n: int) -> None:
        with gate.slot():
            with lock:
                inside.append(n)
                peak[0] = max(peak[0], len(inside))
            release.wait(LIMIT)
            with lock:
                inside.remove(n)

    threads = [threading.Thread(target=check, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    _wait_until(lambda: gate.waiting == 1 and len(inside) == 2)
    time.sleep(0.05)  # the third is still in line, not inside
    assert len(inside) == 2
    release.set()
    for thread in threads:
        thread.join(LIMIT)
    assert peak[0] == 2
    assert gate.waiting == 0


def test_a_wait_past_the_bound_is_refused() -> None:
    """With every slot held, a check waits at most `max_wait`, then PasswordCheckBusy."""
    gate = HashGate(permits=1, max_wait=0.2)
    with gate.slot():
        started = time.monotonic()
        with pytest.raises(PasswordCheckBusy), gate.slot():
            pass
        took = time.monotonic() - started
    assert 0.15 <= took < 3
    assert gate.waiting == 0
    with gate.slot():  # the slot came back
        pass


def test_a_line_longer_than_the_bound_is_refused_at_once() -> None:
    """When the checks ahead already take longer than `max_wait`, the refusal is immediate
    (not after waiting out the bound): excess load is answered quickly."""
    gate = HashGate(permits=1, max_wait=5.0, expected_hold=10.0)
    with gate.slot():
        started = time.monotonic()
        with pytest.raises(PasswordCheckBusy), gate.slot():
            pass
        assert time.monotonic() - started < 1.0


def test_hashing_a_new_password_waits_instead_of_failing() -> None:
    """A hash after the decision (may_refuse=False) waits past `max_wait` for its slot."""
    passwords = Passwords(CHEAP, HashGate(permits=1, max_wait=0.01))
    assert passwords.gate is not None
    result: list[str] = []
    with passwords.gate.slot():
        worker = threading.Thread(target=lambda: result.append(passwords.hash("pw")))
        worker.start()
        _wait_until(lambda: passwords.gate is not None and passwords.gate.waiting == 1)
        time.sleep(0.1)  # ten times the bound
        assert not result
    worker.join(LIMIT)
    assert result and passwords.verify(result[0], "pw")


def test_verify_holds_a_slot() -> None:
    """A verify goes through the gate: with the only slot taken it waits, and is refused
    once the bound passes, before any hash is compared."""
    passwords = Passwords(CHEAP, HashGate(permits=1, max_wait=0.05))
    stored = passwords.hash("right")
    assert passwords.gate is not None
    with passwords.gate.slot(), pytest.raises(PasswordCheckBusy):
        passwords.verify(stored, "right")
    assert passwords.verify(stored, "right")


def test_auto_size_is_the_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """0 = each of WEB_CONCURRENCY processes gets its share of the cores, at least one."""
    cores = usable_cores()
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    assert auto_permits() == cores
    monkeypatch.setenv("WEB_CONCURRENCY", str(2 * cores))
    assert auto_permits() == 1
    monkeypatch.setenv("WEB_CONCURRENCY", "not a number")
    assert auto_permits() == cores
