"""The "New sign-in to your account" email: which logins send it (a new browser, a new
app or user agent at the token endpoint; never the first login, the same device again or a
refresh), its language and contents, and its "this wasn't me" link (signs out everywhere,
mails a reset link, works once)."""

from __future__ import annotations

from typing import Any

import pytest
from factories import PASSWORD, World, make_totp_user, make_user
from flask import Flask
from flask.testing import FlaskClient
from oauth_helpers import password_grant, refresh
from pages_helpers import csrf, recovery_codes, signed_in
from verification_helpers import body_of, link_token, mails, race
from werkzeug.test import TestResponse

from authserver.identity import known_devices, retention
from authserver.platform.extensions import db
from authserver.platform.models import KnownDevice, RefreshToken, User

EVENT = "identity.login.new_device"
RESET = "identity.password_reset_token.create.success"
CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def make_nina(app: Flask, world: World, **fields: Any) -> str:
    """A user with a verified address (only those are mailed)."""
    fields.setdefault("email_verified", True)
    return make_user(app, world.live_id, "nina", email="nina@example.com", **fields)


def page_login(
    client: FlaskClient,
    world: World,
    username: str = "nina",
    *,
    ip: str = "192.0.2.10",
    user_agent: str = CHROME_WINDOWS,
) -> TestResponse:
    """The hosted login form, as a browser with this address and User-Agent."""
    where: dict[str, Any] = {
        "environ_base": {"REMOTE_ADDR": ip},
        "headers": {"User-Agent": user_agent},
    }
    path = f"/login?aid={world.live_id}"
    form = client.get(path, **where)
    data = {"csrf_token": csrf(form), "username": username, "password": PASSWORD}
    response = client.post(path, data=data, **where)
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    return response


def grant(
    client: FlaskClient,
    world: World,
    *,
    ip: str = "198.51.100.7",
    user_agent: str = "NinaApp/1.0 okhttp/4.12",
    client_id: str | None = None,
    **extra: str,
) -> dict[str, Any]:
    """A password grant for nina from this address, User-Agent and client."""
    data = {"grant_type": "password", "username": "nina", "password": PASSWORD}
    data |= {"client_id": client_id or world.public_id, "scope": f"aid:{world.live_id}", **extra}
    response = client.post(
        "/oauth/token",
        data=data,
        environ_base={"REMOTE_ADDR": ip},
        headers={"User-Agent": user_agent},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def devices_of(app: Flask, user_id: str) -> list[KnownDevice]:
    with app.app_context():
        rows = db.session.scalars(db.select(KnownDevice).where(KnownDevice.user_id == user_id))
        return list(rows)


def alarm_link(app: Flask) -> str:
    """The "this wasn't me" token of the newest new-sign-in email."""
    sent = mails(app, EVENT)
    assert sent, "no new sign-in email"
    return link_token(sent[-1].text, "/not-me")


# --- which logins are announced -------------------------------------------------------


def test_a_new_browser_is_announced_once_and_the_first_login_never(web, world):
    """The first login ever is silent; a second browser is announced once (and not again
    when it signs in again with its device cookie); the first browser stays quiet."""
    user_id = make_nina(web, world)
    first, second = web.test_client(), web.test_client()
    page_login(first, world)
    assert mails(web, EVENT) == []
    page_login(second, world, ip="203.0.113.5", user_agent=FIREFOX_LINUX)
    sent = mails(web, EVENT)
    assert [m.to for m in sent] == ["nina@example.com"]
    assert sent[0].subject == "New sign-in to your account"
    assert "Firefox on Linux" in sent[0].text and "203.0.113.5" in sent[0].text
    page_login(second, world, ip="203.0.113.99", user_agent=FIREFOX_LINUX)
    page_login(first, world)
    assert len(mails(web, EVENT)) == 1
    assert len(devices_of(web, user_id)) == 2


def test_a_browser_without_its_device_cookie_is_a_new_device(web, world):
    """The device is the cookie, not the address: the same UA and IP without the cookie
    (cleared, or a private window) is announced."""
    make_nina(web, world)
    page_login(web.test_client(), world)
    page_login(web.test_client(), world)
    assert len(mails(web, EVENT)) == 1


def test_the_second_step_of_a_two_step_login_is_announced_too(web, world):
    """A TOTP user's login is announced once both steps passed (the shared success path),
    not at the password step."""
    user_id, totp = make_totp_user(
        web, world.live_id, "tina", email="tina@example.com", email_verified=True
    )
    first = web.test_client()  # the first device, through a recovery code
    assert page_login(first, world, "tina").headers["Location"] == "/login/code"
    page = first.get("/login/recovery")
    code = recovery_codes(web, user_id)[0]
    first.post("/login/recovery", data={"csrf_token": csrf(page), "recovery_code": code})
    assert signed_in(first) and mails(web, EVENT) == []
    client = web.test_client()
    assert page_login(client, world, "tina", ip="203.0.113.8").headers["Location"] == "/login/code"
    assert mails(web, EVENT) == []  # the password alone is no login
    code_page = client.get("/login/code")
    done = client.post("/login/code", data={"csrf_token": csrf(code_page), "code": totp.now()})
    assert done.status_code == 303 and signed_in(client)
    assert [m.to for m in mails(web, EVENT)] == ["tina@example.com"]


def test_token_endpoint_devices_are_client_user_agent_and_network(app, client, world):
    """At the token endpoint: the same client, User-Agent and /24 is the same device (no
    mail from another address in that network); another User-Agent, another client or
    another network is a new one."""
    make_nina(app, world)
    grant(client, world)  # the first device: silent
    grant(client, world, ip="198.51.100.200")  # same /24
    assert mails(app, EVENT) == []
    grant(client, world, user_agent="NinaApp/2.0 okhttp/4.12")
    assert len(mails(app, EVENT)) == 1
    grant(client, world, client_id=world.conf_id, client_secret=world.conf_secret)
    assert len(mails(app, EVENT)) == 2
    grant(client, world, ip="192.0.2.1")
    assert len(mails(app, EVENT)) == 3


def test_an_app_that_sends_its_device_token_back_stays_known_on_another_network(app, client, world):
    """The grant's device_token names the device it was issued to: sent back from another
    network, that app is no new device."""
    make_nina(app, world)
    token = grant(client, world)["device_token"]
    grant(client, world, ip="192.0.2.1", device_token=token)
    grant(client, world, ip="2001:db8::1", device_token=token)
    assert mails(app, EVENT) == []


def test_another_users_device_token_does_not_make_a_device_known(app, client, world):
    """A device token earned by alice names no device of nina's: the fingerprint decides."""
    make_nina(app, world)
    grant(client, world)
    alices = password_grant(client, world, "alice").get_json()["device_token"]
    grant(client, world, user_agent="Other/1.0", device_token=alices)
    assert len(mails(app, EVENT)) == 1


def test_refresh_is_never_announced(app, client, world):
    """Refreshing (rotating) a refresh token, even from a new address and User-Agent,
    sends nothing: it is no sign-in."""
    make_nina(app, world)
    grant(client, world)
    tokens = grant(client, world, user_agent="Elsewhere/1.0")
    assert len(mails(app, EVENT)) == 1
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": world.public_id,
        },
        environ_base={"REMOTE_ADDR": "203.0.113.77"},
        headers={"User-Agent": "YetAnother/9.9"},
    )
    assert response.status_code == 200
    assert refresh(client, response.get_json()["refresh_token"], world.public_id).status_code == 200
    assert len(mails(app, EVENT)) == 1


def test_an_unverified_address_is_not_mailed(app, client, world):
    """A login's IP and device go only to a proven address, never to whoever's address was
    typed at sign-up."""
    make_nina(app, world, email_verified=False)
    grant(client, world)
    grant(client, world, user_agent="Other/1.0")
    assert mails(app, EVENT) == []


def test_the_setting_turns_it_off(make_app, app, world):
    """NEW_DEVICE_EMAIL=False: no mail and no device rows."""
    quiet = make_app(NEW_DEVICE_EMAIL=False)
    user_id = make_nina(quiet, world)
    client = quiet.test_client()
    grant(client, world)
    grant(client, world, user_agent="Other/1.0")
    assert mails(quiet, EVENT) == []
    assert devices_of(quiet, user_id) == []


def test_the_email_is_in_the_users_language_over_smtp(mail_app, world):
    """A French user gets it in French, over a real SMTP server, with the time, the
    device, the IP and the link."""
    app, sink = mail_app(WTF_CSRF_ENABLED=True)
    make_nina(app, world, locale="fr")
    page_login(app.test_client(), world)
    page_login(app.test_client(), world, ip="203.0.113.5")
    received = sink.messages()
    assert len(received) == 1
    message = received[0]
    assert message["Subject"] == "Nouvelle connexion à votre compte"
    assert message["Content-Language"] == "fr"
    body = body_of(message)
    assert "Chrome sur Windows" in body and "Adresse IP : 203.0.113.5" in body
    assert " UTC" in body and "/not-me?token=" in body
    assert "Si ce n'était pas vous" in body


# --- "this wasn't me" -------------------------------------------------------------------


def _announced(web: Flask, world: World) -> tuple[str, dict[str, Any]]:
    """nina signed in with an app, then a stranger in a browser: (user id, the app's tokens)."""
    user_id = make_nina(web, world)
    app_tokens = grant(web.test_client(), world)
    page_login(web.test_client(), world, ip="203.0.113.5")
    return user_id, app_tokens


def test_this_wasnt_me_signs_out_everywhere_and_mails_a_reset_link_once(web, world):
    """GET shows a button (changing nothing); POST ends every login (the app's refresh
    token and the stranger's browser) and mails a reset link; the link then is dead."""
    user_id, app_tokens = _announced(web, world)
    stranger = web.test_client()
    page_login(stranger, world, ip="203.0.113.6")
    assert signed_in(stranger)
    token = alarm_link(web)
    person = web.test_client()
    moved = person.get(f"/not-me?token={token}&aid={world.live_id}")
    assert moved.status_code == 303 and "token" not in moved.headers["Location"]
    page = person.get(moved.headers["Location"])
    assert page.status_code == 200 and "Sign out everywhere" in page.get_data(as_text=True)
    assert refresh(web.test_client(), app_tokens["refresh_token"], world.public_id).status_code == (
        200
    )
    done = person.post(moved.headers["Location"], data={"csrf_token": csrf(page)})
    assert done.status_code == 200, done.get_data(as_text=True)[:300]
    assert "signed out everywhere" in done.get_data(as_text=True)
    assert not signed_in(stranger)
    with web.app_context():
        live = db.session.scalars(
            db.select(RefreshToken).where(
                RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)
            )
        ).all()
    assert live == []
    resets = mails(web, RESET)
    assert [m.to for m in resets] == ["nina@example.com"]
    assert "/reset-password?token=" in resets[0].text
    again = web.test_client()
    assert again.get(f"/not-me?token={token}", follow_redirects=True).status_code == 400
    second = again.post("/not-me", data={"csrf_token": "x"})
    assert second.status_code == 400
    assert len(mails(web, RESET)) == 1


def test_two_uses_at_once_one_wins(app, world):
    """Two concurrent uses of one link: exactly one signs out and mails a reset."""
    make_nina(app, world)
    client = app.test_client()
    grant(client, world)
    grant(client, world, user_agent="Other/1.0")
    token = alarm_link(app)

    def use() -> bool:
        with app.app_context():
            try:
                known_devices.report(token)
            except Exception:
                return False
            return True

    assert sorted(race(use)) == [False, True]
    assert len(mails(app, RESET)) == 1


@pytest.mark.parametrize(
    "token",
    ["", "x", "a" * 19, "a" * 43, "a" * 129, "a" * 5000, "%00" * 30, "é" * 30],
)
def test_bad_links_are_refused_and_change_nothing(web, world, token):
    """Missing, short, unknown, overlong and hostile tokens: 400 on GET and POST, no
    sign-out, no reset mail."""
    user_id, _ = _announced(web, world)
    with web.app_context():
        generation = db.session.get(User, user_id).token_generation
    client = web.test_client()
    assert client.get(f"/not-me?token={token}", follow_redirects=True).status_code == 400
    assert client.post("/not-me", data={}).status_code == 400
    assert client.get("/not-me").status_code == 400
    with web.app_context():
        assert db.session.get(User, user_id).token_generation == generation
    assert mails(web, RESET) == []


def test_a_reported_device_is_announced_again_at_most_once_a_day(app, client, world):
    """After "this wasn't me" the device is no longer trusted: its next login is announced
    again, but only once within a day."""
    make_nina(app, world)
    grant(client, world)
    grant(client, world, user_agent="Stranger/1.0")
    with app.app_context():
        known_devices.report(alarm_link(app))
        # A day has passed since that alarm.
        for row in db.session.scalars(db.select(KnownDevice)):
            if row.reported_at is not None:
                row.notified_at = row.notified_at.replace(year=row.notified_at.year - 1)
        db.session.commit()
    grant(client, world, user_agent="Stranger/1.0")
    grant(client, world, user_agent="Stranger/1.0")
    assert len(mails(app, EVENT)) == 2


# --- the parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (CHROME_WINDOWS, ("Chrome", "Windows")),
        (FIREFOX_LINUX, ("Firefox", "Linux")),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"
            " (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
            ("Safari", "iOS"),
        ),
        (CHROME_WINDOWS + " Edg/131.0.0.0", ("Edge", "Windows")),
        (
            "Mozilla/5.0 (Linux; Android 14) Chrome/131.0 Mobile Safari/537.36",
            ("Chrome", "Android"),
        ),
        ("NinaApp/1.0 okhttp/4.12", (None, None)),
        (None, (None, None)),
        ("\x00" * 10000, (None, None)),
    ],
)
def test_user_agents_are_described_simply(user_agent, expected):
    """Browser and system names for the common agents; nothing guessed for the rest."""
    assert known_devices.describe_user_agent(user_agent) == expected


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("198.51.100.7", "198.51.100.0/24"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("not-an-ip", "not-an-ip"),
        (None, "-"),
    ],
)
def test_networks_are_slash_24_and_slash_64(ip, network):
    """What the token endpoint's device fingerprint takes of the address."""
    assert known_devices.network(ip) == network


def test_prune_forgets_devices_unseen_for_a_year(app, client, world):
    """`authserver prune` deletes a device row unseen for longer than a device token lives,
    and keeps the others."""
    user_id = make_nina(app, world)
    grant(client, world)
    grant(client, world, user_agent="Other/1.0")
    with app.app_context():
        row = db.session.scalars(db.select(KnownDevice)).first()
        assert row is not None
        row.last_seen_at = row.last_seen_at.replace(year=row.last_seen_at.year - 2)
        db.session.commit()
        assert retention.prune()["known_devices"] == 1
    assert len(devices_of(app, user_id)) == 1
