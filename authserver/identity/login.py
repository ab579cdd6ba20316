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

from authserver.identity import devices, twofactor
from authserver.identity.accounts import find_member, upgrade_password_hash
from authserver.platform import database
from authserver.platform.errors import InvalidCredentials, InvalidOtp, OtpRequired, Throttled
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
}
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


@dataclass(frozen=True)
class LoginResult:
    user: User
    account: Account | None  # the account the session is for; None for a global login
    role: str
    amr: list[str] = field(default_factory=list)  # RFC 8176 methods used: pwd, otp, ...
    device_token: str = ""  # a new token for the device that logged in (devices.issue)


def password_login(attempt: LoginAttempt) -> LoginResult:
    """Check password and second factor. Raises Throttled, InvalidCredentials,
    OtpRequired (password right, second factor missing) or InvalidOtp."""
    username = attempt.username.strip().lower()
    keys = _count_attempt(attempt, username)
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
    if user.auth_method != AuthMethod.SIMPLE:
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
        or user.auth_method == AuthMethod.SIMPLE
        or (account is not None and account.status != AccountStatus.ACTIVE)
    ):
        _record(attempt, user, LoginMethod.OTP, False, "login_step_void")
        raise InvalidCredentials()
    amr = ["pwd", *_second_factor(attempt, user, account, keys)]
    return _succeed(attempt, user, account, role, keys, amr)


def _succeed(
    attempt: LoginAttempt,
    user: User,
    account: Account | None,
    role: str,
    keys: ThrottleKeys,
    amr: list[str],
) -> LoginResult:
    _clear_after_success(keys)
    _record(attempt, user, "+".join(METHOD_NAMES[m] for m in amr), True, None)
    amr = amr + (["mfa"] if len(amr) > 1 else [])
    return LoginResult(user, account, role, amr, devices.issue(user))


def _second_factor(
    attempt: LoginAttempt, user: User, account: Account | None, keys: ThrottleKeys
) -> list[str]:
    try:
        if attempt.recovery_code:
            twofactor.use_recovery_code(user, attempt.recovery_code)
            return ["rc"]
        if attempt.otp:
            return [twofactor.complete_challenge(user, attempt.otp)]
    except InvalidOtp:
        tried = LoginMethod.RECOVERY_CODE if attempt.recovery_code else LoginMethod.OTP
        _record(attempt, user, tried, False, f"bad_{tried}")
        raise
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


def _count_attempt(attempt: LoginAttempt, username: str) -> ThrottleKeys:
    """Count the attempt on its three counters before anything is checked; raises
    Throttled past any limit. Returns the keys, for the refunds and the clearing."""
    keys = _throttle_keys(attempt, username)
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
