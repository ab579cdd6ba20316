"""The password-check gate (PASSWORD_HASH_CONCURRENCY, PASSWORD_HASH_WAIT_MS) through the
front doors on PostgreSQL + Redis: a check that cannot get a slot in time is 503 with
Retry-After in each front door's format, leaves no throttle count behind, and a normal
grant still works."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from factories import PASSWORD, World
from flask import Flask
from oauth_helpers import password_grant
from prometheus_client.parser import text_string_to_metric_families

from authserver.identity.login import FAILURES_PER_IP
from authserver.platform.hashgate import HashGate

WAIT_MS = 50


@pytest.fixture
def gated(make_app: Any, app: Flask) -> Flask:
    """An app (on `app`'s tables) with one password check at a time and a 50 ms wait."""
    return make_app(PASSWORD_HASH_CONCURRENCY=1, PASSWORD_HASH_WAIT_MS=WAIT_MS)


def gate_of(app: Flask) -> HashGate:
    gate = app.extensions["authserver.passwords"].gate
    assert isinstance(gate, HashGate)
    return gate


@contextmanager
def busy(app: Flask) -> Iterator[None]:
    """Every slot of `app`'s gate held (as by checks in flight) for the block."""
    with gate_of(app).slot():
        yield


def _assert_503(response: Any) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)[:300]
    assert int(response.headers["Retry-After"]) > 0


def test_settings_size_the_gate(gated: Flask) -> None:
    """The settings reach the gate: one permit, a 50 ms bound."""
    gate = gate_of(gated)
    assert gate.permits == 1
    assert gate.max_wait == pytest.approx(WAIT_MS / 1000)


def test_a_normal_grant_still_works(gated: Flask, world: World) -> None:
    """With the slot free, the password grant answers a token as before."""
    response = password_grant(gated.test_client(), world)
    assert response.status_code == 200, response.json
    assert response.json["access_token"]


def test_a_grant_that_cannot_get_a_slot_is_503_quickly(gated: Flask, world: World) -> None:
    """The slot held past the bound: temporarily_unavailable, 503, Retry-After, well
    within a second (not after a long queue)."""
    client = gated.test_client()
    with busy(gated):
        started = time.monotonic()
        response = password_grant(client, world)
        took = time.monotonic() - started
    _assert_503(response)
    assert response.json["error"] == "temporarily_unavailable"
    assert response.headers["Cache-Control"] == "no-store"
    assert took < 2
    assert password_grant(client, world).status_code == 200


def test_refusals_are_counted_in_metrics(gated: Flask, world: World) -> None:
    """Each refusal moves authserver_password_checks_refused_total (operators see them)."""
    client = gated.test_client()
    name = "authserver_password_checks_refused_total"

    def refused() -> float:
        text = client.get("/metrics").get_data(as_text=True)
        return sum(
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == name
        )

    before = refused()
    with busy(gated):
        _assert_503(password_grant(client, world))
    assert refused() == before + 1


def test_refusals_leave_no_throttle_count(gated: Flask, world: World) -> None:
    """More refused attempts than the per-IP limit, wrong passwords among them: none is
    counted (no secret was compared), so the right password then logs in at once."""
    client = gated.test_client()
    ip = "198.51.100.23"
    with busy(gated):
        for n in range(FAILURES_PER_IP + 3):
            password = PASSWORD if n % 2 else "wrong password"
            _assert_503(password_grant(client, world, password=password, ip=ip))
    response = password_grant(client, world, ip=ip)
    assert response.status_code == 200, response.json


def test_a_waiting_grant_gets_through_when_a_slot_frees(
    make_app: Any, app: Flask, world: World
) -> None:
    """Within the bound a grant waits in line instead of failing: the extra check waits
    while the slot is held and succeeds once it is given back."""
    patient = make_app(PASSWORD_HASH_CONCURRENCY=1, PASSWORD_HASH_WAIT_MS=10_000)
    gate = gate_of(patient)
    box: dict[str, Any] = {}
    with busy(patient):
        thread = threading.Thread(
            target=lambda: box.update(r=password_grant(patient.test_client(), world))
        )
        thread.start()
        deadline = time.monotonic() + 10
        while gate.waiting != 1:
            assert time.monotonic() < deadline, "the grant never queued for the slot"
            time.sleep(0.005)
        assert "r" not in box
    thread.join(10)
    assert box["r"].status_code == 200, box["r"].json


def test_the_sign_in_page_answers_its_own_503(gated: Flask, world: World) -> None:
    """The hosted sign-in page answers its HTML 503 with Retry-After, as for any outage."""
    client = gated.test_client()
    with busy(gated):
        page = client.post(
            f"/login?aid={world.live_id}",
            data={"username": "alice", "password": PASSWORD},
        )
    _assert_503(page)
    assert page.mimetype == "text/html"
