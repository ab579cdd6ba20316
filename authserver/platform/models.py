"""All tables, as SQLAlchemy 2 typed models, and the StrEnums of the values their status,
role and method columns hold (equal to the plain strings). Times are stored in UTC and
read back aware.

Secrets never sit here in the clear: passwords are argon2 hashes, client secrets, refresh
tokens and recovery codes are digests, private signing keys are encrypted. The publishable
refresh token is public by design.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from authserver.platform.extensions import db


class AccountStatus(StrEnum):
    ACTIVE = "active"
    DELETED = "deleted"


class UserStatus(StrEnum):
    ACTIVE = "active"
    PENDING = "pending"  # invited: chooses a password through the emailed link
    DISABLED = "disabled"
    DELETED = "deleted"


class AuthMethod(StrEnum):
    """How a user logs in: the password alone, or with a second factor."""

    SIMPLE = "simple"
    TFA_EMAIL = "tfa_email"
    TFA_SMS = "tfa_sms"
    TFA_TOTP = "tfa_totp"


class Role(StrEnum):
    OWNER = "owner"
    ADMINISTRATOR = "administrator"
    DEVELOPER = "developer"
    MANAGER = "manager"
    SUPPORT_SPECIALIST = "support_specialist"
    MARKETING_SPECIALIST = "marketing_specialist"
    GOODS_SPECIALIST = "goods_specialist"
    READ_ONLY = "read_only"
    CUSTOMER = "customer"


class LoginMethod(StrEnum):
    """The parts of `LoginRecord.method`, joined with "+" for a login with two factors."""

    PASSWORD = "password"  # noqa: S105 - the name of a login method, not a secret
    OTP = "otp"
    SMS = "sms"
    RECOVERY_CODE = "recovery_code"
    PASSKEY = "passkey"
    REFRESH = "refresh"
    SUPPORT = "support"  # a support specialist's token exchange (LoginRecord.actor_id: who)


# The values as plain strings, for the checks and schemas that list them and for click's
# Choice, which would match an Enum member by its name rather than its value.
USER_STATUSES = tuple(s.value for s in UserStatus)
AUTH_METHODS = tuple(m.value for m in AuthMethod)
ROLES = tuple(r.value for r in Role)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC (SQLite keeps no zone) and always returns an aware UTC datetime."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Account(Timestamps, db.Model):  # type: ignore[name-defined]
    """A business or app. Every live account is paired with a test account (`test_account`)."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    mode: Mapped[str] = mapped_column(String(8))
    test_account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id"), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=AccountStatus.ACTIVE)
    name: Mapped[str] = mapped_column(String(255))
    company_name: Mapped[str | None] = mapped_column(String(255))
    default_locale: Mapped[str] = mapped_column(String(8), default="en")
    default_auth_method: Mapped[str] = mapped_column(String(16), default=AuthMethod.SIMPLE)
    website_url: Mapped[str | None] = mapped_column(String(2048))
    support_email: Mapped[str | None] = mapped_column(String(254))
    tech_email: Mapped[str | None] = mapped_column(String(254))
    api_version: Mapped[str | None] = mapped_column(String(16))
    caption: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    custom_data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Localizable fields in locales other than default_locale: {"fr": {"name": ...}}.
    translations: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Public by design (it ships inside apps): `prt-live-...` / `prt-test-...`.
    publishable_token: Mapped[str] = mapped_column(String(128), unique=True)
    # Until then a token of this account without a user may be in revoked_tokens: only
    # such tokens pay for that lookup (see tokens.validate_access_token).
    token_revocations_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Browser origins (scheme://host[:port]) whose pages may call /v1 with this account's
    # tokens (CORS); empty: none.
    allowed_origins: Mapped[list[str]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    # No two live users of the account share an email (users.email_key holds it then).
    require_unique_emails: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )

    test_account: Mapped[Account | None] = relationship(
        remote_side="Account.id", foreign_keys=[test_account_id], post_update=True
    )


class User(Timestamps, db.Model):  # type: ignore[name-defined]
    """A person or app identity. `account_id` None means a global user."""

    __tablename__ = "users"
    __table_args__ = (
        # Account users: unique per account. Global users: unique among global users.
        UniqueConstraint("account_id", "username", name="uq_users_account_username"),
        Index(
            "uq_users_global_username",
            "username",
            unique=True,
            postgresql_where=text("account_id IS NULL"),
            sqlite_where=text("account_id IS NULL"),
        ),
        # Set only while the account requires unique emails (NULLs never clash): the
        # database refuses a second user with the email even when two requests race.
        UniqueConstraint("account_id", "email_key", name="uq_users_account_email_key"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    username: Mapped[str] = mapped_column(String(255))  # normalised: trimmed, lower case
    email: Mapped[str | None] = mapped_column(String(254))
    email_key: Mapped[str | None] = mapped_column(String(254))  # lower(email), see above
    email_added_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    phone_number: Mapped[str | None] = mapped_column(String(16))  # E.164
    name: Mapped[str | None] = mapped_column(String(255))
    first_name: Mapped[str | None] = mapped_column(String(255))
    last_name: Mapped[str | None] = mapped_column(String(255))
    auth_method: Mapped[str] = mapped_column(String(16), default=AuthMethod.SIMPLE)
    role: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=UserStatus.ACTIVE)
    locale: Mapped[str | None] = mapped_column(String(8))
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    phone_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    phone_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    password_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    custom_data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Every token issued before this instant is void (password change, "sign out everywhere").
    tokens_valid_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Raised by one at each such revocation; a token carries the value it was issued
    # under and is refused once they differ (exact, where a time comparison is not).
    token_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The one login that made the last second-factor change keeps its tokens: those of
    # this refresh-token family still issued under this older generation stay valid.
    kept_family_id: Mapped[str | None] = mapped_column(String(36))
    kept_generation: Mapped[int | None] = mapped_column(Integer)
    # Until then a token of this user may be in revoked_tokens (see Account's).
    token_revocations_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last TOTP step used, and which secret it was for (a keyed digest of it): a code
    # of that step or an older one is refused (RFC 6238 5.2), durably.
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    totp_step_tag: Mapped[str | None] = mapped_column(String(16))
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The user's own choice (seed 004): a support specialist of the account may log in as
    # them (token exchange) only while it is on.
    allow_support_login: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )

    account: Mapped[Account | None] = relationship()

    @property
    def is_global(self) -> bool:
        return self.account_id is None


class AccountMembership(Timestamps, db.Model):  # type: ignore[name-defined]
    """A global user's membership of an account, with the role they have there."""

    __tablename__ = "account_memberships"
    __table_args__ = (
        UniqueConstraint("account_id", "user_id", name="uq_memberships_account_user"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32))

    account: Mapped[Account] = relationship()
    user: Mapped[User] = relationship()


class OAuthClient(Timestamps, db.Model):  # type: ignore[name-defined]
    """An app registered for one account (and so one mode). Public clients have no secret."""

    __tablename__ = "oauth_clients"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    client_secret_hash: Mapped[str | None] = mapped_column(String(64))
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    is_public: Mapped[bool] = mapped_column(Boolean, default=False)
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    grant_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    scope: Mapped[str] = mapped_column(String(1024), default="")
    role: Mapped[str] = mapped_column(String(32), default=Role.DEVELOPER)  # client_credentials role
    status: Mapped[str] = mapped_column(String(16), default="active")
    # A first-party app may skip the consent page; never on by default.
    skip_consent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Tokens issued up to this moment (the second included) are void: set when the client
    # is disabled or deleted, so enabling it again brings none of them back.
    tokens_valid_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Scopes of the account's own APIs this client may get: {api id: [scope value, ...]}.
    api_scopes: Mapped[dict[str, list[str]]] = mapped_column(
        JSON, default=dict, server_default=text("'{}'")
    )

    account: Mapped[Account] = relationship()


class ResourceApi(Timestamps, db.Model):  # type: ignore[name-defined]
    """One of an account's own APIs (a resource server): its identifier is the `aud` of
    the tokens issued for it; `scopes` is a list of {"value", "description"}."""

    __tablename__ = "apis"
    __table_args__ = (
        UniqueConstraint("account_id", "identifier", name="uq_apis_account_identifier"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    identifier: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    scopes: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    token_lifetime: Mapped[int] = mapped_column(Integer)


class OAuthConsent(Timestamps, db.Model):  # type: ignore[name-defined]
    """A user's remembered "yes" to a client for some scopes; deleting the row revokes it."""

    __tablename__ = "oauth_consents"
    __table_args__ = (
        UniqueConstraint("user_id", "client_id", name="uq_oauth_consents_user_client"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_clients.id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(String(1024), default="")


class RefreshToken(db.Model):  # type: ignore[name-defined]
    """An opaque refresh token, stored as a digest; all rotations of one login share a family."""

    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(36), index=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_clients.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(1024), default="")
    amr: Mapped[list[str]] = mapped_column(JSON, default=list)
    user_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime)  # the login this family began with
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # prune finds by it
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set (with rotated_at) when a retried refresh replaced this unused token: it never
    # gets a retry of its own, so presenting it is always reuse.
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RevokedToken(db.Model):  # type: ignore[name-defined]
    """A durable deny-list entry for access tokens, kept until every token it can match has
    expired. `key` is `jti:<jti>` (one token), `family:<fid>` (a login's tokens) or
    `client:<user id>:<client_id>` (a user's tokens for one app issued up to revoked_at).
    `subject` (`user:<id>` or `account:<id>`) is whose gate the row opened: the bearer
    check's cached snapshot of a subject carries that subject's live rows."""

    __tablename__ = "revoked_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(160), index=True)
    subject: Mapped[str | None] = mapped_column(String(48), index=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class SpentAuthorizationCode(db.Model):  # type: ignore[name-defined]
    """A redeemed authorization code (its digest) and the data it was issued with, so a
    replay is known and revokes the login it began even when Redis lost its copy."""

    __tablename__ = "spent_authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class RecoveryCode(db.Model):  # type: ignore[name-defined]
    """One single-use TFA recovery code, stored as a digest."""

    __tablename__ = "recovery_codes"
    __table_args__ = (UniqueConstraint("user_id", "code_hash", name="uq_recovery_codes_user_code"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)  # prune


class LoginRecord(db.Model):  # type: ignore[name-defined]
    """One login attempt, successful or not (login history, audit)."""

    __tablename__ = "login_records"
    __table_args__ = (Index("ix_login_records_user_created", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    account_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    method: Mapped[str] = mapped_column(String(32))  # LoginMethod values, "+"-joined
    success: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(64))  # why it failed
    # A support login: the support specialist who logged in as the user (no foreign key:
    # the user's history keeps naming them after they are gone).
    actor_id: Mapped[str | None] = mapped_column(String(36))


class KnownDevice(db.Model):  # type: ignore[name-defined]
    """A device a user has signed in from (identity/known_devices.py): a login from one not
    listed here is announced by email. `device_hash` is the SHA-256 of the device id the
    device token carries, never the id itself."""

    __tablename__ = "known_devices"
    __table_args__ = (
        UniqueConstraint("user_id", "device_hash", name="uq_known_devices_user_device"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    device_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    last_ip: Mapped[str | None] = mapped_column(String(45))
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # last "new sign-in" mail
    # The user said "this wasn't me": announced again at its next login (once a day).
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Digest of the mail's single-use "this wasn't me" token; cleared when it is used.
    alarm_hash: Mapped[str | None] = mapped_column(String(64), unique=True)


class AuditEvent(db.Model):  # type: ignore[name-defined]
    """One administrative change: who did what to which thing, and which fields it set.
    Never a value: `changed` holds field names only, so no secret is ever copied here."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_account_created", "account_id", "created_at"),)

    # A random id, not a sequence: the API does not show how many changes other accounts
    # make, and test fixtures may copy rows (with their ids) between tests.
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # No foreign keys: the trail outlives what it speaks of (a reset test account's users).
    account_id: Mapped[str | None] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(64))
    actor_type: Mapped[str] = mapped_column(String(16))  # user, client, cli, system
    actor_id: Mapped[str | None] = mapped_column(String(255))
    ip: Mapped[str | None] = mapped_column(String(45))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(255))
    changed: Mapped[list[str]] = mapped_column(JSON, default=list)


class SigningKey(db.Model):  # type: ignore[name-defined]
    """A JWT signing key shared by every instance. The private JWK is AES-GCM encrypted
    (platform/keys.py); the public one is kept in the clear for the JWKS. Its state
    (next, current, retired, revoked) follows from the dates, see keys.key_states."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(10))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    private_jwk: Mapped[str] = mapped_column(Text)  # "v1." + base64url(nonce + ciphertext)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activates_at: Mapped[datetime] = mapped_column(UTCDateTime)  # signs from (publish first)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # `keys retire`
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # `keys revoke`


class Passkey(db.Model):  # type: ignore[name-defined]
    """A WebAuthn credential (passkey) of one user; the account is the user's (a global
    user's passkey serves every account they are a member of, as their password does).
    Only the public key is kept: the private key never leaves the authenticator."""

    __tablename__ = "passkeys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The authenticator's credential id (base64url, as browsers send it); WebAuthn allows
    # up to 1023 bytes, which is 1364 characters.
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    public_key: Mapped[str] = mapped_column(Text)  # COSE key, base64url
    sign_count: Mapped[int] = mapped_column(Integer, default=0)
    transports: Mapped[list[str]] = mapped_column(JSON, default=list)
    aaguid: Mapped[str | None] = mapped_column(String(36))  # authenticator model, if told
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookEndpoint(db.Model):  # type: ignore[name-defined]
    """An account's webhook target: which events it hears and the secret that signs them.
    The secrets are AES-GCM encrypted like the signing keys (platform/webhooks.py); after a
    rotation the previous one keeps signing beside the new one until `previous_until`."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)  # names, or ["*"]
    description: Mapped[str | None] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    secret: Mapped[str] = mapped_column(Text)  # encrypted
    previous_secret: Mapped[str | None] = mapped_column(Text)  # encrypted
    previous_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set at the first failure after a success; a long run of them disables the endpoint.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class OutboxItem(db.Model):  # type: ignore[name-defined]
    """One message to deliver: a webhook call (`endpoint_id`), or an email or SMS for one
    sender of its channel (`sender`). Written in the transaction of the change it reports;
    delivery workers claim due rows (`claimed_until`) and retry with backoff. The body of
    an email or SMS (it may hold a code or link) is blanked once it is settled."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_endpoint_created", "endpoint_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(8))  # webhook, email, sms
    event: Mapped[str] = mapped_column(String(128))
    # No foreign key: a delivery's log outlives a deleted account's rows only until prune.
    account_id: Mapped[str | None] = mapped_column(String(36), index=True)
    endpoint_id: Mapped[str | None] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    sender: Mapped[int] = mapped_column(Integer, default=0)  # index in the channel's senders
    message_id: Mapped[str] = mapped_column(String(64))  # webhook-id, stable across retries
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim: Mapped[str | None] = mapped_column(String(32))  # who holds it (a random token)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # login codes
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)  # HTTP status of the last try
    last_error: Mapped[str | None] = mapped_column(String(255))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
