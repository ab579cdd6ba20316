"""Settings: the four layers, malformed values, production refusals and derived Flask keys."""

from __future__ import annotations

import os
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from authserver import create_app
from authserver.platform.config import DEFAULT_SECRET_KEY, ConfigError
from authserver.platform.extensions import db
from authserver.platform.models import SigningKey

GOOD_SECRET = "s" * 32


@pytest.fixture
def build(make_config: Any, instance_path: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Builds an app on the test instance folder with some AUTHSERVER_* variables set.

    A setting given in `env` is left out of the test config (which would otherwise win)
    unless it is also passed as an override.
    """
    monkeypatch.setenv("AUTHSERVER_INSTANCE_PATH", instance_path)

    def build_app(
        env: dict[str, str] | None = None, *, require_keys: bool = True, **overrides: Any
    ) -> Flask:
        config = make_config(**overrides)
        for name, value in (env or {}).items():
            monkeypatch.setenv(f"AUTHSERVER_{name}", value)
            if name not in overrides:
                config.pop(name, None)
        return create_app(config, require_keys=require_keys)

    return build_app


def _write_instance_config(instance_path: str, text: str) -> None:
    with open(os.path.join(instance_path, "config.py"), "w", encoding="utf-8") as fh:
        fh.write(text)


# --- layering ---------------------------------------------------------------------------


def test_layers_apply_in_order(build, instance_path):
    """defaults -> instance/config.py -> AUTHSERVER_* env -> test config, each layer wins."""
    _write_instance_config(
        instance_path,
        "OTP_MAX_ATTEMPTS = 7\nOTP_RESEND_COOLDOWN = 20\nOTP_LIFETIME = 200\n",
    )
    app = build(
        {"OTP_RESEND_COOLDOWN": "40", "OTP_LIFETIME": "120", "ACCESS_TOKEN_LIFETIME": "600"},
        OTP_LIFETIME=90,
    )
    assert app.config["DEFAULT_LOCALE"] == "en"  # default only
    assert app.config["OTP_MAX_ATTEMPTS"] == 7  # instance over default
    assert app.config["OTP_RESEND_COOLDOWN"] == 40  # env over instance
    assert app.config["ACCESS_TOKEN_LIFETIME"] == 600  # env over default
    assert app.config["OTP_LIFETIME"] == 90  # test config over env and instance


def test_env_values_are_json_parsed(build):
    """AUTHSERVER_OTP_LIFETIME=120 arrives as the int 120, and a plain string stays a string."""
    app = build({"OTP_LIFETIME": "120", "MAIL_FROM": "Auth <auth@example.com>"})
    assert app.config["OTP_LIFETIME"] == 120
    assert isinstance(app.config["OTP_LIFETIME"], int)
    assert app.config["MAIL_FROM"] == "Auth <auth@example.com>"
    assert build({"NEW_DEVICE_EMAIL": "false"}).config["NEW_DEVICE_EMAIL"] is False


def test_malformed_instance_config_value_is_refused(build, instance_path):
    """A bad value in instance/config.py is refused just like one from the environment."""
    _write_instance_config(instance_path, "OTP_MAX_ATTEMPTS = 50\n")
    with pytest.raises(ConfigError, match="AUTHSERVER_OTP_MAX_ATTEMPTS"):
        build()


# --- malformed values -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTP_LIFETIME", "abc"),
        ("OTP_LIFETIME", "0"),
        ("OTP_LIFETIME", "99999"),
        ("OTP_LIFETIME", "120.5"),
        ("OTP_LIFETIME", "true"),
        ("REDIS_URL", "http://x"),
        ("DATABASE_URL", "mysql://x"),
        ("ISSUER", "https://auth.example.com/"),
        ("ISSUER", "https://auth.example.com?tenant=1"),
        ("ISSUER", "https://auth.example.com?"),
        ("ISSUER", "https://auth.example.com#top"),
        ("ISSUER", "auth.example.com"),
        ("ISSUER", "ftp://auth.example.com"),
        ("ISSUER", "http://[::1:5000"),
        ("ISSUER", "https://auth.example.com:99999"),
        ("DEFAULT_LOCALE", "de"),
        ("LOG_LEVEL", "LOUD"),
        ("SECRET_KEY", "12345"),
        ("DATABASE_STATEMENT_TIMEOUT", "0"),  # 0 would mean "wait forever" to PostgreSQL
        ("DATABASE_STATEMENT_TIMEOUT", "3600"),
        ("DATABASE_CONNECT_TIMEOUT", "0"),
        ("DATABASE_POOL_TIMEOUT", "600"),
        ("NEW_DEVICE_EMAIL", "1"),  # true or false only: a number is a typo, not "on"
        ("NEW_DEVICE_EMAIL", "yes"),
        ("CAPTCHA_VERIFY_URL", "ftp://captcha.example.com/siteverify"),
        ("CAPTCHA_VERIFY_URL", "altcha"),
        ("CAPTCHA_TIMEOUT", "0"),
        ("CAPTCHA_AFTER_FAILURES", "-1"),
        ("GLOBAL_SIGNUP", "yes"),  # not JSON true: a typo must not open sign-ups
        ("GLOBAL_SIGNUP", "1"),
        ("SUPPORT_LOGIN_LIFETIME", "30"),
        ("SUPPORT_LOGIN_LIFETIME", "86400"),
    ],
)
def test_malformed_value_names_the_setting(build, name, value):
    """A malformed AUTHSERVER_* value raises ConfigError naming that setting."""
    with pytest.raises(ConfigError, match=f"AUTHSERVER_{name}"):
        build({name: value})


def test_a_siteverify_url_needs_its_secret(build):
    """CAPTCHA_VERIFY_URL without CAPTCHA_SECRET is refused (the built-in altcha: is not)."""
    with pytest.raises(ConfigError, match="AUTHSERVER_CAPTCHA_SECRET"):
        build({"CAPTCHA_VERIFY_URL": "https://captcha.example.com/siteverify"})
    assert build({"CAPTCHA_VERIFY_URL": "altcha:"}).config["CAPTCHA_VERIFY_URL"] == "altcha:"


# --- production refusals ----------------------------------------------------------------


def test_production_refuses_default_secret_key(build):
    """Outside testing/debug the built-in secret key is refused."""
    with pytest.raises(ConfigError, match="AUTHSERVER_SECRET_KEY"):
        build(TESTING=False, SECRET_KEY=DEFAULT_SECRET_KEY)


def test_production_refuses_short_secret_key(build):
    """Outside testing/debug a secret key under 32 characters is refused."""
    with pytest.raises(ConfigError, match="AUTHSERVER_SECRET_KEY"):
        build(TESTING=False, SECRET_KEY="s" * 31)


def test_production_refuses_plain_http_public_issuer(build):
    """Outside testing/debug an http:// issuer on a public host is refused."""
    with pytest.raises(ConfigError, match="AUTHSERVER_ISSUER"):
        build(TESTING=False, SECRET_KEY=GOOD_SECRET, ISSUER="http://auth.example.com")


@pytest.mark.parametrize(
    "issuer",
    [
        "http://127.0.0.1:5000",
        "http://localhost:5000",
        "http://[::1]:5000",
        "https://auth.example.com",
        "https://auth.example.com/tenant",
    ],
)
def test_production_accepts_https_or_loopback_issuer(build, issuer):
    """Outside testing/debug https:// issuers and http:// loopback issuers are accepted."""
    app = build(TESTING=False, SECRET_KEY=GOOD_SECRET, ISSUER=issuer)
    assert app.config["ISSUER"] == issuer
    assert not app.testing


def _no_keys(app: Flask) -> None:
    with app.app_context():
        db.session.execute(sa.delete(SigningKey))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


def test_production_refuses_missing_signing_keys(build):
    """Outside testing/debug start-up refuses a database without signing keys, saying what
    to run."""
    _no_keys(build())
    with pytest.raises(ConfigError, match="no ES256 signing key") as info:
        build(TESTING=False, SECRET_KEY=GOOD_SECRET)
    assert "authserver keys rotate" in str(info.value)


def test_production_refuses_keys_it_cannot_decrypt(build):
    """Start-up with a KEY_ENCRYPTION_SECRET that does not open the stored keys is refused."""
    with pytest.raises(ConfigError, match="cannot decrypt signing key"):
        build(TESTING=False, SECRET_KEY=GOOD_SECRET, KEY_ENCRYPTION_SECRET="x" * 40)


def test_missing_signing_keys_allowed_without_require_keys(build):
    """require_keys=False (the CLI making the first key) starts without a key."""
    _no_keys(build())
    app = build(require_keys=False, TESTING=False, SECRET_KEY=GOOD_SECRET)
    assert not app.testing


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"KEY_PUBLISH_DELAY": 299}, "AUTHSERVER_KEY_PUBLISH_DELAY"),
        ({"KEY_PUBLISH_DELAY": 304, "KEYS_CACHE_TTL": 5}, "AUTHSERVER_KEY_PUBLISH_DELAY"),
        ({"KEY_ENCRYPTION_SECRET": "short"}, "AUTHSERVER_KEY_ENCRYPTION_SECRET"),
        ({"KEYS_CACHE_TTL": 61}, "AUTHSERVER_KEYS_CACHE_TTL"),
        ({"KEYS_CACHE_TTL": 0}, "AUTHSERVER_KEYS_CACHE_TTL"),
    ],
    ids=[
        "publish_delay_below_jwks_max_age",
        "publish_delay_below_max_age_plus_ttl",
        "short_encryption_secret",
        "ttl_high",
        "ttl_zero",
    ],
)
def test_production_refuses_unsafe_key_settings(build, overrides, setting):
    """A publish delay shorter than the JWKS max-age plus the key cache TTL, a short
    encryption secret or a cache TTL outside 1-60 s is refused, naming the setting."""
    with pytest.raises(ConfigError, match=setting):
        build(TESTING=False, SECRET_KEY=GOOD_SECRET, **overrides)


@pytest.mark.parametrize(
    "mode", [{"TESTING": True}, {"TESTING": False, "DEBUG": True}], ids=["testing", "debug"]
)
def test_testing_and_debug_allow_unsafe_values(build, instance_path, mode):
    """In testing or debug mode the default secret, a public http issuer and no keys are allowed."""
    app = build(
        **mode,
        SECRET_KEY=DEFAULT_SECRET_KEY,
        ISSUER="http://auth.example.com",
        KEY_PUBLISH_DELAY=0,
    )
    assert app.config["SECRET_KEY"] == DEFAULT_SECRET_KEY
    assert app.config["ISSUER"] == "http://auth.example.com"


def test_debug_mode_still_refuses_malformed_values(build):
    """Debug mode relaxes only the safety checks, not the format checks."""
    with pytest.raises(ConfigError, match="AUTHSERVER_OTP_LIFETIME"):
        build({"OTP_LIFETIME": "0"}, TESTING=False, DEBUG=True)


# --- derived settings -------------------------------------------------------------------


def test_session_cookie_secure_only_for_https_issuer(build):
    """SESSION_COOKIE_SECURE and the URL scheme follow the issuer's scheme."""
    https = build(ISSUER="https://auth.example.com")
    assert https.config["SESSION_COOKIE_SECURE"] is True
    assert https.config["PREFERRED_URL_SCHEME"] == "https"
    http = build(ISSUER="http://127.0.0.1:5000")
    assert http.config["SESSION_COOKIE_SECURE"] is False
    assert http.config["PREFERRED_URL_SCHEME"] == "http"


def test_empty_database_url_means_sqlite_in_instance_folder(build, instance_path):
    """The default empty DATABASE_URL becomes a SQLite file inside the instance folder."""
    app = build(DATABASE_URL="")
    expected = "sqlite:///" + os.path.join(instance_path, "authserver.sqlite3")
    assert app.config["DATABASE_URL"] == expected
    assert app.config["SQLALCHEMY_DATABASE_URI"] == expected


def test_instance_placeholder_is_expanded(build, instance_path, make_config):
    """The default legacy key file (what `keys import` reads) lives in the instance folder."""
    app = create_app(make_config())
    assert app.config["SIGNING_KEYS_FILE"] == os.path.join(instance_path, "signing-keys.json")


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_driverless_postgres_url_uses_psycopg(build, scheme):
    """postgres:// and postgresql:// URLs get the installed psycopg driver, so the app starts."""
    app = build({"DATABASE_URL": f"{scheme}://authserver@db.internal:5432/authserver"})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == (
        "postgresql+psycopg://authserver@db.internal:5432/authserver"
    )
