"""The login throttle through the password grant: one budget per username whatever the
`aid` (global users), known devices (`device_token`) passing the per-user lockout that
strangers cause, each device's own lockout, and PROXY_FIX telling clients apart."""

from __future__ import annotations

from collections.abc import Callable

from factories import PASSWORD, World, make_email_otp_user, make_totp_user, make_user
from flask import Flask
from flask.testing import FlaskClient
from oauth_helpers import settle_totp_step, wrong_totp
from pages_helpers import emailed_code
from werkzeug.test import TestResponse

from authserver.identity import devices
from authserver.identity.login import (
    DEVICE_FAILURES,
    FAILURES_FROM_IP,
    FAILURES_PER_IP,
    FAILURES_PER_USER,
)

WRONG = "not the password at all"


def grant(
    http: FlaskClient,
    client_id: str,
    username: str,
    password: str = PASSWORD,
    *,
    aid: str | None = None,
    ip: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    **extra: str,
) -> TestResponse:
    """POST /oauth/token grant_type=password by a public client, `aid` in the scope (or none)."""
    form = {"grant_type": "password", "username": username, "password": password}
    form |= {"client_id": client_id, **extra}
    if aid:
        form["scope"] = f"aid:{aid}"
    return http.post(
        "/oauth/token", data=form, environ_base={"REMOTE_ADDR": ip}, headers=headers or {}
    )


def is_throttled(response: TestResponse) -> bool:
    """429 too_many_attempts with a Retry-After and no tokens."""
    body = response.json or {}
    return (
        response.status_code == 429
        and body.get("error") == "too_many_attempts"
        and "access_token" not in body
        and int(response.headers.get("Retry-After", "0")) > 0
    )


def exhaust_per_user_limit(http: FlaskClient, client_id: str, username: str, aid: str) -> None:
    """FAILURES_PER_USER wrong passwords for `username`, each from another IP (a botnet)."""
    for i in range(FAILURES_PER_USER):
        response = grant(http, client_id, username, WRONG, aid=aid, ip=f"10.66.{i // 200}.{i}")
        assert response.status_code == 400, response.json


# ---------------------------------------------------------------- finding 12: one budget


def global_user(app: Flask, world: World, name: str = "gus") -> str:
    return make_user(
        app, None, name, member_of={world.live_id: "customer", world.other_id: "customer"}
    )


def test_global_users_failures_with_every_aid_count_against_one_budget(app, client, world):
    """A global user's wrong passwords with aid=A, aid=B and no aid share the per-IP budget:
    the right password is then 429 whichever way it is sent."""
    global_user(app, world)
    ways = [
        (world.public_id, world.live_id),
        (world.other_public_id, world.other_id),
        (world.public_id, None),
    ]
    for i in range(FAILURES_PER_IP):
        client_id, aid = ways[i % 3]
        assert grant(client, client_id, "gus", WRONG, aid=aid).status_code == 400
    for client_id, aid in ways:
        assert is_throttled(grant(client, client_id, "gus", aid=aid))


def test_global_users_failures_from_all_ips_and_aids_count_against_one_budget(app, client, world):
    """FAILURES_PER_USER wrong passwords from as many IPs, alternating aid=A and aid=B,
    lock the username for strangers from a new IP with either aid or none."""
    global_user(app, world)
    for i in range(FAILURES_PER_USER):
        client_id, aid = (
            (world.public_id, world.live_id) if i % 2 else (world.other_public_id, world.other_id)
        )
        assert grant(client, client_id, "gus", WRONG, aid=aid, ip=f"10.7.0.{i}").status_code == 400
    assert is_throttled(grant(client, world.public_id, "gus", ip="10.8.0.1"))
    assert is_throttled(grant(client, world.public_id, "gus", aid=world.live_id, ip="10.8.0.2"))


def test_global_users_wrong_codes_with_every_aid_count_against_one_budget(app, client, world):
    """Wrong TOTP codes of a global user, half with aid=A and half with aid=B, share one
    budget: the right code is then 429."""
    _, totp = make_totp_user(
        app, None, "gwen", member_of={world.live_id: "customer", world.other_id: "customer"}
    )
    settle_totp_step()
    for i in range(FAILURES_PER_IP):
        client_id, aid = (
            (world.public_id, world.live_id) if i % 2 else (world.other_public_id, world.other_id)
        )
        response = grant(client, client_id, "gwen", aid=aid, otp=wrong_totp(totp))
        assert response.json["error"] == "invalid_otp"
    assert is_throttled(grant(client, world.public_id, "gwen", aid=world.live_id, otp=totp.now()))


# ---------------------------------------------------------------- finding 17: known devices


def device_token_of(response: TestResponse) -> str:
    assert response.status_code == 200, response.json
    token = response.json["device_token"]
    assert isinstance(token, str) and token
    return token


def test_known_app_logs_in_while_strangers_have_exhausted_the_per_user_limit(app, client, world):
    """An app that logged in before sends its device_token and gets tokens with the right
    password after strangers locked the username; a stranger is still 429."""
    device = device_token_of(grant(client, world.public_id, "alice", aid=world.live_id))
    exhaust_per_user_limit(client, world.public_id, "alice", world.live_id)
    stranger = grant(client, world.public_id, "alice", aid=world.live_id, ip="10.9.0.1")
    assert is_throttled(stranger)
    owner = grant(
        client, world.public_id, "alice", aid=world.live_id, ip="10.9.0.2", device_token=device
    )
    # The answer carries a token for the same device (signed anew: a device keeps its id
    # from login to login, so the new sign-in email knows it; in the same second the
    # signature's timestamp, and so the token, may be identical).
    with app.app_context():
        assert devices.read(device_token_of(owner)) == devices.read(device)
    assert is_throttled(grant(client, world.public_id, "alice", aid=world.live_id, ip="10.9.0.3"))


def test_device_token_is_bound_to_its_user_not_to_the_name(app, client, world):
    """A token earned by logging into another account's "alice" does not let its holder
    past the lockout of this account's alice (else anyone could mint budgets for a name)."""
    make_user(app, world.other_id, "alice", password="other alice's password")
    mine = grant(
        client, world.other_public_id, "alice", "other alice's password", aid=world.other_id
    )
    device = device_token_of(mine)
    exhaust_per_user_limit(client, world.public_id, "alice", world.live_id)
    response = grant(
        client, world.public_id, "alice", aid=world.live_id, ip="10.9.1.1", device_token=device
    )
    assert is_throttled(response)


def test_forged_or_garbled_device_tokens_are_strangers(client, world):
    """A device token not signed by us (or cut short, or huge) is no known device: 429."""
    device = device_token_of(grant(client, world.public_id, "alice", aid=world.live_id))
    exhaust_per_user_limit(client, world.public_id, "alice", world.live_id)
    for i, forged in enumerate([device[:-3] + "AAA", device[:20], "x" * 600, "null"]):
        response = grant(
            client,
            world.public_id,
            "alice",
            aid=world.live_id,
            ip=f"10.9.2.{i}",
            device_token=forged,
        )
        assert response.status_code in (400, 429)
        if response.status_code == 400:  # only the over-long one is refused as malformed
            assert response.json["error"] == "invalid_request" and len(forged) == 600
        else:
            assert is_throttled(response)


def test_a_known_device_is_locked_out_on_its_own_budget(client, world):
    """DEVICE_FAILURES wrong passwords with one device token (from many IPs) lock that
    device out, even with the right password; a new login elsewhere is not affected."""
    device = device_token_of(grant(client, world.public_id, "alice", aid=world.live_id))
    for i in range(DEVICE_FAILURES):
        response = grant(
            client,
            world.public_id,
            "alice",
            WRONG,
            aid=world.live_id,
            ip=f"10.10.0.{i}",
            device_token=device,
        )
        assert response.status_code == 400
    locked = grant(
        client, world.public_id, "alice", aid=world.live_id, ip="10.10.1.1", device_token=device
    )
    assert is_throttled(locked)
    # The device's failures did not spend the strangers' budget of the username.
    device_token_of(grant(client, world.public_id, "alice", aid=world.live_id, ip="10.10.1.2"))


def test_known_device_success_does_not_reset_the_strangers_budget(client, world):
    """The owner signing in with a known device leaves the strangers' lockout in place."""
    device = device_token_of(grant(client, world.public_id, "alice", aid=world.live_id))
    exhaust_per_user_limit(client, world.public_id, "alice", world.live_id)
    grant(client, world.public_id, "alice", aid=world.live_id, ip="10.11.0.1", device_token=device)
    assert is_throttled(grant(client, world.public_id, "alice", aid=world.live_id, ip="10.11.0.2"))


def test_known_device_still_meets_the_per_ip_limits(client, world):
    """A device token does not lift the per-IP-per-user limit: after FAILURES_PER_IP wrong
    passwords from one IP, the device's right password from that IP is 429."""
    device = device_token_of(grant(client, world.public_id, "alice", aid=world.live_id))
    for _ in range(FAILURES_PER_IP):
        grant(client, world.public_id, "alice", WRONG, aid=world.live_id, ip="10.12.0.1")
    response = grant(
        client, world.public_id, "alice", aid=world.live_id, ip="10.12.0.1", device_token=device
    )
    assert is_throttled(response)


def test_known_device_passes_the_lockout_for_the_second_factor_too(app, client, world):
    """A user with emailed codes: their app, with its device token, completes password +
    code while strangers have locked the username."""
    make_email_otp_user(app, world.live_id, "eve")
    live = {"aid": world.live_id}
    assert grant(client, world.public_id, "eve", **live).json["error"] == "otp_required"
    device = device_token_of(grant(client, world.public_id, "eve", otp=emailed_code(app), **live))
    exhaust_per_user_limit(client, world.public_id, "eve", world.live_id)
    known = {"ip": "10.13.0.1", "device_token": device, **live}
    assert grant(client, world.public_id, "eve", **known).json["error"] == "otp_required"
    device_token_of(grant(client, world.public_id, "eve", otp=emailed_code(app), **known))
    assert is_throttled(grant(client, world.public_id, "eve", ip="10.13.0.2", **live))


# ---------------------------------------------------------------- finding 17: PROXY_FIX


def test_behind_a_trusted_proxy_one_sprayer_does_not_block_its_neighbours(
    make_app: Callable[..., Flask], app: Flask, world: World
):
    """With PROXY_FIX=1, FAILURES_FROM_IP failures from one client behind the proxy block that
    client only; another client behind the same proxy still logs in."""
    proxied = make_app(PROXY_FIX=1).test_client()
    behind = lambda ip: {"X-Forwarded-For": ip}  # noqa: E731
    for i in range(FAILURES_FROM_IP):
        response = grant(proxied, world.public_id, f"spray{i}", WRONG, headers=behind("192.0.2.7"))
        assert response.status_code == 400
    assert is_throttled(
        grant(proxied, world.public_id, "alice", aid=world.live_id, headers=behind("192.0.2.7"))
    )
    device_token_of(
        grant(proxied, world.public_id, "alice", aid=world.live_id, headers=behind("192.0.2.8"))
    )
