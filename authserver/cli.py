"""The `authserver` command: a Flask CLI group around `create_app`.

Every command that creates something can print JSON (`--json`) for scripts. A wrong
argument, setting or missing dependency ends with one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy.exc import OperationalError, ProgrammingError
from werkzeug.serving import WSGIRequestHandler, run_simple

from authserver.identity import accounts, clients, demo, imports, retention, users
from authserver.platform import keys
from authserver.platform.config import ConfigError
from authserver.platform.database import DatabaseUnavailable
from authserver.platform.errors import DomainError, ServiceUnavailable
from authserver.platform.models import AUTH_METHODS, ROLES, AuthMethod


def _cli_app() -> Flask:
    # Keys are not required to load: `keys rotate` makes the first one; `run` checks them.
    from . import create_app

    return create_app(require_keys=False)


class _Group(FlaskGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        """Our own commands, listed without building the app: `--help` must not need a
        valid configuration (Flask's version prints a traceback when it is not)."""
        return sorted(click.Group.list_commands(self, ctx))


cli = _Group(create_app=_cli_app, add_version_option=False, help=__doc__)


def main() -> None:
    """Console-script entry point: one-line errors instead of tracebacks."""
    try:
        cli.main(prog_name="authserver")
    except ConfigError as exc:
        _fail(f"configuration: {exc}", 2)
    except (OperationalError, ProgrammingError, DatabaseUnavailable) as exc:
        # DatabaseUnavailable stands for the driver's error it was raised from.
        cause = exc.__cause__ if isinstance(exc, DatabaseUnavailable) else exc
        orig = getattr(cause, "orig", None)
        reason = str(orig).strip().splitlines()[0] if orig else type(exc).__name__
        _fail(
            f"database: {reason} (check AUTHSERVER_DATABASE_URL; run `authserver db upgrade`)",
            3,
        )
    except ServiceUnavailable as exc:
        _fail(exc.detail, 4)


def _fail(message: str, code: int) -> None:
    click.echo(f"authserver: error: {message}", err=True)
    sys.exit(code)


def _emit(data: dict[str, Any], as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        human()


# (code, field) -> what this command says instead of the domain's words: where to go.
_DETAILS = {
    ("totp_not_enrolled", "auth_method"): (
        "The user sets up an authenticator app themselves (security page or "
        "/v1/totp_setups); create them with another method."
    ),
}


def _field_name(field: str) -> str:
    """How these messages name a field: `phone_number` as phoneNumber."""
    head, *rest = field.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _domain_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a DomainError from a use case into a one-line error and exit 1."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DatabaseUnavailable:
            raise  # main() says which setting to check (exit 3)
        except DomainError as exc:
            detail = _DETAILS.get((exc.code, exc.field or ""), exc.detail)
            where = f" ({_field_name(exc.field)})" if exc.field else ""
            _fail(f"{detail}{where}", 1)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@cli.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@with_appcontext
def run_command(host: str, port: int) -> None:
    """Serve with the development server (use gunicorn in production)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        app.extensions["authserver.keys"].check()
    except keys.KeysMissing as exc:
        raise ConfigError(str(exc)) from None
    app.extensions["authserver.store"].ping()  # claims memory:// for this process now
    run_simple(
        host,
        port,
        app,
        threaded=True,
        use_reloader=False,
        use_debugger=False,
        request_handler=_QuietHandler,
    )


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without its access line: our own request log already has one."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


@cli.group("accounts")
def accounts_group() -> None:
    """Manage accounts."""


@accounts_group.command("create")
@click.option("--name", required=True, help="Account name.")
@click.option("--locale", "default_locale", default="en", type=click.Choice(["en", "es", "fr"]))
@click.option(
    "--auth-method",
    "default_auth_method",
    default=AuthMethod.SIMPLE.value,
    type=click.Choice(AUTH_METHODS),
)
@json_option
@with_appcontext
@_domain_errors
def accounts_create(
    name: str, default_locale: str, default_auth_method: str, as_json: bool
) -> None:
    """Create a live account with its test account."""
    pair = accounts.create_account(
        name, default_locale=default_locale, default_auth_method=default_auth_method
    )
    data = pair.summary()
    _emit(
        data,
        as_json,
        lambda: click.echo(
            f"Created account {pair.live.id} (test account {pair.test.id})\n"
            f"  publishable token (live): {pair.live.publishable_token}\n"
            f"  publishable token (test): {pair.test.publishable_token}"
        ),
    )


@accounts_group.command("regenerate-publishable-token")
@click.option("--account", "account_id", required=True)
@json_option
@with_appcontext
@_domain_errors
def accounts_regenerate_token(account_id: str, as_json: bool) -> None:
    """Replace an account's publishable refresh token (the old one stops working)."""
    account = accounts.regenerate_publishable_token(accounts.get_account(account_id))
    _emit(
        {"id": account.id, "publishableToken": account.publishable_token},
        as_json,
        lambda: click.echo(account.publishable_token),
    )


@cli.group("users")
def users_group() -> None:
    """Manage users."""


@users_group.command("create")
@click.option("--account", "account_id", help="Account id for an account user.")
@click.option("--global", "is_global", is_flag=True, help="Create a global user instead.")
@click.option("--username", required=True)
@click.option("--password", required=True, help="Use '-' to read it from standard input.")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--email")
@click.option("--email-verified", is_flag=True)
@click.option("--phone", "phone_number", help="E.164, e.g. +15551234567.")
@click.option("--auth-method", type=click.Choice(AUTH_METHODS))
@click.option("--name")
@json_option
@with_appcontext
@_domain_errors
def users_create(
    account_id: str | None,
    is_global: bool,
    password: str,
    as_json: bool,
    **fields: Any,
) -> None:
    """Create an account user (--account) or a global user (--global)."""
    if bool(account_id) == is_global:
        raise click.UsageError("give exactly one of --account ID or --global")
    if password == "-":  # noqa: S105 - the stdin marker, not a password
        password = sys.stdin.readline().rstrip("\n")
    account = accounts.get_account(account_id) if account_id else None
    user = users.create_user(account=account, password=password, **fields)
    _emit(
        {"id": user.id, "username": user.username, "accountId": user.account_id},
        as_json,
        lambda: click.echo(f"Created user {user.username} ({user.id})"),
    )


@users_group.command("import")
@click.option("--account", "account_id", required=True, help="The account the users join.")
@click.argument("file", type=click.File("rb"))
@json_option
@with_appcontext
@_domain_errors
def users_import(account_id: str, file: Any, as_json: bool) -> None:
    """Import users from JSON lines (FILE, or - for stdin) with their password hashes
    (argon2, bcrypt $2b$, Django pbkdf2_sha256$): all of them, or none if a line is bad."""
    result = imports.import_users(accounts.get_account(account_id), file)
    errors = [{"line": e.line, "field": e.field, "detail": e.detail} for e in result.errors]
    if as_json:
        click.echo(json.dumps({"imported": result.imported, "errors": errors}, indent=2))
    elif errors:
        for e in result.errors:
            where = f" ({e.field})" if e.field else ""
            click.echo(f"line {e.line}: {e.detail}{where}", err=True)
        click.echo(f"authserver: error: {len(errors)} bad lines; nothing imported", err=True)
    else:
        click.echo(f"Imported {result.imported} users into account {account_id}")
    if errors:
        sys.exit(1)


@cli.group("clients")
def clients_group() -> None:
    """Manage OAuth clients."""


@clients_group.command("create")
@click.option("--account", "account_id", required=True)
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True)
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True)
@click.option("--grant-type", "grant_types", multiple=True, type=click.Choice(clients.GRANT_TYPES))
@click.option("--public", is_flag=True, help="A public client (no secret), e.g. a mobile app.")
@click.option("--scope", help="Space-separated scopes the client may ask for.")
@json_option
@with_appcontext
@_domain_errors
def clients_create(
    account_id: str,
    name: str,
    redirect_uris: tuple[str, ...],
    post_logout_redirect_uris: tuple[str, ...],
    grant_types: tuple[str, ...],
    public: bool,
    scope: str | None,
    as_json: bool,
) -> None:
    """Register a client. A confidential client's secret is shown once, here."""
    new = clients.create_client(
        accounts.get_account(account_id),
        name,
        public=public,
        redirect_uris=list(redirect_uris),
        post_logout_redirect_uris=list(post_logout_redirect_uris),
        grant_types=list(grant_types) or None,
        scope=scope,
    )
    data: dict[str, Any] = {
        "clientId": new.client.client_id,
        "name": new.client.name,
        "public": new.client.is_public,
        "grantTypes": new.client.grant_types,
        "redirectUris": new.client.redirect_uris,
    }
    if new.secret:
        data["clientSecret"] = new.secret

    def human() -> None:
        click.echo(f"Created client {new.client.client_id}")
        if new.secret:
            click.echo(f"  client secret (shown once): {new.secret}")

    _emit(data, as_json, human)


@cli.group("keys")
def keys_group() -> None:
    """Manage the JWT signing keys (in the database, shared by every instance)."""


def _key_line(k: keys.KeyInfo) -> str:
    since = {
        keys.NEXT: f"signs from {k.activates_at:%Y-%m-%d %H:%M:%S}Z",
        keys.CURRENT: f"signing since {k.activates_at:%Y-%m-%d %H:%M:%S}Z",
        keys.RETIRED: f"retired {k.retired_at:%Y-%m-%d %H:%M:%S}Z" if k.retired_at else "",
        keys.REVOKED: f"revoked {k.revoked_at:%Y-%m-%d %H:%M:%S}Z" if k.revoked_at else "",
    }[k.state]
    shown = "published" if k.published else "not published"
    return f"{k.kid}  {k.alg}  {k.state:<8} {since}  ({shown})"


def _ring() -> keys.KeyRing:
    ring: keys.KeyRing = current_app.extensions["authserver.keys"]
    return ring


@keys_group.command("list")
@json_option
@with_appcontext
def keys_list(as_json: bool) -> None:
    """Every key with its state: next, current, retired or revoked, newest first."""
    found = keys.list_keys(_ring())
    _emit(
        {"keys": [k.as_dict() for k in found]},
        as_json,
        lambda: click.echo("\n".join(_key_line(k) for k in found) or "No signing keys."),
    )


@keys_group.command("rotate")
@click.option(
    "--now",
    "immediate",
    is_flag=True,
    help="Sign with the new keys at once (after `keys revoke`): relying parties that cached"
    " the JWKS refuse their tokens until they fetch it again.",
)
@json_option
@with_appcontext
def keys_rotate(immediate: bool, as_json: bool) -> None:
    """Add a new key per algorithm: published at once, signing after
    AUTHSERVER_KEY_PUBLISH_DELAY seconds; the keys it replaces then stay published until
    their tokens expire."""
    new = keys.rotate(_ring(), immediate=immediate)
    _emit(
        {"keys": [k.as_dict() for k in new]},
        as_json,
        lambda: click.echo("\n".join(_key_line(k) for k in new)),
    )


@keys_group.command("retire")
@click.argument("kid")
@json_option
@with_appcontext
@_domain_errors
def keys_retire(kid: str, as_json: bool) -> None:
    """Stop a key that is not current (a next key, say) from ever signing; it stays
    published until the tokens it may have signed expire."""
    info = keys.retire(_ring(), kid)
    _emit(info.as_dict(), as_json, lambda: click.echo(_key_line(info)))


@keys_group.command("revoke")
@click.argument("kid")
@json_option
@with_appcontext
@_domain_errors
def keys_revoke(kid: str, as_json: bool) -> None:
    """A key leaked: remove it from the JWKS and refuse every token it signed, on every
    instance within AUTHSERVER_KEYS_CACHE_TTL seconds."""
    ring = _ring()
    info = keys.revoke(ring, kid)
    unsigned = [
        alg
        for alg in keys.ALGORITHMS
        if not any(k.alg == alg and k.state == keys.CURRENT for k in keys.list_keys(ring))
    ]

    def human() -> None:
        click.echo(_key_line(info))
        if unsigned:
            click.echo(
                f"No {', '.join(unsigned)} key signs now: run `authserver keys rotate --now`.",
                err=True,
            )

    _emit({**info.as_dict(), "unsignedAlgorithms": unsigned}, as_json, human)


@keys_group.command("import")
@click.argument("path", required=False)
@json_option
@with_appcontext
def keys_import(path: str | None, as_json: bool) -> None:
    """Move the keys of a key file (default AUTHSERVER_SIGNING_KEYS_FILE) into the
    database; afterwards delete the file. Keys already there are skipped."""
    path = path or current_app.config["SIGNING_KEYS_FILE"]
    try:
        imported, skipped = keys.import_file(_ring(), path)
    except ValueError as exc:
        _fail(str(exc), 1)
        return
    _emit(
        {"imported": [k.as_dict() for k in imported], "skipped": skipped},
        as_json,
        lambda: click.echo(
            "\n".join(
                [_key_line(k) for k in imported] + [f"{kid}  already present" for kid in skipped]
            )
        ),
    )


@cli.command("prune")
@click.option(
    "--batch-size",
    default=retention.BATCH_SIZE,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Rows deleted per transaction.",
)
@json_option
@with_appcontext
def prune_command(batch_size: int, as_json: bool) -> None:
    """Delete expired refresh tokens, spent recovery codes and login history older than
    AUTHSERVER_LOGIN_HISTORY_RETENTION_DAYS. Safe to run on several hosts at once."""
    counts = retention.prune(batch_size)
    _emit(
        {"deleted": counts},
        as_json,
        lambda: click.echo("\n".join(f"{name}: {n} deleted" for name, n in counts.items())),
    )


@cli.command("demo")
@json_option
@with_appcontext
def demo_command(as_json: bool) -> None:
    """Prepare a local demo: secret key, signing key, database, demo data (once)."""
    summary = demo.ensure_demo(current_app._get_current_object())  # type: ignore[attr-defined]
    _emit(summary, as_json, lambda: click.echo(demo.describe(summary)))
