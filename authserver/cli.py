"""The `authserver` command: a Flask CLI group around `create_app`.

Every command that creates something can print JSON (`--json`) for scripts. A wrong
argument, setting or missing dependency ends with one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy.exc import OperationalError, ProgrammingError
from werkzeug.serving import WSGIRequestHandler, run_simple

from authserver.identity import accounts, apis, audit, clients, demo, imports, retention, users
from authserver.platform import delivery, keys
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

    def invoke(self, ctx: click.Context) -> Any:
        """Every command acts as the operator: the audit log names them (actor `cli`)."""
        with audit.acting(audit.cli_actor()):
            return super().invoke(ctx)


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
    if app.config["OUTBOX_IN_PROCESS"]:
        delivery.start_in_process(app)  # also what waited for a retry before a restart
    try:
        run_simple(
            host,
            port,
            app,
            threaded=True,
            use_reloader=False,
            use_debugger=False,
            request_handler=_QuietHandler,
        )
    finally:
        delivery.stop_in_process(app)


@cli.command("worker")
@click.option("--once", is_flag=True, help="One round (a batch of due rows), then exit.")
@click.option(
    "--threads", default=1, show_default=True, type=click.IntRange(1, 16), help="Workers here."
)
def worker_command(once: bool, threads: int) -> None:
    """Deliver webhooks, email and SMS from the outbox until SIGTERM or Ctrl-C.

    Run as many as you like, on as many hosts: they share the rows without sending one
    twice. Stopping finishes the delivery in hand and hands back the rest of the claim.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    workers = [delivery.Worker(app) for _ in range(threads)]
    if once:
        click.echo(f"tried {workers[0].run_once()}")
        return

    def stop(_signum: int, _frame: Any) -> None:
        for worker in workers:
            worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    running = [threading.Thread(target=w.run, name=f"worker-{i}") for i, w in enumerate(workers)]
    for thread in running:
        thread.start()
    click.echo(f"delivering with {threads} worker(s); SIGTERM or Ctrl-C stops", err=True)
    for thread in running:
        while thread.is_alive():  # a timed join lets the signal handler run meanwhile
            thread.join(0.5)


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
@click.option(
    "--global",
    "is_global",
    is_flag=True,
    help="Create a global user instead (its username is its email).",
)
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
    if account is None:  # a global user's username is their email
        fields["username"], fields["email"] = users.global_identity(
            fields["username"], fields.get("email")
        )
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


def _client_data(client: Any, secret: str | None = None) -> dict[str, Any]:
    """A client as the clients commands print it (the API's attribute names)."""
    data: dict[str, Any] = {
        "clientId": client.client_id,
        "accountId": client.account_id,
        "name": client.name,
        "status": client.status,
        "public": client.is_public,
        "grantTypes": client.grant_types,
        "redirectUris": client.redirect_uris,
        "postLogoutRedirectUris": client.post_logout_redirect_uris,
        "scope": client.scope,
        "skipConsent": client.skip_consent,
        "apiScopes": apis.client_grants(client),
    }
    if secret:
        data["clientSecret"] = secret
    return data


def _describe_client(data: dict[str, Any]) -> None:
    kind = "public" if data["public"] else "confidential"
    click.echo(f"{data['clientId']}  {data['name']} ({kind}, {data['status']})")
    for label, key in (
        ("grant types", "grantTypes"),
        ("redirect URIs", "redirectUris"),
        ("post-logout URIs", "postLogoutRedirectUris"),
    ):
        click.echo(f"  {label}: {' '.join(data[key]) or '-'}")
    click.echo(f"  scope: {data['scope'] or '-'}")
    click.echo(f"  skip consent: {'yes' if data['skipConsent'] else 'no'}")
    for identifier, granted in data["apiScopes"].items():
        click.echo(f"  API {identifier}: {' '.join(granted)}")


@clients_group.command("create")
@click.option("--account", "account_id", required=True)
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True)
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True)
@click.option(
    "--grant-type",
    "grant_types",
    multiple=True,
    type=click.Choice(clients.GRANT_TYPES),
    help="Default: authorization_code and refresh_token.",
)
@click.option("--public", is_flag=True, help="A public client (no secret), e.g. a mobile app.")
@click.option("--scope", help="Space-separated scopes the client may ask for.")
@click.option("--skip-consent", is_flag=True, help="A first-party app: no consent page.")
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
    skip_consent: bool,
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
        skip_consent=skip_consent,
    )

    def human() -> None:
        click.echo(f"Created client {new.client.client_id}")
        if new.secret:
            click.echo(f"  client secret (shown once): {new.secret}")

    _emit(_client_data(new.client, new.secret), as_json, human)


@clients_group.command("list")
@click.option("--account", "account_id", required=True)
@json_option
@with_appcontext
@_domain_errors
def clients_list(account_id: str, as_json: bool) -> None:
    """The account's clients (deleted ones are gone)."""
    found = [_client_data(c) for c in clients.list_clients(accounts.get_account(account_id))]
    if as_json:
        click.echo(json.dumps({"clients": found}, indent=2))
        return
    for data in found:
        kind = "public" if data["public"] else "confidential"
        click.echo(f"{data['clientId']}  {data['status']:8}  {kind:12}  {data['name']}")


@clients_group.command("show")
@click.argument("client_id")
@json_option
@with_appcontext
@_domain_errors
def clients_show(client_id: str, as_json: bool) -> None:
    """One client's settings (never its secret)."""
    data = _client_data(clients.get_client(None, client_id))
    _emit(data, as_json, lambda: _describe_client(data))


def _edited(
    current: list[str], add: tuple[str, ...], remove: tuple[str, ...], field: str
) -> list[str]:
    """`current` without `remove` (each must be there), then `add`."""
    missing = [uri for uri in remove if uri not in current]
    if missing:
        raise click.UsageError(f"{missing[0]} is not one of the client's {field}")
    kept = [uri for uri in current if uri not in remove]
    return kept + [uri for uri in add if uri not in kept]


@clients_group.command("update")
@click.argument("client_id")
@click.option("--name")
@click.option("--add-redirect-uri", multiple=True)
@click.option("--remove-redirect-uri", multiple=True)
@click.option("--add-post-logout-redirect-uri", multiple=True)
@click.option("--remove-post-logout-redirect-uri", multiple=True)
@click.option(
    "--grant-type",
    "grant_types",
    multiple=True,
    type=click.Choice(clients.GRANT_TYPES),
    help="The new list of grant types (replaces the old one).",
)
@click.option("--scope", help="The new space-separated scopes (replaces the old ones).")
@click.option("--skip-consent/--no-skip-consent", default=None)
@click.option(
    "--api-scope",
    "api_scopes",
    multiple=True,
    metavar="IDENTIFIER=SCOPE",
    help="A scope of one of the account's APIs the client may get (repeat; replaces the "
    "old grants).",
)
@click.option("--clear-api-scopes", is_flag=True, help="The client may get no API scopes.")
@json_option
@with_appcontext
@_domain_errors
def clients_update(
    client_id: str,
    name: str | None,
    add_redirect_uri: tuple[str, ...],
    remove_redirect_uri: tuple[str, ...],
    add_post_logout_redirect_uri: tuple[str, ...],
    remove_post_logout_redirect_uri: tuple[str, ...],
    grant_types: tuple[str, ...],
    scope: str | None,
    skip_consent: bool | None,
    api_scopes: tuple[str, ...],
    clear_api_scopes: bool,
    as_json: bool,
) -> None:
    """Change a client's settings; the rules of `create` apply to the result."""
    client = clients.get_client(None, client_id)
    fields: dict[str, Any] = {}
    if name is not None:
        fields["name"] = name
    if add_redirect_uri or remove_redirect_uri:
        fields["redirect_uris"] = _edited(
            client.redirect_uris, add_redirect_uri, remove_redirect_uri, "redirect URIs"
        )
    if add_post_logout_redirect_uri or remove_post_logout_redirect_uri:
        fields["post_logout_redirect_uris"] = _edited(
            client.post_logout_redirect_uris,
            add_post_logout_redirect_uri,
            remove_post_logout_redirect_uri,
            "post-logout redirect URIs",
        )
    if grant_types:
        fields["grant_types"] = list(grant_types)
    if scope is not None:
        fields["scope"] = scope
    if skip_consent is not None:
        fields["skip_consent"] = skip_consent
    if api_scopes or clear_api_scopes:
        granted: dict[str, list[str]] = {}
        for item in api_scopes:  # scope values hold no "=", identifiers rarely do
            identifier, sep, value = item.rpartition("=")
            if not sep or not identifier or not value:
                raise click.UsageError(f"--api-scope takes IDENTIFIER=SCOPE, not {item!r}")
            granted.setdefault(identifier, []).append(value)
        fields["api_scopes"] = granted
    if not fields:
        raise click.UsageError("nothing to change: give at least one option")
    data = _client_data(clients.update_client(client, fields))
    _emit(data, as_json, lambda: _describe_client(data))


@clients_group.command("rotate-secret")
@click.argument("client_id")
@json_option
@with_appcontext
@_domain_errors
def clients_rotate_secret(client_id: str, as_json: bool) -> None:
    """A new secret, shown once; the old one is refused from now on (no grace period)."""
    new = clients.rotate_secret(clients.get_client(None, client_id))
    _emit(
        {"clientId": new.client.client_id, "clientSecret": new.secret},
        as_json,
        lambda: click.echo(f"New client secret (shown once): {new.secret}"),
    )


def _set_status(client_id: str, status: str, as_json: bool) -> None:
    client = clients.update_client(clients.get_client(None, client_id), {"status": status})
    _emit(
        {"clientId": client.client_id, "status": client.status},
        as_json,
        lambda: click.echo(f"Client {client.client_id} is {client.status}"),
    )


@clients_group.command("disable")
@click.argument("client_id")
@json_option
@with_appcontext
@_domain_errors
def clients_disable(client_id: str, as_json: bool) -> None:
    """Stop a client: it gets no tokens, and every token it holds is refused at once."""
    _set_status(client_id, clients.DISABLED, as_json)


@clients_group.command("enable")
@click.argument("client_id")
@json_option
@with_appcontext
@_domain_errors
def clients_enable(client_id: str, as_json: bool) -> None:
    """Let a disabled client get tokens again (the tokens it had stay void)."""
    _set_status(client_id, clients.ACTIVE, as_json)


@clients_group.command("delete")
@click.argument("client_id")
@json_option
@with_appcontext
@_domain_errors
def clients_delete(client_id: str, as_json: bool) -> None:
    """Delete a client: its tokens and consents end at once; its client_id is never reused."""
    clients.delete_client(clients.get_client(None, client_id))
    _emit(
        {"clientId": client_id, "status": clients.DELETED},
        as_json,
        lambda: click.echo(f"Deleted client {client_id}"),
    )


@cli.group("apis")
def apis_group() -> None:
    """Manage an account's own APIs (resource servers)."""


def _api_data(api: Any) -> dict[str, Any]:
    """An API as the apis commands print it (the API's attribute names)."""
    return {
        "id": api.id,
        "accountId": api.account_id,
        "identifier": api.identifier,
        "name": api.name,
        "scopes": {s["value"]: s["description"] for s in api.scopes},
        "tokenLifetime": api.token_lifetime,
    }


@apis_group.command("create")
@click.option("--account", "account_id", required=True)
@click.option("--identifier", required=True, help="The audience of its tokens (an https URI).")
@click.option("--name", help="Default: the identifier.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    metavar="VALUE[=DESCRIPTION]",
    help="One of its scopes (repeat); the description is shown on the consent page.",
)
@click.option("--lifetime", type=int, default=apis.DEFAULT_LIFETIME, show_default=True)
@json_option
@with_appcontext
@_domain_errors
def apis_create(
    account_id: str,
    identifier: str,
    name: str | None,
    scopes: tuple[str, ...],
    lifetime: int,
    as_json: bool,
) -> None:
    """Register an API: tokens for it carry aud = its identifier."""
    account = accounts.get_account(account_id)
    api = apis.create_api(
        account.id,
        identifier,
        name,
        [apis.split_cli_scope(s) for s in scopes],
        lifetime,
    )
    _emit(_api_data(api), as_json, lambda: click.echo(f"Created API {api.id} {api.identifier}"))


@apis_group.command("list")
@click.option("--account", "account_id", required=True)
@json_option
@with_appcontext
@_domain_errors
def apis_list(account_id: str, as_json: bool) -> None:
    """The account's APIs."""
    found = [_api_data(a) for a in apis.list_apis(accounts.get_account(account_id).id)]
    if as_json:
        click.echo(json.dumps({"apis": found}, indent=2))
        return
    for data in found:
        scopes = " ".join(data["scopes"]) or "-"
        click.echo(f"{data['id']}  {data['identifier']}  {data['tokenLifetime']}s  {scopes}")


@apis_group.command("delete")
@click.argument("api_id")
@json_option
@with_appcontext
@_domain_errors
def apis_delete(api_id: str, as_json: bool) -> None:
    """Delete an API and every client's grant of it."""
    apis.delete_api(apis.get_api(None, api_id))
    _emit({"id": api_id}, as_json, lambda: click.echo(f"Deleted API {api_id}"))


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


def _audit_keys(action: str) -> keys.Note:
    """The audit record of a key command, written in the command's own transaction."""
    return lambda kids: audit.record(action, "SigningKey", ",".join(kids))


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
    new = keys.rotate(_ring(), immediate=immediate, audit=_audit_keys("key.rotate"))
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
    info = keys.retire(_ring(), kid, audit=_audit_keys("key.retire"))
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
    info = keys.revoke(ring, kid, audit=_audit_keys("key.revoke"))
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
        imported, skipped = keys.import_file(_ring(), path, audit=_audit_keys("key.import"))
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
    """Delete expired refresh tokens, spent recovery codes, login history older than
    AUTHSERVER_LOGIN_HISTORY_RETENTION_DAYS and audit events older than
    AUTHSERVER_AUDIT_RETENTION_DAYS. Safe to run on several hosts at once."""
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


@cli.group("audit")
def audit_group() -> None:
    """Read the audit log of administrative changes."""


@audit_group.command("list")
@click.option("--account", "account_id", help="One account's events (default: every event).")
@click.option("--target-type", help="e.g. User, Account, OAuthClient, SigningKey.")
@click.option("--target-id")
@click.option("--action", type=click.Choice(audit.ACTIONS))
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@json_option
@with_appcontext
def audit_list(
    account_id: str | None,
    target_type: str | None,
    target_id: str | None,
    action: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The newest audit events first: time, action, actor, target, changed field names."""
    rows, total = audit.events(
        account_id=account_id,
        everything=account_id is None,
        target_type=target_type,
        target_id=target_id,
        action=action,
        size=limit,
    )
    data: list[dict[str, Any]] = [
        {
            "id": row.id,
            "time": row.created_at.isoformat(),
            "action": row.action,
            "actorType": row.actor_type,
            "actorId": row.actor_id,
            "ip": row.ip,
            "accountId": row.account_id,
            "targetType": row.target_type,
            "targetId": row.target_id,
            "changed": row.changed,
        }
        for row in rows
    ]

    def human() -> None:
        for e in data:
            changed = f" [{', '.join(e['changed'])}]" if e["changed"] else ""
            click.echo(
                f"{e['time']} {e['action']} {e['targetType']} {e['targetId']}{changed} "
                f"by {e['actorType']}:{e['actorId'] or '-'}"
                + (f" from {e['ip']}" if e["ip"] else "")
            )
        click.echo(f"{len(data)} of {total} events")

    _emit({"events": data, "totalCount": total}, as_json, human)
