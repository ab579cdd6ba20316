"""More authorization-code flows in Chromium through our pages, with pyoidc as the
relying party: a recovery code instead of the TOTP code, consent once then a silent
`prompt=none`, and RP-initiated logout back to the registered post-logout URI."""

from __future__ import annotations

from typing import Any

from factories import make_totp_user
from pages_helpers import recovery_codes
from rp_helpers import finish, password_step, relying_party, start


def _totp_login_and_consent(page: Any, shots: Any, url: str, username: str, totp: Any) -> None:
    page.goto(url)
    page.wait_for_url("**/login?**")
    password_step(page, username)
    page.wait_for_url("**/login/code**")
    page.get_by_label("Verification code").fill(totp.now())
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/oauth/authorize?**")
    page.get_by_role("button", name="Allow").click()


def test_code_flow_with_a_recovery_code_instead_of_the_totp_code(
    app, world, live_server, page, shots
):
    """ "Use a recovery code instead" on the second step: the recovery code signs in, the
    ID token says a recovery code was used; the same code does not work twice."""
    user_id, _ = make_totp_user(app, world.live_id, "rita")
    codes = recovery_codes(app, user_id)
    rp, callback = relying_party(app, live_server, world.live_id)
    flow = start(rp, callback)
    page.goto(flow.url)

    page.wait_for_url("**/login?**")
    password_step(page, "rita")
    page.wait_for_url("**/login/code**")
    page.get_by_role("link", name="Use a recovery code instead").click()
    page.wait_for_url("**/login/recovery**")
    shots(page, "oidc-recovery-1-recovery")
    page.get_by_label("Recovery code").fill(codes[0])
    page.get_by_role("button", name="Verify").click()

    page.wait_for_url("**/oauth/authorize?**")
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(f"{callback}?**")
    tokens = finish(rp, page.url, callback, flow)
    assert tokens["id_token"]["sub"] == user_id
    assert {"pwd", "mfa"} <= set(tokens["id_token"]["amr"])
    assert "rc" in tokens["id_token"]["amr"] and "otp" not in tokens["id_token"]["amr"]

    # A second login in a fresh browser session: the spent code is refused at the field.
    page.context.clear_cookies()
    page.goto(start(rp, callback).url)
    page.wait_for_url("**/login?**")
    password_step(page, "rita")
    page.wait_for_url("**/login/code**")
    page.get_by_role("link", name="Use a recovery code instead").click()
    page.get_by_label("Recovery code").fill(codes[0])
    page.get_by_role("button", name="Verify").click()
    assert page.locator("[aria-invalid=true]").count() == 1
    shots(page, "oidc-recovery-2-spent")


def test_consent_once_then_prompt_none_returns_a_code_without_a_page(
    app, world, live_server, page, shots
):
    """After one login and "Allow", a prompt=none request is answered with a redirect
    only (no page of ours is shown) and its code exchanges for the same subject."""
    user_id, totp = make_totp_user(app, world.live_id, "tina")
    rp, callback = relying_party(app, live_server, world.live_id)
    first = start(rp, callback)
    _totp_login_and_consent(page, shots, first.url, "tina", totp)
    page.wait_for_url(f"{callback}?**")
    finish(rp, page.url, callback, first)

    seen: list[tuple[str, int]] = []
    page.on(
        "response",
        lambda r: seen.append((r.url, r.status)) if r.request.is_navigation_request() else None,
    )
    second = start(rp, callback, prompt="none")
    page.goto(second.url)
    page.wait_for_url(f"{callback}?**")
    ours = [(url, status) for url, status in seen if not url.startswith(callback)]
    assert [status for _, status in ours] == [302], seen  # the authorize request, nothing else
    tokens = finish(rp, page.url, callback, second)
    assert tokens["id_token"]["sub"] == user_id


def test_rp_initiated_logout_returns_to_the_registered_uri(app, world, live_server, page, shots):
    """Without a hint the logout asks first ("Stay signed in" keeps the login); pyoidc's
    end-session request with the ID token signs out at once and comes back to the
    registered post-logout URI with its state; the account page then asks to log in."""
    _, totp = make_totp_user(app, world.live_id, "tina")
    bye = f"{live_server}/bye"
    rp, callback = relying_party(app, live_server, world.live_id, post_logout=[bye])
    flow = start(rp, callback)
    _totp_login_and_consent(page, shots, flow.url, "tina", totp)
    page.wait_for_url(f"{callback}?**")
    finish(rp, page.url, callback, flow)

    page.goto(f"{rp.end_session_endpoint}?client_id={rp.client_id}")
    shots(page, "oidc-logout-1-confirm")
    assert "Acme Web" in page.content()
    page.get_by_role("link", name="Stay signed in").click()
    page.wait_for_url("**/account")
    shots(page, "oidc-logout-2-still-signed-in")

    request = rp.construct_EndSessionRequest(
        state=flow.state,
        request_args={"post_logout_redirect_uri": bye, "state": "bye-state"},
    )
    assert request["id_token_hint"]
    page.goto(request.request(rp.end_session_endpoint))
    page.wait_for_url(f"{bye}?state=bye-state")
    page.goto(f"{live_server}/account")
    page.wait_for_url("**/login**")
    shots(page, "oidc-logout-3-signed-out")
