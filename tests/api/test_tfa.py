"""TOTP enrolment, recovery codes and switching TOTP off over /v1 on PostgreSQL + Redis: the
happy paths, login through the password grant, proofs, throttles, races, events and emails."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
from factories import PASSWORD, World, make_user
from oauth_helpers import bearer, login, password_grant, run_together, settle_totp_step, wrong_totp
from verification_helpers import client_token, guest_token

from authserver.api.tfa import OPENAPI
from authserver.platform.events import signal
from authserver.platform.extensions import db
from authserver.platform.models import Account, RecoveryCode, User

MEDIA = "application/vnd.api+json"
ES_ON = "La verificación en dos pasos está activada"
ES_CODES = "Nuevos códigos de recuperación"
FULLWIDTH_DIGITS = "\uff11\uff12\uff13\uff14\uff15\uff16"  # str.isdigit() says True
SETUPS, CONFIRMATIONS = "/v1/totp_setups", "/v1/totp_confirmations"
CODE_SETS, DISABLEMENTS = "/v1/recovery_code_sets", "/v1/tfa_disablements"
TYPES = {
    SETUPS: "TotpSetup",
    CONFIRMATIONS: "TotpConfirmation",
    CODE_SETS: "RecoveryCodeSet",
    DISABLEMENTS: "TfaDisablement",
}


@pytest.fixture(autouse=True)
def _clear_of_step_end() -> None:
    """Tests compute codes for this step and the next: start well inside a 30 s step."""
    settle_totp_step(margin=5.0)


# ---------------------------------------------------------------- helpers


def post(client: Any, path: str, token: str | None, attributes: dict[str, Any]) -> Any:
    body = {"data": {"type": TYPES[path], "attributes": attributes}}
    headers = bearer(token) if token else {}
    return client.post(path, data=json.dumps(body), content_type=MEDIA, headers=headers)


def ok(response: Any, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    return dict(response.get_json()["data"]["attributes"])


def error(response: Any, status: int) -> tuple[str, str | None]:
    """(code, pointer) of the one JSON:API error in `response`."""
    assert response.status_code == status, response.get_data(as_text=True)
    [err] = response.get_json()["errors"]
    return err["code"], err.get("source", {}).get("pointer")


def now_code(totp: pyotp.TOTP) -> str:
    return totp.at(time.time())


def next_code(totp: pyotp.TOTP) -> str:
    """The next step's code: inside the +-1 window and not yet spent by `now_code`."""
    return totp.at(time.time() + 30)


def enrol(client: Any, token: str) -> tuple[pyotp.TOTP, list[str]]:
    """Start and confirm a setup with the current code: (the app's TOTP, recovery codes)."""
    setup = ok(post(client, SETUPS, token, {"password": PASSWORD}))
    totp = pyotp.TOTP(setup["secret"])
    confirmed = ok(post(client, CONFIRMATIONS, token, {"code": now_code(totp)}))
    return totp, confirmed["recoveryCodes"]


def state(app: Any, user_id: str) -> tuple[str, str | None, int]:
    """(authMethod, TOTP secret, unused recovery codes) as committed."""
    with app.app_context():
        user = db.session.get(User, user_id)
        unused = db.session.scalar(
            db.select(db.func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
        )
        return user.auth_method, user.totp_secret, int(unused or 0)


def grant(client: Any, world: World, **extra: str) -> Any:
    """alice's password grant (scope openid), with `otp` or `recovery_code`."""
    return password_grant(client, world, scope="openid", **extra)


def user_with_email(app: Any, world: World, username: str, locale: str) -> str:
    return make_user(app, world.live_id, username, email=f"{username}@example.com", locale=locale)


# ---------------------------------------------------------------- end to end


def test_enrol_totp_and_log_in_with_it_through_the_password_grant(app, client, world):
    """Start, confirm; the grant asks for the OTP, refuses the confirming code, takes a new one."""
    token = login(client, world)["access_token"]
    setup = ok(post(client, SETUPS, token, {"password": PASSWORD}))
    assert state(app, world.alice_id) == ("simple", None, 0)  # nothing changes before confirm
    totp = pyotp.TOTP(setup["secret"])
    confirming = now_code(totp)
    confirmed = ok(post(client, CONFIRMATIONS, token, {"code": confirming}))
    assert confirmed["authMethod"] == "tfa_totp"
    assert client.get("/v1/user", headers=bearer(token)).get_json()["data"]["attributes"][
        "authMethod"
    ] == ("tfa_totp")

    asked = grant(client, world)
    assert asked.status_code == 400
    assert asked.get_json()["error"] == "otp_required"
    assert asked.get_json()["otp_method"] == "tfa_totp"
    replay = grant(client, world, otp=confirming)  # the confirming code was spent
    assert (replay.status_code, replay.get_json()["error"]) == (400, "invalid_otp")
    tokens = grant(client, world, otp=next_code(totp))
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    assert tokens.get_json()["access_token"]


def test_recovery_code_login_and_old_factor_refused_after_disable(app, client, world):
    """A recovery code logs in once; after disabling, the old secret and codes are dead."""
    token = login(client, world)["access_token"]
    old_totp, codes = enrol(client, token)
    assert grant(client, world, recovery_code=codes[0]).status_code == 200
    again = grant(client, world, recovery_code=codes[0])
    assert (again.status_code, again.get_json()["error"]) == (400, "invalid_otp")

    response = post(client, DISABLEMENTS, token, {"password": PASSWORD, "recoveryCode": codes[1]})
    assert response.status_code == 204 and response.get_data() == b""
    assert state(app, world.alice_id) == ("simple", None, 0)
    assert grant(client, world).status_code == 200  # the password alone is enough now
    refused = post(client, CODE_SETS, token, {"otp": next_code(old_totp)})
    assert error(refused, 422) == ("totp_not_enabled", None)

    new_totp, _ = enrol(client, token)  # a new secret: nothing of the old one works
    assert new_totp.secret != old_totp.secret
    old = grant(client, world, otp=next_code(old_totp))
    assert (old.status_code, old.get_json()["error"]) == (400, "invalid_otp")
    old_code = grant(client, world, recovery_code=codes[2])
    assert (old_code.status_code, old_code.get_json()["error"]) == (400, "invalid_otp")


# ---------------------------------------------------------------- start


def test_start_returns_secret_uri_and_qr_code_and_keeps_it_pending(app, client, world, store):
    """201 TotpSetup: a 160-bit secret, its otpauth URI (issuer = account), an SVG, 10 minutes."""
    token = login(client, world)["access_token"]
    before = time.time()
    response = post(client, SETUPS, token, {"password": PASSWORD})
    setup = ok(response)
    assert response.get_json()["data"]["type"] == "TotpSetup"
    assert response.headers["Cache-Control"] == "no-store"
    secret = setup["secret"]
    assert len(secret) == 32 and len(base64.b32decode(secret)) == 20
    uri = urlsplit(setup["otpauthUri"])
    query = parse_qs(uri.query)
    assert (uri.scheme, uri.netloc, unquote(uri.path)) == ("otpauth", "totp", "/Acme:alice")
    assert query == {"secret": [secret], "issuer": ["Acme"]}
    assert setup["qrCodeSvg"].startswith("<svg") and "<path" in setup["qrCodeSvg"]
    left = datetime.fromisoformat(setup["expiresAt"]).timestamp() - before
    assert 595 <= left <= 605
    ttl = store.ttl(f"totp-setup:{world.alice_id}")
    assert ttl is not None and 590 <= ttl <= 600
    assert state(app, world.alice_id) == ("simple", None, 0)


def test_a_global_users_setup_is_issued_by_this_server(app, client, world):
    """A global user (member of Acme) sees the server's host name as the issuer."""
    make_user(app, None, "gina", role="owner", member_of={world.live_id: "administrator"})
    token = login(client, world, username="gina")["access_token"]
    uri = urlsplit(ok(post(client, SETUPS, token, {"password": PASSWORD}))["otpauthUri"])
    host = urlsplit(app.config["ISSUER"]).hostname
    assert unquote(uri.path) == f"/{host}:gina" and parse_qs(uri.query)["issuer"] == [host]


def test_start_needs_the_right_password(app, client, world, store):
    """No password: 422 required; a wrong one: 422 invalid_password; no setup is kept."""
    token = login(client, world)["access_token"]
    missing = post(client, SETUPS, token, {})
    assert error(missing, 422) == ("required", "/data/attributes/password")
    wrong = post(client, SETUPS, token, {"password": "not-the-password"})
    assert error(wrong, 422) == ("invalid_password", "/data/attributes/password")
    assert store.get(f"totp-setup:{world.alice_id}") is None


def test_re_enrolment_needs_a_current_code_or_recovery_code(app, client, world, store):
    """With TOTP on, a new setup needs password and code; the new secret then replaces the old."""
    token = login(client, world)["access_token"]
    old_totp, codes = enrol(client, token)
    _, old_secret, _ = state(app, world.alice_id)

    only_password = post(client, SETUPS, token, {"password": PASSWORD})
    assert error(only_password, 422) == ("required", "/data/attributes/otp")
    bad_code = post(client, SETUPS, token, {"password": PASSWORD, "otp": wrong_totp(old_totp)})
    assert error(bad_code, 422) == ("invalid_otp", "/data/attributes/otp")
    bad_password = post(
        client, SETUPS, token, {"password": "nope-nope", "otp": next_code(old_totp)}
    )
    assert error(bad_password, 422) == ("invalid_password", "/data/attributes/password")
    assert "secret" not in json.dumps([only_password.get_json(), bad_code.get_json()])
    assert store.get(f"totp-setup:{world.alice_id}") is None
    assert state(app, world.alice_id) == ("tfa_totp", old_secret, 10)

    setup = ok(post(client, SETUPS, token, {"password": PASSWORD, "recoveryCode": codes[0]}))
    new_totp = pyotp.TOTP(setup["secret"])
    assert state(app, world.alice_id) == ("tfa_totp", old_secret, 9)  # still the old one
    new_codes = ok(post(client, CONFIRMATIONS, token, {"code": now_code(new_totp)}))
    assert state(app, world.alice_id) == ("tfa_totp", new_totp.secret, 10)
    old = grant(client, world, otp=next_code(old_totp))
    assert (old.status_code, old.get_json()["error"]) == (400, "invalid_otp")
    assert grant(client, world, recovery_code=codes[1]).status_code == 400  # the old set died
    assert grant(client, world, recovery_code=new_codes["recoveryCodes"][0]).status_code == 200


def test_re_enrolment_with_a_current_otp_then_confirm_in_the_same_step(app, client, world):
    """Proving with the old app's code does not block confirming the new secret at once."""
    token = login(client, world)["access_token"]
    old_totp, _ = enrol(client, token)
    setup = ok(post(client, SETUPS, token, {"password": PASSWORD, "otp": next_code(old_totp)}))
    new_totp = pyotp.TOTP(setup["secret"])
    ok(post(client, CONFIRMATIONS, token, {"code": now_code(new_totp)}))
    assert state(app, world.alice_id)[1] == new_totp.secret


# ---------------------------------------------------------------- confirm


def test_secret_is_never_returned_after_confirm(app, client, world):
    """The confirmation, GET /v1/user and a second confirm never show the secret again."""
    token = login(client, world)["access_token"]
    setup = ok(post(client, SETUPS, token, {"password": PASSWORD}))
    secret = setup["secret"]
    confirmed = post(client, CONFIRMATIONS, token, {"code": now_code(pyotp.TOTP(secret))})
    codes = ok(confirmed)["recoveryCodes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    again = post(client, CONFIRMATIONS, token, {"code": next_code(pyotp.TOTP(secret))})
    assert error(again, 422) == ("no_pending_setup", "/data/attributes/code")
    user = client.get("/v1/user", headers=bearer(token))
    for response in (confirmed, again, user):
        assert secret not in response.get_data(as_text=True)


def test_recovery_codes_are_stored_hashed(app, client, world):
    """The database holds digests of the 10 codes, never the codes."""
    token = login(client, world)["access_token"]
    _, codes = enrol(client, token)
    with app.app_context():
        stored = set(db.session.scalars(db.select(RecoveryCode.code_hash)))
    assert len(stored) == 10
    assert not stored & {c for code in codes for c in (code, code.replace("-", ""))}


def test_wrong_code_changes_nothing(app, client, world):
    """A wrong confirming code: 422 invalid_otp at /data/attributes/code; the setup still works."""
    token = login(client, world)["access_token"]
    totp = pyotp.TOTP(ok(post(client, SETUPS, token, {"password": PASSWORD}))["secret"])
    wrong = post(client, CONFIRMATIONS, token, {"code": wrong_totp(totp)})
    assert error(wrong, 422) == ("invalid_otp", "/data/attributes/code")
    assert state(app, world.alice_id) == ("simple", None, 0)
    ok(post(client, CONFIRMATIONS, token, {"code": now_code(totp)}))


def test_five_wrong_codes_void_the_setup(app, client, world, store):
    """After 5 wrong codes the right one gets no_pending_setup; a new setup starts over."""
    token = login(client, world)["access_token"]
    totp = pyotp.TOTP(ok(post(client, SETUPS, token, {"password": PASSWORD}))["secret"])
    for _ in range(5):
        assert error(post(client, CONFIRMATIONS, token, {"code": wrong_totp(totp)}), 422)[0] == (
            "invalid_otp"
        )
    assert store.get(f"totp-setup:{world.alice_id}") is None
    late = post(client, CONFIRMATIONS, token, {"code": now_code(totp)})
    assert error(late, 422) == ("no_pending_setup", "/data/attributes/code")
    assert state(app, world.alice_id) == ("simple", None, 0)
    fresh = pyotp.TOTP(ok(post(client, SETUPS, token, {"password": PASSWORD}))["secret"])
    ok(post(client, CONFIRMATIONS, token, {"code": now_code(fresh)}))


def test_four_wrong_codes_leave_the_setup_usable(app, client, world):
    """The limit is 5: after 4 wrong codes the right one still confirms."""
    token = login(client, world)["access_token"]
    totp = pyotp.TOTP(ok(post(client, SETUPS, token, {"password": PASSWORD}))["secret"])
    for _ in range(4):
        post(client, CONFIRMATIONS, token, {"code": wrong_totp(totp)})
    ok(post(client, CONFIRMATIONS, token, {"code": now_code(totp)}))


def test_concurrent_confirmations_succeed_once(app, client, world):
    """Eight parallel confirmations with the right code: one 201, one set of 10 codes."""
    token = login(client, world)["access_token"]
    totp = pyotp.TOTP(ok(post(client, SETUPS, token, {"password": PASSWORD}))["secret"])
    code = now_code(totp)
    enabled: list[str] = []

    def record(sender: Any, **payload: Any) -> None:
        enabled.append(payload["user"].id)

    def attempt(i: int) -> Any:
        return post(app.test_client(), CONFIRMATIONS, token, {"code": code})

    with signal("identity.tfa.enable.success").connected_to(record):
        responses = run_together(8, attempt)
    assert sorted(r.status_code for r in responses) == [201] + [422] * 7
    assert enabled == [world.alice_id]
    assert state(app, world.alice_id) == ("tfa_totp", totp.secret, 10)


def test_confirm_without_a_setup_is_422(app, client, world):
    """Confirming when nothing was started: 422 no_pending_setup, nothing changes."""
    token = login(client, world)["access_token"]
    response = post(client, CONFIRMATIONS, token, {"code": "123456"})
    assert error(response, 422) == ("no_pending_setup", "/data/attributes/code")
    assert state(app, world.alice_id) == ("simple", None, 0)


# ---------------------------------------------------------------- recovery code sets


def test_new_recovery_codes_replace_the_old_set(app, client, world):
    """A current OTP gives 10 new codes; the old ones stop working and the new ones log in."""
    token = login(client, world)["access_token"]
    totp, old_codes = enrol(client, token)
    response = post(client, CODE_SETS, token, {"otp": next_code(totp)})
    new_codes = ok(response)["codes"]
    assert response.get_json()["data"]["type"] == "RecoveryCodeSet"
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    assert grant(client, world, recovery_code=old_codes[0]).status_code == 400
    assert grant(client, world, recovery_code=new_codes[0]).status_code == 200


def test_new_recovery_codes_need_a_right_current_otp(app, client, world):
    """No otp, a wrong one, or a recovery code instead: 422 and the old set still works."""
    token = login(client, world)["access_token"]
    totp, codes = enrol(client, token)
    assert error(post(client, CODE_SETS, token, {}), 422) == ("required", "/data/attributes/otp")
    wrong = post(client, CODE_SETS, token, {"otp": wrong_totp(totp)})
    assert error(wrong, 422) == ("invalid_otp", "/data/attributes/otp")
    instead = post(client, CODE_SETS, token, {"recoveryCode": codes[0]}).get_json()["errors"]
    assert {(e["code"], e["source"]["pointer"]) for e in instead} == {
        ("unknown_attribute", "/data/attributes/recoveryCode"),
        ("required", "/data/attributes/otp"),
    }
    assert state(app, world.alice_id)[2] == 10
    assert grant(client, world, recovery_code=codes[0]).status_code == 200


def test_new_recovery_codes_refused_without_totp(app, client, world):
    """A user without TOTP gets 422 totp_not_enabled and no codes."""
    token = login(client, world)["access_token"]
    assert error(post(client, CODE_SETS, token, {"otp": "123456"}), 422)[0] == "totp_not_enabled"
    assert state(app, world.alice_id) == ("simple", None, 0)


# ---------------------------------------------------------------- disable


def test_disable_with_password_and_otp(app, client, world, store):
    """204; the secret, the codes and a pending setup go; the old codes stop at once."""
    token = login(client, world)["access_token"]
    totp, codes = enrol(client, token)
    ok(post(client, SETUPS, token, {"password": PASSWORD, "recoveryCode": codes[0]}))  # pending
    otp = next_code(totp)
    response = post(client, DISABLEMENTS, token, {"password": PASSWORD, "otp": otp})
    assert response.status_code == 204
    assert state(app, world.alice_id) == ("simple", None, 0)
    assert client.get("/v1/user", headers=bearer(token)).get_json()["data"]["attributes"][
        "authMethod"
    ] == ("simple")
    assert store.get(f"totp-setup:{world.alice_id}") is None


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"password": "wrong-password", "otp": "NEXT"}, ("invalid_password", "password")),
        ({"password": PASSWORD, "otp": "WRONG"}, ("invalid_otp", "otp")),
        ({"password": PASSWORD, "recoveryCode": "aaaa-bbbb-cccc-dddd"}, None),
        ({"password": PASSWORD}, ("required", "otp")),
        ({"otp": "NEXT"}, ("required", "password")),
        ({"password": PASSWORD, "otp": "NEXT", "recoveryCode": "RC"}, ("conflicting", None)),
    ],
    ids=["wrong-password", "wrong-otp", "wrong-recovery-code", "no-code", "no-password", "both"],
)
def test_disable_refusals_change_nothing(app, client, world, attributes, expected):
    """Each missing or wrong proof: 422 naming the attribute; TOTP, secret and codes stay."""
    token = login(client, world)["access_token"]
    totp, codes = enrol(client, token)
    before = state(app, world.alice_id)
    values = {"NEXT": next_code(totp), "WRONG": wrong_totp(totp), "RC": codes[0]}
    sent = {k: values.get(v, v) for k, v in attributes.items()}
    code, pointer = error(post(client, DISABLEMENTS, token, sent), 422)
    if expected is None:
        expected = ("invalid_recovery_code", "recoveryCode")
    if expected[0] == "conflicting":
        expected = ("conflicting", "recoveryCode")
    assert (code, pointer) == (expected[0], f"/data/attributes/{expected[1]}")
    assert state(app, world.alice_id) == before


def test_disable_is_throttled_per_user(app, client, world):
    """Five wrong proofs, then even the right ones get 429 with Retry-After; nothing changes."""
    token = login(client, world)["access_token"]
    totp, codes = enrol(client, token)
    for _ in range(5):
        wrong = post(client, DISABLEMENTS, token, {"password": "wrong-password", "otp": "123456"})
        assert error(wrong, 422)[0] == "invalid_password"
    right = post(client, DISABLEMENTS, token, {"password": PASSWORD, "recoveryCode": codes[0]})
    assert error(right, 429)[0] == "throttled"
    assert 1 <= int(right.headers["Retry-After"]) <= 900
    assert state(app, world.alice_id) == ("tfa_totp", totp.secret, 10)  # the code was not spent
    # The budget is the user's, shared by every proof: renewing codes is blocked too.
    assert error(post(client, CODE_SETS, token, {"otp": next_code(totp)}), 429)[0] == "throttled"


def test_parallel_wrong_proofs_share_one_budget(app, client, world):
    """Ten parallel wrong passwords: at most five are checked, the rest get 429."""
    token = login(client, world)["access_token"]
    enrol(client, token)

    def attempt(i: int) -> Any:
        body = {"password": f"wrong-{i}-password", "otp": "123456"}
        return post(app.test_client(), DISABLEMENTS, token, body)

    statuses = sorted(r.status_code for r in run_together(10, attempt))
    assert statuses == [422] * 5 + [429] * 5


def test_disable_without_two_step_login_is_422(app, client, world):
    """A simple user has nothing to disable: 422 tfa_not_enabled."""
    token = login(client, world)["access_token"]
    response = post(client, DISABLEMENTS, token, {"password": PASSWORD, "otp": "123456"})
    assert error(response, 422)[0] == "tfa_not_enabled"


# ---------------------------------------------------------------- who may call


ALL = [SETUPS, CONFIRMATIONS, CODE_SETS, DISABLEMENTS]


@pytest.mark.parametrize("path", ALL)
def test_anonymous_is_401(client, world, path):
    """No bearer token: 401 with WWW-Authenticate."""
    response = post(client, path, None, {})
    assert error(response, 401)[0] == "unauthenticated"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ALL)
def test_guest_is_403(app, client, world, path, store):
    """A guest (publishable-token) token: 403, and no setup is started."""
    response = post(client, path, guest_token(client, world.live_prt), {"password": PASSWORD})
    assert error(response, 403)[0] == "forbidden"
    assert not store.get(f"totp-setup:{world.alice_id}")


@pytest.mark.parametrize("path", ALL)
def test_client_credentials_token_is_404(client, world, path):
    """A client token has no user: 404 as GET /v1/user."""
    response = post(client, path, client_token(client, world), {"password": PASSWORD})
    assert error(response, 404)[0] == "not_found"


def test_customer_of_the_test_account_can_enrol(app, client, world):
    """Any role but guest may enrol, in the test account too; only that user changes."""
    cora = make_user(app, world.test_id, "cora")
    token = login(
        client, world, username="cora", aid=world.test_id, client_id=world.test_public_id
    )["access_token"]
    totp, _ = enrol(client, token)
    assert state(app, cora) == ("tfa_totp", totp.secret, 10)
    assert state(app, world.alice_id) == ("simple", None, 0)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("path", ALL)
def test_bad_documents_are_refused(app, client, world, path, store):
    """415, 400, 409, client id 403, unknown attribute 422: each with a code; nothing changes."""
    token = login(client, world)["access_token"]
    headers = bearer(token)
    body = {"data": {"type": TYPES[path], "attributes": {}}}
    cases = [
        (client.post(path, data="password=x", headers=headers, content_type="text/plain"), 415),
        (client.post(path, data="{", headers=headers, content_type=MEDIA), 400),
        (client.post(path, data="[]", headers=headers, content_type=MEDIA), 400),
        (
            client.post(
                path,
                data=json.dumps({"data": {"type": "User"}}),
                headers=headers,
                content_type=MEDIA,
            ),
            409,
        ),
        (
            client.post(
                path,
                data=json.dumps({"data": {**body["data"], "id": "x"}}),
                headers=headers,
                content_type=MEDIA,
            ),
            403,
        ),
        (
            post(
                client,
                path,
                token,
                {"password": PASSWORD, "code": "1", "otp": "1", "secret": "JBSWY3DPEHPK3PXP"},
            ),
            422,
        ),
    ]
    for response, status in cases:
        code, _ = error_any(response, status)
        assert code
    unknown = cases[-1][0].get_json()["errors"]
    assert "/data/attributes/secret" in {e["source"]["pointer"] for e in unknown}
    assert all(e["code"] in ("unknown_attribute", "required") for e in unknown)
    assert store.get(f"totp-setup:{world.alice_id}") is None
    assert state(app, world.alice_id) == ("simple", None, 0)


def error_any(response: Any, status: int) -> tuple[str, str | None]:
    """Like `error`, for documents that may hold several errors."""
    assert response.status_code == status, response.get_data(as_text=True)
    first = response.get_json()["errors"][0]
    return first["code"], first.get("source", {}).get("pointer")


@pytest.mark.parametrize(
    ("path", "attributes", "expected"),
    [
        (SETUPS, {"password": 12345678}, ("invalid_type", "password")),
        (SETUPS, {"password": None}, ("invalid_type", "password")),
        (SETUPS, {"password": "x" * 1025}, ("too_long", "password")),
        (SETUPS, {"password": PASSWORD, "otp": ["123456"]}, ("invalid_type", "otp")),
        (CONFIRMATIONS, {"code": 123456}, ("invalid_type", "code")),
        (CONFIRMATIONS, {"code": "12345a"}, ("invalid_format", "code")),
        (CONFIRMATIONS, {"code": FULLWIDTH_DIGITS}, ("invalid_format", "code")),
        (CONFIRMATIONS, {"code": "1234567"}, ("invalid_format", "code")),
        (CONFIRMATIONS, {"code": "1" * 17}, ("too_long", "code")),
        (CONFIRMATIONS, {}, ("required", "code")),
        (CODE_SETS, {"otp": True}, ("invalid_type", "otp")),
        (CODE_SETS, {"otp": "abcdef"}, ("invalid_format", "otp")),
        (
            DISABLEMENTS,
            {"password": PASSWORD, "recoveryCode": "r" * 65},
            ("too_long", "recoveryCode"),
        ),
        (DISABLEMENTS, {"password": PASSWORD, "otp": "12 34 56"}, ("invalid_format", "otp")),
    ],
)
def test_wrong_types_sizes_and_formats(app, client, world, store, path, attributes, expected):
    """Each bad attribute: 422, a stable code at its pointer; no change, no attempt counted."""
    token = login(client, world)["access_token"]
    if path in (CODE_SETS, DISABLEMENTS):
        enrol(client, token)
    elif path == CONFIRMATIONS:
        ok(post(client, SETUPS, token, {"password": PASSWORD}))
    before = state(app, world.alice_id)
    pending = store.get(f"totp-setup:{world.alice_id}")
    code, pointer = error_any(post(client, path, token, attributes), 422)
    assert (code, pointer) == (expected[0], f"/data/attributes/{expected[1]}")
    assert state(app, world.alice_id) == before
    assert store.get(f"totp-setup:{world.alice_id}") == pending
    assert store.count(f"totp-setup-tries:{world.alice_id}") == 0
    assert store.count(f"tfa-proof:{world.alice_id}") == 0


def test_redis_down_is_503_and_changes_nothing(app, client, world, make_app, unused_port):
    """With Redis unreachable, starting and disabling answer 503; the user stays as they were."""
    token = login(client, world)["access_token"]
    totp, _ = enrol(client, token)
    down = make_app(REDIS_URL=f"redis://127.0.0.1:{unused_port}/0").test_client()
    for path, body in (
        (SETUPS, {"password": PASSWORD, "otp": next_code(totp)}),
        (DISABLEMENTS, {"password": PASSWORD, "otp": next_code(totp)}),
        (CONFIRMATIONS, {"code": next_code(totp)}),
    ):
        assert error_any(post(down, path, token, body), 503)[0]
    assert state(app, world.alice_id) == ("tfa_totp", totp.secret, 10)


# ---------------------------------------------------------------- events and emails


def test_events_fire_after_commit_with_their_payload(app, client, world):
    """enable and recovery_codes events see their change committed; a refused disable emits none."""
    seen: list[tuple[str, str, str | None, dict[str, Any]]] = []
    names = (
        "identity.tfa.enable.success",
        "identity.recovery_codes.create.success",
        "identity.tfa.disable.success",
    )

    def receiver(name: str) -> Any:
        def receive(sender: Any, **payload: Any) -> None:
            # A separate connection sees only committed data.
            with db.engine.connect() as conn:
                method = conn.execute(
                    db.select(User.auth_method).where(User.id == payload["user"].id)
                ).scalar()
            extra = {k: v for k, v in payload.items() if k not in ("user", "account")}
            seen.append((name, payload["account"].id, method, extra))

        return receive

    receivers = [receiver(name) for name in names]
    for name, receive in zip(names, receivers, strict=True):
        signal(name).connect(receive, sender=app)
    try:
        token = login(client, world)["access_token"]
        totp, _ = enrol(client, token)
        ok(post(client, CODE_SETS, token, {"otp": next_code(totp)}))
        refused = post(client, DISABLEMENTS, token, {"password": "wrong-password", "otp": "000000"})
        assert refused.status_code == 422
    finally:
        for name, receive in zip(names, receivers, strict=True):
            signal(name).disconnect(receive, sender=app)
    assert seen == [
        ("identity.tfa.enable.success", world.live_id, "tfa_totp", {"method": "tfa_totp"}),
        ("identity.recovery_codes.create.success", world.live_id, "tfa_totp", {"count": 10}),
    ]


def test_disable_event_after_commit(app, client, world):
    """identity.tfa.disable.success fires once, after authMethod simple is committed."""
    token = login(client, world)["access_token"]
    _, codes = enrol(client, token)
    seen: list[tuple[str | None, dict[str, Any]]] = []

    def receive(sender: Any, **payload: Any) -> None:
        with db.engine.connect() as conn:
            method = conn.execute(
                db.select(User.auth_method).where(User.id == payload["user"].id)
            ).scalar()
        seen.append((method, {k: v for k, v in payload.items() if k != "user"}))

    with signal("identity.tfa.disable.success").connected_to(receive, sender=app):
        wrong = post(client, DISABLEMENTS, token, {"password": "wrong-password", "otp": "000000"})
        assert wrong.status_code == 422
        assert seen == []
        off = {"password": PASSWORD, "recoveryCode": codes[0]}
        assert post(client, DISABLEMENTS, token, off).status_code == 204
    with app.app_context():
        account = db.session.get(Account, world.live_id)
    assert [(m, p["method"], p["account"].id) for m, p in seen] == [
        ("simple", "tfa_totp", account.id)
    ]


def test_each_change_emails_the_user_in_their_locale(app, client, world):
    """Switching on, renewing codes (es) and switching off (en): one email each, in its language."""
    outbox = app.extensions["authserver.outbox"]
    token_of = {}
    for name, locale in (("pepa", "es"), ("eddie", "en")):
        user_with_email(app, world, name, locale)
        token_of[name] = login(client, world, username=name)["access_token"]

    totp, _ = enrol(client, token_of["pepa"])
    ok(post(client, CODE_SETS, token_of["pepa"], {"otp": next_code(totp)}))
    totp, _ = enrol(client, token_of["eddie"])
    off = {"password": PASSWORD, "otp": next_code(totp)}
    assert post(client, DISABLEMENTS, token_of["eddie"], off).status_code == 204

    got = [(m.to, m.event, m.locale, m.subject) for m in outbox.of("email")]
    assert got == [
        ("pepa@example.com", "identity.tfa.enable.success", "es", ES_ON),
        ("pepa@example.com", "identity.recovery_codes.create.success", "es", ES_CODES),
        ("eddie@example.com", "identity.tfa.enable.success", "en", "Two-step verification is on"),
        ("eddie@example.com", "identity.tfa.disable.success", "en", "Two-step verification is off"),
    ]
    for message in outbox.of("email"):
        assert message.text.rstrip().endswith("Acme")  # signed with the account's name


def test_enrolment_email_in_french_and_no_codes_in_it(app, client, world):
    """The switch-on email is French for a French user and carries no secret or recovery code."""
    outbox = app.extensions["authserver.outbox"]
    user_with_email(app, world, "fanny", "fr")
    token = login(client, world, username="fanny")["access_token"]
    totp, codes = enrol(client, token)
    [message] = outbox.of("email")
    assert (message.to, message.event, message.subject) == (
        "fanny@example.com",
        "identity.tfa.enable.success",
        "La validation en deux étapes est activée",
    )
    assert "application d\u2019authentification" in message.text
    assert totp.secret not in message.text and not any(c in message.text for c in codes)


def test_enrolment_email_over_smtp(app, client, world, mail_app):
    """The switch-on email reaches a real SMTP server."""
    mailing, sink = mail_app()
    http = mailing.test_client()
    user_with_email(app, world, "sam", "en")
    token = login(http, world, username="sam")["access_token"]
    enrol(http, token)
    assert [e.rcpt_tos for e in sink.envelopes] == [["sam@example.com"]]
    assert sink.messages()[0]["Subject"] == "Two-step verification is on"


# ---------------------------------------------------------------- OpenAPI


def test_openapi_describes_every_route_of_the_module(app):
    """Each /v1 route of api/tfa.py has a path item with its method, 201/204 and 422."""
    routes = {
        (rule.rule.removeprefix("/v1"), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.")
        and app.view_functions[rule.endpoint].__module__ == "authserver.api.tfa"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    described = {(path, method) for path, item in OPENAPI["paths"].items() for method in item}
    assert routes == described and len(routes) == 4
    for item in OPENAPI["paths"].values():
        responses = item["post"]["responses"]
        assert ("201" in responses or "204" in responses) and "422" in responses
    refs = json.dumps(OPENAPI["paths"])
    for name in ("TotpSetup", "TotpConfirmation", "RecoveryCodeSet"):
        assert f"#/components/schemas/{name}" in refs and name in OPENAPI["schemas"]
