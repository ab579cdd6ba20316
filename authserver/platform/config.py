"""Settings: the defaults below -> instance/config.py -> AUTHSERVER_* environment -> test config.

`load_config` applies the layers in that order and `check_config` refuses values that are
malformed anywhere and settings that are unsafe outside debug/testing.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from flask import Flask

from authserver.platform.metrics import parse_allow_list
from authserver.platform.security import is_loopback_host
from authserver.platform.senders import parse_sender_urls
from authserver.platform.store import parse_sentinel_url

CLAIM_BATCH = 5  # outbox rows a delivery worker claims at once
JWKS_MAX_AGE = 300  # seconds relying parties may cache /oauth/jwks (its Cache-Control)
DEFAULT_SECRET_KEY = "insecure-default-secret-key-change-me"  # noqa: S105 - refused in production


class Defaults:
    """Every setting and its default; each may be overridden as AUTHSERVER_<KEY>."""

    SECRET_KEY = DEFAULT_SECRET_KEY  # signs sessions and CSRF tokens; refused in production
    DATABASE_URL = ""  # SQLAlchemy URL; empty means sqlite:///<instance>/authserver.sqlite3
    DATABASE_CONNECT_TIMEOUT = 5  # seconds to open a PostgreSQL connection (libpq: at least 2)
    DATABASE_STATEMENT_TIMEOUT = 5  # seconds a statement may run; +1 s more cuts a mute server
    DATABASE_POOL_TIMEOUT = 5  # seconds a request waits for a pooled connection
    REDIS_URL = "memory://"  # redis://host:port/db, redis+sentinel://..., memory:// (one process)
    REDIS_PREFIX = "authserver:"  # every short-lived key starts with this
    ISSUER = "http://127.0.0.1:5000"  # public base URL; https:// required unless loopback
    MAIL_URL = "file://{instance}/outbox console:"  # smtp://host:port, file://DIR, console:
    MAIL_FROM = "authserver <no-reply@localhost>"  # From: header of every email
    SMS_URL = "file://{instance}/outbox console:"  # http(s):// webhook, file://DIR, console:
    SMS_TIMEOUT = 5  # seconds to wait for the SMS webhook
    SMTP_TIMEOUT = 10  # seconds to wait for the SMTP server
    SIGNING_KEYS_FILE = "{instance}/signing-keys.json"  # legacy key file, read by `keys import`
    KEY_ENCRYPTION_SECRET = ""  # encrypts the private signing keys at rest; empty: SECRET_KEY
    KEY_PUBLISH_DELAY = 600  # seconds a new key is published before it signs (>= max-age + TTL)
    KEYS_CACHE_TTL = 5  # seconds each process keeps the signing keys before reading them again
    # seconds a bearer check's copy of its user, account and client rows lives in Redis
    # (the bound on a revocation missed while Redis was unreachable); 0: read PostgreSQL
    TOKEN_CHECK_CACHE_TTL = 30
    ARGON2_TIME_COST = 2  # argon2id passes (OWASP: m=19 MiB, t=2, p=1)
    ARGON2_MEMORY_COST = 19456  # argon2id memory in KiB (19 MiB)
    ARGON2_PARALLELISM = 1  # argon2id lanes
    # password checks one process runs at once; 0: the cores / WEB_CONCURRENCY (hashgate.py)
    PASSWORD_HASH_CONCURRENCY = 0
    PASSWORD_HASH_WAIT_MS = 1000  # longest wait for a slot; a longer line answers 503 at once
    ACCESS_TOKEN_LIFETIME = 900  # seconds; JWT access tokens cannot be recalled, so keep it short
    ID_TOKEN_LIFETIME = 900  # seconds
    REFRESH_TOKEN_IDLE_LIFETIME = 14 * 24 * 3600  # seconds a refresh token lives unused
    REFRESH_TOKEN_ABSOLUTE_LIFETIME = 30 * 24 * 3600  # seconds from login after which refresh stops
    # seconds after a rotation in which the rotated refresh token may be presented once
    # more (a retry whose answer was lost) while its successor is unused; 0 turns it off
    REFRESH_TOKEN_RETRY_GRACE = 10
    AUTHORIZATION_CODE_LIFETIME = 60  # seconds an authorization code can be exchanged
    OTP_LIFETIME = 300  # seconds an emailed/texted login code stays valid
    OTP_RESEND_COOLDOWN = 30  # seconds before another login code is sent
    OTP_MAX_ATTEMPTS = 5  # wrong codes before a login code is void
    GLOBAL_SIGNUP = False  # anyone may sign up as a global user (POST /v1/global_users)
    SUPPORT_LOGIN_LIFETIME = 600  # seconds a support specialist's token for a user lives
    LOGIN_HISTORY_RETENTION_DAYS = 365  # `authserver prune` deletes older login history
    AUDIT_RETENTION_DAYS = 730  # `authserver prune` deletes older audit events
    DEFAULT_LOCALE = "en"  # language when neither the user nor the account says
    MAX_CONTENT_LENGTH = 64 * 1024  # bytes; larger request bodies get 413
    LOG_LEVEL = "INFO"  # DEBUG, INFO, WARNING, ERROR
    LOG_FORMAT = "logfmt"  # logfmt or json: one line per record either way
    METRICS_ALLOW = ""  # IPs/CIDR networks (beside loopback) that may GET /metrics
    PROXY_FIX = 0  # number of trusted reverse proxies in front (X-Forwarded-*); 0 trusts none
    NEW_DEVICE_EMAIL = True  # mail "New sign-in to your account" for a login from a new device
    CAPTCHA_VERIFY_URL = ""  # siteverify URL (reCAPTCHA, hCaptcha, Turnstile), altcha:, "": off
    CAPTCHA_SECRET = ""  # the verifier's secret (altcha: signs challenges; empty: SECRET_KEY)
    CAPTCHA_AFTER_FAILURES = 5  # failed logins of a username or an IP before a login needs one
    CAPTCHA_TIMEOUT = 5  # seconds to wait for the verifier
    WEBAUTHN_RP_ID = ""  # passkeys' relying-party id: the issuer's host or a parent domain
    # Seconds between a failed delivery (webhook, email, SMS) and the next try, one per retry
    # (the Standard Webhooks schedule: about 28 hours in all); each gets +-10% jitter.
    WEBHOOK_RETRY_DELAYS = (5, 300, 1800, 7200, 18000, 36000, 36000)
    WEBHOOK_TIMEOUT = 10  # seconds a webhook target has to answer 2xx
    WEBHOOK_ALLOW_PRIVATE_TARGETS = False  # deliver to loopback/private/link-local (dev only)
    WEBHOOK_DISABLE_AFTER = 5 * 24 * 3600  # seconds of failures before an endpoint is disabled
    OUTBOX_CLAIM_TIMEOUT = 120  # seconds a worker holds claimed rows; then others retake them
    OUTBOX_POLL_INTERVAL = 2  # seconds an idle delivery worker waits before looking again
    OUTBOX_IN_PROCESS = True  # serving processes deliver too (`authserver worker` is optional)
    SESSION_COOKIE_NAME = "authserver_session"
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"


SUPPORTED_LOCALES = ("en", "es", "fr")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://", "memory://")
INT_SETTINGS = (
    "DATABASE_CONNECT_TIMEOUT",
    "DATABASE_STATEMENT_TIMEOUT",
    "DATABASE_POOL_TIMEOUT",
    "SMS_TIMEOUT",
    "SMTP_TIMEOUT",
    "ARGON2_TIME_COST",
    "ARGON2_MEMORY_COST",
    "ARGON2_PARALLELISM",
    "PASSWORD_HASH_CONCURRENCY",
    "PASSWORD_HASH_WAIT_MS",
    "ACCESS_TOKEN_LIFETIME",
    "ID_TOKEN_LIFETIME",
    "REFRESH_TOKEN_IDLE_LIFETIME",
    "REFRESH_TOKEN_ABSOLUTE_LIFETIME",
    "REFRESH_TOKEN_RETRY_GRACE",
    "AUTHORIZATION_CODE_LIFETIME",
    "OTP_LIFETIME",
    "OTP_RESEND_COOLDOWN",
    "OTP_MAX_ATTEMPTS",
    "LOGIN_HISTORY_RETENTION_DAYS",
    "AUDIT_RETENTION_DAYS",
    "MAX_CONTENT_LENGTH",
    "PROXY_FIX",
    "KEY_PUBLISH_DELAY",
    "KEYS_CACHE_TTL",
    "CAPTCHA_AFTER_FAILURES",
    "CAPTCHA_TIMEOUT",
    "TOKEN_CHECK_CACHE_TTL",
    "SUPPORT_LOGIN_LIFETIME",
    "WEBHOOK_TIMEOUT",
    "WEBHOOK_DISABLE_AFTER",
    "OUTBOX_CLAIM_TIMEOUT",
    "OUTBOX_POLL_INTERVAL",
)
STR_SETTINGS = (
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_PREFIX",
    "ISSUER",
    "MAIL_URL",
    "MAIL_FROM",
    "SMS_URL",
    "SIGNING_KEYS_FILE",
    "KEY_ENCRYPTION_SECRET",
    "DEFAULT_LOCALE",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "METRICS_ALLOW",
    "CAPTCHA_VERIFY_URL",
    "CAPTCHA_SECRET",
    "WEBAUTHN_RP_ID",
)
BOOL_SETTINGS = (
    "NEW_DEVICE_EMAIL",
    "GLOBAL_SIGNUP",
    "WEBHOOK_ALLOW_PRIVATE_TARGETS",
    "OUTBOX_IN_PROCESS",
)
# Lower bounds that keep a typo from switching a protection off.
MINIMUMS = {
    "ARGON2_TIME_COST": 1,
    "ARGON2_MEMORY_COST": 8,
    "ARGON2_PARALLELISM": 1,
    "PASSWORD_HASH_CONCURRENCY": 0,
    "PASSWORD_HASH_WAIT_MS": 10,
    "ACCESS_TOKEN_LIFETIME": 60,
    "ID_TOKEN_LIFETIME": 60,
    "REFRESH_TOKEN_IDLE_LIFETIME": 60,
    "REFRESH_TOKEN_ABSOLUTE_LIFETIME": 60,
    "REFRESH_TOKEN_RETRY_GRACE": 0,
    "AUTHORIZATION_CODE_LIFETIME": 10,
    "OTP_LIFETIME": 30,
    "OTP_RESEND_COOLDOWN": 0,
    "OTP_MAX_ATTEMPTS": 1,
    "LOGIN_HISTORY_RETENTION_DAYS": 1,
    "AUDIT_RETENTION_DAYS": 1,
    "MAX_CONTENT_LENGTH": 1024,
    "SMS_TIMEOUT": 1,
    "SMTP_TIMEOUT": 1,
    "DATABASE_CONNECT_TIMEOUT": 2,
    "DATABASE_STATEMENT_TIMEOUT": 1,
    "DATABASE_POOL_TIMEOUT": 1,
    "PROXY_FIX": 0,
    "KEY_PUBLISH_DELAY": 0,
    "KEYS_CACHE_TTL": 1,
    "CAPTCHA_AFTER_FAILURES": 0,
    "CAPTCHA_TIMEOUT": 1,
    "TOKEN_CHECK_CACHE_TTL": 0,
    "SUPPORT_LOGIN_LIFETIME": 60,
    "WEBHOOK_TIMEOUT": 1,
    "WEBHOOK_DISABLE_AFTER": 60,
    "OUTBOX_CLAIM_TIMEOUT": 10,
    "OUTBOX_POLL_INTERVAL": 1,
}
MAXIMUMS = {
    "REFRESH_TOKEN_RETRY_GRACE": 60,  # a retry, not a second life for a stolen token
    "AUTHORIZATION_CODE_LIFETIME": 600,
    "OTP_LIFETIME": 600,
    "OTP_MAX_ATTEMPTS": 10,
    # Each check in flight holds ARGON2_MEMORY_COST; a queue longer than this is no help.
    "PASSWORD_HASH_CONCURRENCY": 256,
    "PASSWORD_HASH_WAIT_MS": 30000,
    # A worker must never wait on the database for long: these bound a request's stall.
    "DATABASE_CONNECT_TIMEOUT": 60,
    "DATABASE_STATEMENT_TIMEOUT": 300,
    "DATABASE_POOL_TIMEOUT": 60,
    # Every instance must see a revoked key within this many seconds.
    "KEYS_CACHE_TTL": 60,
    "CAPTCHA_TIMEOUT": 30,
    # A revocation missed while Redis was unreachable counts for at most this long.
    "TOKEN_CHECK_CACHE_TTL": 300,
    # Someone else's session: short, and never longer than an hour.
    "SUPPORT_LOGIN_LIFETIME": 3600,
    "WEBHOOK_TIMEOUT": 30,
    "OUTBOX_POLL_INTERVAL": 60,
}


class ConfigError(Exception):
    """A setting is missing, malformed or unsafe; the message names it."""


def load_config(app: Flask, test_config: dict[str, Any] | None) -> None:
    """Apply the four layers to `app.config`, then derive Flask's own keys."""
    app.config.from_object(Defaults)
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("AUTHSERVER")
    if test_config:
        app.config.update(test_config)
    _expand_paths(app)
    check_config(app.config)
    app.config["SQLALCHEMY_DATABASE_URI"] = _sqlalchemy_url(app.config["DATABASE_URL"])
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = _engine_options(app.config)
    app.config["SESSION_COOKIE_SECURE"] = app.config["ISSUER"].startswith("https://")
    if app.config["SESSION_COOKIE_SECURE"] and app.config["SESSION_COOKIE_NAME"] == (
        Defaults.SESSION_COOKIE_NAME
    ):
        # __Host-: the browser only takes it Secure, Path=/ and without Domain (no subdomain
        # can plant or overwrite it).
        app.config["SESSION_COOKIE_NAME"] = "__Host-" + Defaults.SESSION_COOKIE_NAME
    # Flask-WTF's strict mode demands a Referer on HTTPS, which privacy tools strip; the
    # session-bound token, SameSite=Lax and the pages' Origin check (pages/common.py,
    # which refuses `Origin: null` too) stand in for it.
    app.config.setdefault("WTF_CSRF_SSL_STRICT", False)
    app.config["PREFERRED_URL_SCHEME"] = urlsplit(app.config["ISSUER"]).scheme
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)


def _expand_paths(app: Flask) -> None:
    """Fill `{instance}` in path-like settings and the default database URL."""
    for key in ("MAIL_URL", "SMS_URL", "SIGNING_KEYS_FILE"):
        value = app.config.get(key)
        if isinstance(value, str):
            app.config[key] = value.replace("{instance}", app.instance_path)
    if not app.config.get("DATABASE_URL"):
        path = os.path.join(app.instance_path, "authserver.sqlite3")
        app.config["DATABASE_URL"] = f"sqlite:///{path}"


def _sqlalchemy_url(url: str) -> str:
    """Give driverless PostgreSQL URLs the installed driver.

    SQLAlchemy never accepts the common `postgres://` spelling, and before 2.1 a bare
    `postgresql://` means psycopg2, which is not installed; we ship psycopg 3.
    """
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


POOL_RECYCLE = 1800  # seconds a pooled connection is used before it is replaced


def _engine_options(config: Any) -> dict[str, Any]:
    if config["DATABASE_URL"].startswith("sqlite"):
        # SQLite waits for a writer instead of failing at once with "database is locked".
        return {"connect_args": {"timeout": 15}}
    statement_ms = config["DATABASE_STATEMENT_TIMEOUT"] * 1000
    return {
        # No ping per checkout (a round trip on every request): connections are replaced
        # after POOL_RECYCLE seconds, one idle for a while is pinged first (database.py),
        # and one found dead mid-request is a 503 that invalidates the pool.
        "pool_recycle": POOL_RECYCLE,
        # SQLAlchemy's default is 30 s: a request would queue that long behind stuck ones.
        "pool_timeout": config["DATABASE_POOL_TIMEOUT"],
        "connect_args": {
            "connect_timeout": config["DATABASE_CONNECT_TIMEOUT"],
            # The server cancels a slow statement or lock wait itself (the connection stays
            # usable); a server that does not answer at all is cut by database.py.
            "options": f"-c statement_timeout={statement_ms}",
        },
    }


def check_config(config: Any) -> None:
    """Raise ConfigError for malformed values, and for unsafe ones outside debug/testing."""
    for key in INT_SETTINGS:
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"AUTHSERVER_{key} must be a whole number, got {value!r}")
        if value < MINIMUMS.get(key, 0):
            raise ConfigError(f"AUTHSERVER_{key} must be at least {MINIMUMS[key]}, got {value}")
        if key in MAXIMUMS and value > MAXIMUMS[key]:
            raise ConfigError(f"AUTHSERVER_{key} must be at most {MAXIMUMS[key]}, got {value}")
    for key in BOOL_SETTINGS:
        if not isinstance(config.get(key), bool):
            raise ConfigError(f"AUTHSERVER_{key} must be true or false, got {config.get(key)!r}")
    for key in STR_SETTINGS:
        if not isinstance(config.get(key), str):
            raise ConfigError(f"AUTHSERVER_{key} must be a string, got {config.get(key)!r}")
    for key in BOOL_SETTINGS:
        if not isinstance(config.get(key), bool):
            raise ConfigError(f"AUTHSERVER_{key} must be true or false, got {config.get(key)!r}")
    delays = config.get("WEBHOOK_RETRY_DELAYS")
    if (
        not isinstance(delays, list | tuple)
        or not 1 <= len(delays) <= 20
        or not all(type(d) is int and 1 <= d <= 7 * 24 * 3600 for d in delays)
    ):
        raise ConfigError(
            "AUTHSERVER_WEBHOOK_RETRY_DELAYS must be a JSON list of 1-20 whole seconds"
            f" (1 to 604800 each), got {delays!r}"
        )
    # A claim must outlive a batch of the slowest deliveries, or two workers would send one.
    slowest = max(config["WEBHOOK_TIMEOUT"], config["SMTP_TIMEOUT"], config["SMS_TIMEOUT"])
    if config["OUTBOX_CLAIM_TIMEOUT"] < CLAIM_BATCH * slowest + 5:
        raise ConfigError(
            f"AUTHSERVER_OUTBOX_CLAIM_TIMEOUT must be at least {CLAIM_BATCH * slowest + 5}"
            f" ({CLAIM_BATCH} deliveries of the longest sender timeout, plus 5 s)"
        )
    if not config["DATABASE_URL"].startswith(("sqlite:", "postgresql", "postgres:")):
        raise ConfigError("AUTHSERVER_DATABASE_URL must be a sqlite:// or postgresql:// URL")
    if not config["REDIS_URL"].startswith(REDIS_SCHEMES):
        raise ConfigError(
            "AUTHSERVER_REDIS_URL must be redis://, rediss://, unix://, redis+sentinel:// "
            "or memory://"
        )
    if config["REDIS_URL"].startswith("redis+sentinel://"):
        try:
            parse_sentinel_url(config["REDIS_URL"])
        except ValueError as exc:
            raise ConfigError(f"AUTHSERVER_REDIS_URL: {exc}") from None
    if config["DEFAULT_LOCALE"] not in SUPPORTED_LOCALES:
        raise ConfigError(
            f"AUTHSERVER_DEFAULT_LOCALE must be one of {', '.join(SUPPORTED_LOCALES)}"
        )
    if config["LOG_LEVEL"].upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("AUTHSERVER_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
    if config["LOG_FORMAT"] not in ("logfmt", "json"):
        raise ConfigError("AUTHSERVER_LOG_FORMAT must be logfmt or json")
    try:
        parse_allow_list(config["METRICS_ALLOW"])
    except ValueError as exc:
        raise ConfigError(f"AUTHSERVER_METRICS_ALLOW: {exc}") from None
    try:
        # .port raises for a port that is not a number in 0-65535, urlsplit for a bad "[v6]".
        issuer = urlsplit(config["ISSUER"])
        issuer.port  # noqa: B018 - evaluated only to validate
    except ValueError:
        raise ConfigError(f"AUTHSERVER_ISSUER is not a valid URL: {config['ISSUER']!r}") from None
    if issuer.scheme not in ("http", "https") or not issuer.hostname:
        raise ConfigError("AUTHSERVER_ISSUER must be an absolute http(s) URL")
    if "?" in config["ISSUER"] or "#" in config["ISSUER"] or config["ISSUER"].endswith("/"):
        raise ConfigError("AUTHSERVER_ISSUER must have no query, fragment or trailing slash")
    _check_captcha(config)
    rp_id = config["WEBAUTHN_RP_ID"]
    if rp_id and not (issuer.hostname == rp_id or issuer.hostname.endswith("." + rp_id)):
        # WebAuthn refuses an RP ID that is not the page's host or a parent domain of it.
        raise ConfigError(
            f"AUTHSERVER_WEBAUTHN_RP_ID must be the issuer's host ({issuer.hostname}) or a"
            f" parent domain of it, got {rp_id!r}"
        )
    for key in ("MAIL_URL", "SMS_URL"):
        try:
            parse_sender_urls(config[key], kind=key.split("_")[0].lower())
        except ValueError as exc:
            raise ConfigError(f"AUTHSERVER_{key}: {exc}") from None
    if config.get("DEBUG") or config.get("TESTING"):
        return
    if config["SECRET_KEY"] == DEFAULT_SECRET_KEY or len(config["SECRET_KEY"]) < 32:
        raise ConfigError(
            "AUTHSERVER_SECRET_KEY is the built-in default or shorter than 32 characters;"
            " set it to a long random value"
        )
    if config["KEY_ENCRYPTION_SECRET"] and len(config["KEY_ENCRYPTION_SECRET"]) < 32:
        raise ConfigError(
            "AUTHSERVER_KEY_ENCRYPTION_SECRET is shorter than 32 characters;"
            " set it to a long random value (or leave it empty to use SECRET_KEY)"
        )
    least = JWKS_MAX_AGE + config["KEYS_CACHE_TTL"]
    if config["KEY_PUBLISH_DELAY"] < least:
        # Publish first, sign later: every instance serves the new key within the cache
        # TTL, and a relying party that cached the JWKS just before has fetched it again
        # within max-age, both before the new key signs.
        raise ConfigError(
            f"AUTHSERVER_KEY_PUBLISH_DELAY must be at least the JWKS max-age ({JWKS_MAX_AGE} s)"
            f" plus AUTHSERVER_KEYS_CACHE_TTL: {least}"
        )
    if issuer.scheme == "http" and not is_loopback_host(issuer.hostname):
        raise ConfigError(
            f"AUTHSERVER_ISSUER must be https:// unless it is loopback, got {config['ISSUER']}"
        )


def _check_captcha(config: Any) -> None:
    url = config["CAPTCHA_VERIFY_URL"]
    if not url or url == "altcha:":  # off, or the built-in proof of work
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            "AUTHSERVER_CAPTCHA_VERIFY_URL must be an http(s) URL, altcha: or empty (off)"
        )
    if not config["CAPTCHA_SECRET"]:
        raise ConfigError("AUTHSERVER_CAPTCHA_SECRET must be set when CAPTCHA_VERIFY_URL is")
