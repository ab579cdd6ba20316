"""Throttle counts a failure gives back (platform/attempts.py) on the app's real store."""

from __future__ import annotations

from typing import Any

import pytest

from authserver.platform import attempts
from authserver.platform.security import same


class Outage(Exception):
    """Stands for a server-side failure in the middle of an attempt."""


def test_a_failed_attempt_gives_its_counts_back(store: Any) -> None:
    """Counts made in a ledger that ends in an exception are taken back off."""
    store.hit("t:user", 10, 60)
    with pytest.raises(Outage), attempts.ledger():
        store.hit("t:user", 10, 60)
        store.incr("t:tries", 60)
        raise Outage
    assert store.count("t:user") == 1
    assert store.count("t:tries") == 0


def test_checking_a_secret_settles_the_counts(store: Any) -> None:
    """After a secret comparison the attempt stands: a later failure gives back only what
    was counted after it (no free guesses from a failure one outcome reaches)."""
    with pytest.raises(Outage), attempts.ledger():
        store.hit("t:user", 10, 60)
        same("guess", "secret")
        store.hit("t:sends", 10, 60)
        raise Outage
    assert store.count("t:user") == 1
    assert store.count("t:sends") == 0


def test_a_counter_cleared_meanwhile_is_not_revived(store: Any) -> None:
    """Giving back to a counter a success deleted leaves no negative, TTL-less key."""
    with pytest.raises(Outage), attempts.ledger():
        store.hit("t:user", 10, 60)
        store.delete("t:user")
        raise Outage
    assert store.get("t:user") is None


def test_a_successful_block_keeps_its_counts(store: Any) -> None:
    """Without a failure, nothing is given back."""
    with attempts.ledger():
        store.hit("t:user", 10, 60)
    assert store.count("t:user") == 1


def test_a_password_verify_settles_the_counts(app: Any, store: Any) -> None:
    """A login's password check (right or wrong) makes its counts stand: a failure after
    it cannot give back guesses that were actually checked."""
    with pytest.raises(Outage), attempts.ledger():
        store.hit("t:user", 10, 60)
        app.extensions["authserver.passwords"].verify(None, "a guess")
        raise Outage
    assert store.count("t:user") == 1
