"""Logging a person in with a password and, for two-step users, a second factor.

The one login policy behind the password grant and the hosted login page:

- `aid` picks the account: its account users, and global users who are its members, may
  log in; without `aid` only global users may. An account the front door may not serve
  (not the client's own; through a test account's client, no global login either) is
  treated exactly like an account that does not exist.
- An unknown user or account, a wrong password and a user who is not active all give the
  same InvalidCredentials, after the same argon2 work (a dummy hash stands in).
- Throttle: every attempt is counted *before* any password is checked, so concurrent
  guesses cannot slip past. A username gets FAILURES_PER_IP attempts per client IP and
  FAILURES_PER_USER attempts from all IPs within the window, and one IP gets
  FAILURES_FROM_IP failed attempts over all usernames (password spraying); past any of
  them, the answer is Throttled (429, Retry-After) until the window ends. The username's
  counters do not name the account (`aid`), so a global user has one budget however many
  accounts they can log into. A known device (a device token of `devices` that this user
  earned by logging in) counts on its own DEVICE_FAILURES budget instead of the
  all-IP one, so strangers exhausting that cannot lock the owner out, and a device past
  its budget is locked out on its own. A successful login clears the counters it used
  and gives the IP's attempt back; a right password that only asks for the second factor
  gives its attempts back. Unknown usernames are counted the same way, so the throttle
  reveals nothing.
- Every outcome is written to the login history (LoginRecord).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import update

from authserver.identity import devices, known_devices, passkeys, twofactor
from authserver.identity.accounts import find_member, upgrade_password_hash
from authserver.platform import captcha, database
from authserver.platform.errors import (
    InvalidCredentials,
    InvalidOtp,
    InvalidPasskey,
    OtpRequired,
    Throttled,
)
from authserver.platform.events import emit, stage
from authserver.platform.extensions import db, passwords, store
from authserver.platform.models import (
    Account,
    AccountStatus,
    AuthMethod,
    LoginMethod,
    LoginRecord,
    RefreshToken,
    User,
    UserStatus,
    utcnow,
)

THROTTLE_WINDOW = 15 * 60  # seconds
FAILURES_PER_IP = 10  # per username and client IP in the window (Auth0 uses 10)
FAILURES_PER_USER = 50  # per username from every IP in the window (NIST: <= 100)
FAILURES_FROM_IP = 100  # for all usernames together from one IP in the window
DEVICE_FAILURES = 10  # per known device (instead of FAILURES_PER_USER) in the window
USERNAME_MAX = 255
# How login history names the factors (RFC 8176 amr values -> words people read).
METHOD_NAMES = {
    "pwd": LoginMethod.PASSWORD,
    "otp": LoginMethod.OTP,
    "sms": LoginMethod.SMS,
    "rc": LoginMethod.RECOVERY_CODE,
    "hwk": LoginMethod.PASSKEY,
}
PASSKEY_METHOD = "passkey"  # OtpRequired's method for a user whose second factor is a passkey
PASSWORD_MAX = 1024  # longer input is refused before hashing (argon2 cost is per byte)


@dataclass(frozen=True)
class LoginAttempt:
    username: str
    password: str
    account_id: str | None  # from `aid`; None: global users only
    otp: str | None = None
    recovery_code: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    client_id: str | None = None
    # The accounts this front door may log into (a client's own account; None: any);
    # any other `account_id` is treated exactly like an unknown account.
    allowed_account_ids: frozenset[str] | None = None
    # Whether a global login (no `account_id`, a live-mode session) may go through it: not
    # through a test account's client, which must never yield a live login.
    allow_global: bool = True
    device_token: str | None = None  # from a device that logged in before (devices.issue)
    browser: bool = False  # the hosted pages (a browser without a device cookie is new)
    captcha_token: str | None = None  # needed once CAPTCHA_AFTER_FAILURES were reached
    passkey: str | None = None  # a WebAuthn answer (JSON) to a passkeys.start_authentication


@dataclass(frozen=True)
class LoginResult:
    user: User
    account: Account | None  # the account the session is for; None for a global login
    role: str
    amr: list[str] = field(default_factory=list)  # RFC 8176 methods used: pwd, otp, ...
    device_token: str = ""  # a new token for the device that logged in (devices.issue)


def password_login(attempt: LoginAttempt) -> LoginResult:
    """Check password and second factor. Raises Throttled, InvalidCredentials,
    OtpRequired (password right, second factor missing), InvalidOtp, or (when a CAPTCHA
    verifier is configured and the username or IP failed often) CaptchaRequired,
    CaptchaFailed or CaptchaUnavailable."""
    username = attempt.username.strip().lower()
    keys = _count_attempt(attempt, username, gate=True)
    found = _find(attempt, username)
    user, account, role = found if found else (None, None, "")
    valid = passwords().verify(user.password_hash if user else None, attempt.password)
    if len(attempt.password) > PASSWORD_MAX or not valid or user is None:
        _record(attempt, user, LoginMethod.PASSWORD, False, "bad_credentials")
        raise InvalidCredentials()
    if user.status != UserStatus.ACTIVE:
        _record(attempt, user, LoginMethod.PASSWORD, False, f"user_{user.status}")
        raise InvalidCredentials()
    if account is not None and account.status != AccountStatus.ACTIVE:
        _record(attempt, user, LoginMethod.PASSWORD, False, f"account_{account.status}")
        raise InvalidCredentials()
    amr = ["pwd"]
    # The password is right: a hash made with older argon2 settings is renewed. A simple
    # user's renewal is committed with the login record.
    renewed = upgrade_password_hash(user, attempt.password)
    if passkeys.has_second_factor(user):
        if renewed:  # on its own: this step may end in otp_required, which writes nothing
            database.commit(conflict=False)
        amr += _second_factor(attempt, user, account, keys)
    return _succeed(attempt, user, account, role, keys, amr)


def _may_serve(attempt: LoginAttempt) -> bool:
    """Whether the front door may log into the attempt's account (issue 14)."""
    if attempt.account_id is None:
        return attempt.allow_global
    allowed = attempt.allowed_account_ids
    return allowed is None or attempt.account_id in allowed


def continue_login(user_id: str, token_generation: int, attempt: LoginAttempt) -> LoginResult:
    """The second step of a login whose password step passed a moment ago.

    For the hosted pages, which keep the outcome of the password step (never the
    password) in the session: `attempt.password` is ignored, `attempt.username` is the
    name typed at the first step. The same throttle, second-factor checks and login
    records as `password_login`; without a code it (re)starts the challenge, so an
    emailed code is sent again only after the token endpoint's cooldown. The step is
    void (InvalidCredentials) once the user, their password or their membership changed.
    Raises Throttled, InvalidCredentials, OtpRequired or InvalidOtp.
    """
    username = attempt.username.strip().lower()
    keys = _count_attempt(attempt, username)
    found = find_member(attempt.account_id, username)
    user, account, role = found if found else (None, None, "")
    if (
        user is None
        or not _may_serve(attempt)
        or user.id != user_id
        or user.token_generation != token_generation
        or user.status != UserStatus.ACTIVE
        or not passkeys.has_second_factor(user)
        or (account is not None and account.status != AccountStatus.ACTIVE)
    ):
        _record(attempt, user, LoginMethod.OTP, False, "login_step_void")
        raise InvalidCredentials()
    amr = ["pwd", *_second_factor(attempt, user, account, keys)]
    return _succeed(attempt, user, account, role, keys, amr)


def passkey_login(attempt: LoginAttempt) -> LoginResult:
    """Passwordless: a discoverable passkey, with user verification, is the whole login.

    Its user must be a member of the attempt's account (`aid`, as for a password), active,
    in an active account. Counted on the IP's budget for all usernames (no name is typed;
    a success gives its count back). Raises Throttled, InvalidPasskey or InvalidCredentials.
    """
    kv = store()
    ip_key = f"login-ip:{attempt.ip}"
    hit = kv.hit(ip_key, FAILURES_FROM_IP, THROTTLE_WINDOW)
    if not hit.allowed:
        emit("identity.login.throttled", method=PASSKEY_METHOD, client_id=attempt.client_id)
        raise Throttled(hit.retry_after)
    try:
        used = passkeys.verify_authentication(attempt.passkey, None)
    except InvalidPasskey as exc:
        owner = db.session.get(User, exc.user_id) if exc.user_id else None
        _record(attempt, owner, LoginMethod.PASSKEY, False, exc.reason)
        raise
    user = db.session.get(User, used.user_id)
    found = find_member(attempt.account_id, user.username) if user and _may_serve(attempt) else None
    if user is None or found is None or found[0].id != user.id:
        # A passkey of a user of another account (or of none this front door serves).
        _record(attempt, user, LoginMethod.PASSKEY, False, "bad_credentials")
        raise InvalidCredentials()
    _, account, role = found
    if account is not None and account.status != AccountStatus.ACTIVE:
        _record(attempt, user, LoginMethod.PASSKEY, False, f"account_{account.status}")
        raise InvalidCredentials()
    kv.incr(ip_key, THROTTLE_WINDOW, amount=-1)
    # User verification (a PIN or biometric unlocking a key only the device holds) makes
    # this one step two factors: RFC 8176 `hwk`, and `mfa`.
    return _succeed(attempt, user, account, role, None, ["hwk"], mfa=True)


def _succeed(
    attempt: LoginAttempt,
    user: User,
    account: Account | None,
    role: str,
    keys: ThrottleKeys | None,
    amr: list[str],
    *,
    mfa: bool = False,
) -> LoginResult:
    if keys is not None:
        _clear_after_success(keys)
    return login_succeeded(attempt, user, account, role, amr, mfa=mfa)


def login_succeeded(
    attempt: LoginAttempt,
    user: User,
    account: Account | None,
    role: str,
    amr: list[str],
    *,
    mfa: bool = False,
) -> LoginResult:
    """Where every successful login ends, whatever its factors (any front door, any
    method, a passkey too): the login history, the device's token and the new-device
    email. `mfa`: one step that is two factors by itself (a passkey with user
    verification)."""
    _record(attempt, user, "+".join(METHOD_NAMES[m] for m in amr), True, None)
    device = known_devices.device_id(
        user,
        attempt.device_token,
        browser=attempt.browser,
        client_id=attempt.client_id,
        ip=attempt.ip,
        user_agent=attempt.user_agent,
    )
    sighting = known_devices.note(
        user, account, device, ip=attempt.ip, user_agent=attempt.user_agent
    )
    known_devices.announce(sighting)
    amr = amr + (["mfa"] if len(amr) > 1 or mfa else [])
    return LoginResult(user, account, role, amr, devices.issue(user, device))


def _second_factor(
    attempt: LoginAttempt, user: User, account: Account | None, keys: ThrottleKeys
) -> list[str]:
    try:
        if attempt.passkey:
            passkeys.verify_authentication(attempt.passkey, user)
            return ["hwk"]
        if attempt.recovery_code:
            twofactor.use_recovery_code(user, attempt.recovery_code)
            return ["rc"]
        if attempt.otp:
            return [twofactor.complete_challenge(user, attempt.otp)]
    except InvalidPasskey as exc:
        _record(attempt, user, LoginMethod.PASSKEY, False, exc.reason)
        raise
    except InvalidOtp:
        tried = LoginMethod.RECOVERY_CODE if attempt.recovery_code else LoginMethod.OTP
        _record(attempt, user, tried, False, f"bad_{tried}")
        raise
    has_passkey = passkeys.count(user) > 0
    if user.auth_method == AuthMethod.SIMPLE:
        # Two-step login through passkeys alone: nothing to send, the passkey answers.
        challenge = twofactor.Challenge(PASSKEY_METHOD, None, sent=False, resend_after=0)
    else:
        challenge = twofactor.start_challenge(user, account)
    # The password was right and no code was tried: this attempt failed nothing, so it
    # gives its count back (the code tries that follow are counted as usual).
    _refund_attempt(keys)
    raise OtpRequired(
        challenge.method,
        challenge.destination,
        challenge.resend_after,
        challenge.sent,
        user_id=user.id,
        token_generation=user.token_generation,
        passkey=has_passkey,
    )


def _find(attempt: LoginAttempt, username: str) -> tuple[User, Account | None, str] | None:
    """The member the attempt names; an account this front door may not serve is treated
    like one that does not exist."""
    return find_member(attempt.account_id, username) if _may_serve(attempt) else None


@dataclass(frozen=True)
class ThrottleKeys:
    user: str  # this username from every IP, whatever the account (strangers' budget)
    user_ip: str  # this username from this IP
    ip: str  # every username from this IP (password spraying)
    device: str | None = None  # a known device of this user: its budget replaces `user`

    def all(self) -> tuple[str, str, str]:
        """The counters this attempt is counted on."""
        return self.device or self.user, self.user_ip, self.ip


def _throttle_keys(attempt: LoginAttempt, username: str) -> ThrottleKeys:
    # Not the account: a global user logs in with any `aid` they are a member of (or none),
    # and each must not be a fresh budget. Same-named users of different accounts share
    # the strangers' budget; their known devices are what keeps them from lock-in.
    ip = attempt.ip
    device = _known_device(attempt, username)
    return ThrottleKeys(
        f"login-fail:{username}",
        f"login-fail-ip:{username}:{ip or '-'}",
        f"login-ip:{ip}",
        f"login-device:{device.id}" if device else None,
    )


def _known_device(attempt: LoginAttempt, username: str) -> devices.Device | None:
    """The attempt's device, if it is a known device of the user the attempt names.

    Bound to the user, not to the name typed: a token earned by logging into one's own
    "bob" is worth nothing against another account's "bob" (else anyone could mint
    fresh budgets for a name). Looked up only for a validly signed token, so strangers'
    floods cost no database read before their 429.
    """
    device = devices.read(attempt.device_token)
    if device is None:
        return None
    found = _find(attempt, username)
    return device if found is not None and found[0].id == device.user_id else None


def _captcha_gate(attempt: LoginAttempt, keys: ThrottleKeys) -> None:
    """Past CAPTCHA_AFTER_FAILURES attempts on the username (from every IP) or from the
    IP, a password attempt needs a CAPTCHA token (when a verifier is configured); a
    known device of the user never does. Checked before counting: an attempt refused
    here tried no password. Raises CaptchaRequired, CaptchaFailed, CaptchaUnavailable."""
    if keys.device is not None or not captcha.enabled():
        return
    threshold = current_app.config["CAPTCHA_AFTER_FAILURES"]
    counts = store().get_many(keys.user, keys.ip)
    if max(int(c or 0) for c in counts) >= threshold:
        captcha.verify(attempt.captcha_token, attempt.ip, widget=attempt.browser)


def _count_attempt(attempt: LoginAttempt, username: str, *, gate: bool = False) -> ThrottleKeys:
    """Count the attempt on its three counters before anything is checked; raises
    Throttled past any limit. Returns the keys, for the refunds and the clearing.
    `gate`: a password step, which may need a CAPTCHA first (_captcha_gate)."""
    keys = _throttle_keys(attempt, username)
    if gate:
        _captcha_gate(attempt, keys)
    first = (keys.device, DEVICE_FAILURES) if keys.device else (keys.user, FAILURES_PER_USER)
    kv = store()
    hits = [
        kv.hit(first[0], first[1], THROTTLE_WINDOW),
        kv.hit(keys.user_ip, FAILURES_PER_IP, THROTTLE_WINDOW),
        kv.hit(keys.ip, FAILURES_FROM_IP, THROTTLE_WINDOW),
    ]
    if not all(h.allowed for h in hits):
        tried = "recovery_code" if attempt.recovery_code else "otp" if attempt.otp else "password"
        emit("identity.login.throttled", method=tried, client_id=attempt.client_id)
        raise Throttled(max(h.retry_after for h in hits))
    return keys


def _refund_attempt(keys: ThrottleKeys, *names: str) -> None:
    """Give an attempt back on the given counters (all counted ones when none are named)."""
    kv = store()
    for name in names or keys.all():
        kv.incr(name, THROTTLE_WINDOW, amount=-1)


def _clear_after_success(keys: ThrottleKeys) -> None:
    # The username's counters that this login used start over; the IP's counter only
    # gets this attempt back, so one good login cannot reset a spraying budget shared with
    # other usernames. A known device's login leaves the strangers' counter alone: the
    # owner signing in must not hand a guessing attacker a fresh budget.
    first, user_ip, ip = keys.all()
    store().delete(first, user_ip)
    _refund_attempt(keys, ip)


def _record(
    attempt: LoginAttempt, user: User | None, method: str, success: bool, reason: str | None
) -> None:
    account_id = (
        attempt.account_id if attempt.account_id and len(attempt.account_id) <= 36 else None
    )
    if user is not None:
        account_id = user.account_id or account_id
    account = db.session.get(Account, account_id) if account_id else None
    if account is None:
        account_id = None
    db.session.add(
        _login_record(
            account_id,
            user.id if user else None,
            attempt.client_id,
            attempt.ip,
            attempt.user_agent,
            method,
            success,
            reason,
        )
    )
    if success and user is not None:
        # lastLoginAt on the profile; a login is no profile change, so updated_at stays.
        db.session.execute(
            update(User)
            .where(User.id == user.id)
            .values(last_login_at=utcnow(), updated_at=User.updated_at)
        )
    client_id = attempt.client_id
    if success:
        stage(
            "identity.login.success", user=user, account=account, method=method, client_id=client_id
        )
    else:
        stage(
            "identity.login.failure",
            user=user,
            account=account,
            reason=reason,
            method=method,
            client_id=client_id,
        )
    database.commit(conflict=False)
    if not success:
        current_app.logger.info(
            "login failed",
            extra={"fields": {"reason": reason or "-", "user_id": user.id if user else "-"}},
        )


def record_refresh(
    token: RefreshToken,
    *,
    client_id: str | None,
    ip: str | None,
    user_agent: str | None,
    success: bool,
    commit: bool = False,
) -> None:
    """Write a refresh-grant use to the login history (method `refresh`). A success rides
    on the rotation's own commit; a refused reuse (the login was just ended) is committed
    with `commit`."""
    reason = None if success else "refresh_token_reused"
    db.session.add(
        _login_record(
            token.account_id,
            token.user_id,
            client_id,
            ip,
            user_agent,
            LoginMethod.REFRESH,
            success,
            reason,
        )
    )
    if commit:
        database.commit(conflict=False)


def _login_record(
    account_id: str | None,
    user_id: str | None,
    client_id: str | None,
    ip: str | None,
    user_agent: str | None,
    method: str,
    success: bool,
    reason: str | None,
) -> LoginRecord:
    return LoginRecord(
        account_id=account_id,
        user_id=user_id,
        client_id=(client_id or "")[:64] or None,
        ip=(ip or "").replace("\x00", "")[:45] or None,
        # PostgreSQL text cannot hold NUL; headers are whatever the client sent.
        user_agent=(user_agent or "").replace("\x00", "")[:512] or None,
        method=method,
        success=success,
        reason=reason,
    )
