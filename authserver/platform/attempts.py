"""Throttle counts a server-side failure gives back: a fault never counts against a person.

Each request (web.py) opens a ledger; every attempt the store counts in it (`Store.hit`,
`Store.incr`) stays provisional. If the request ends in a server-side failure (a 5xx: the
database or Redis unavailable, any unexpected exception) the provisional counts are given
back, so an outage and its retry storm leave no lockout behind. Checking a secret
(a password verify, a code comparison in security.py) settles them: from then on the
attempt was judged and stands, so a failure that only one outcome reaches (a code sender
down only after a right password) cannot turn into unthrottled guessing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

log = logging.getLogger("authserver.attempts")


class Counter(Protocol):
    """What a ledger needs of the store that counted."""

    def give_back(self, counts: dict[str, int]) -> None: ...


class Ledger:
    """The provisional counts of one request, by store and key."""

    def __init__(self) -> None:
        self._pending: dict[int, tuple[Counter, dict[str, int]]] = {}

    def record(self, store: Counter, name: str, amount: int) -> None:
        _, counts = self._pending.setdefault(id(store), (store, {}))
        counts[name] = counts.get(name, 0) + amount

    def settle(self) -> None:
        """What was counted so far stands, whatever happens next."""
        self._pending.clear()

    def give_back(self) -> None:
        """Undo the provisional counts (best effort: the store may be the thing that failed)."""
        pending, self._pending = self._pending, {}
        for store, counts in pending.values():
            try:
                store.give_back(counts)
            except Exception as exc:  # the failure is already being answered; log, go on
                log.warning("could not give back %d throttle counts: %s", len(counts), exc)


_current: ContextVar[Ledger | None] = ContextVar("authserver_attempt_ledger", default=None)


def begin() -> Ledger:
    """Open a ledger for the work that follows in this context (one request)."""
    ledger = Ledger()
    _current.set(ledger)
    return ledger


def end(*, failed: bool) -> None:
    """Close the current ledger, giving its provisional counts back if the work `failed`."""
    ledger = _current.get()
    _current.set(None)
    if ledger is not None and failed:
        ledger.give_back()


@contextmanager
def ledger() -> Iterator[Ledger]:
    """A ledger around a block (CLI, jobs, tests): any exception gives the counts back."""
    outer = _current.get()
    inner = begin()
    try:
        yield inner
    except BaseException:
        inner.give_back()
        raise
    finally:
        _current.set(outer)


def counted(store: Counter, name: str, amount: int) -> None:
    """Note an attempt the store just counted (nothing happens outside a ledger)."""
    current = _current.get()
    if current is not None and amount > 0:
        current.record(store, name, amount)


def settle() -> None:
    """A secret was checked: the current ledger's counts stand from here on."""
    current = _current.get()
    if current is not None:
        current.settle()
