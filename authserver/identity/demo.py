"""`authserver demo`: signing key, database schema and demo data for a local quick start.

The data is made once; its summary (with the generated passwords and client secret) is
kept in instance/demo.json (mode 0600) so every `make run` can print it again.
"""

from __future__ import annotations

import json
import os
from typing import Any

from flask import Flask
from flask_migrate import upgrade

from authserver.identity import accounts, clients, users
from authserver.platform import keys
from authserver.platform.extensions import db
from authserver.platform.models import Account, AuthMethod, Role
from authserver.platform.security import random_token

DEMO_REDIRECT = "http://127.0.0.1:8000/callback"
DEMO_APP_REDIRECT = "com.example.demo:/callback"


def ensure_demo(app: Flask) -> dict[str, Any]:
    """Make whatever is missing and return the demo summary."""
    upgrade()
    ring = app.extensions["authserver.keys"]
    if not keys.list_keys(ring):
        legacy = app.config["SIGNING_KEYS_FILE"]
        # A checkout from before keys moved into the database keeps its key (and tokens).
        if os.path.exists(legacy):
            keys.import_file(ring, legacy)
        else:
            keys.rotate(ring)
    path = os.path.join(app.instance_path, "demo.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            summary: dict[str, Any] = json.load(fh)
        if db.session.get(Account, summary["account"]["id"]) is not None:
            return _with_urls(app, summary)
    summary = _create(app)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
    return _with_urls(app, summary)


def _create(app: Flask) -> dict[str, Any]:
    pair = accounts.create_account("Demo Store", company_name="Demo Store Inc.")
    admin_password = random_token(12)
    user_password = random_token(12)
    admin = users.create_user(
        account=pair.live,
        username="admin",
        password=admin_password,
        role=Role.ADMINISTRATOR,
        email="admin@example.com",
        email_verified=True,
        name="Demo Administrator",
    )
    user = users.create_user(
        account=pair.live,
        username="demo",
        password=user_password,
        role=Role.CUSTOMER,
        email="demo@example.com",
        email_verified=True,
        auth_method=AuthMethod.TFA_EMAIL,
        name="Demo User",
    )
    web = clients.create_client(
        pair.live,
        "Demo Web App",
        redirect_uris=[DEMO_REDIRECT],
        post_logout_redirect_uris=["http://127.0.0.1:8000/"],
        # Every grant the README's examples use: its password, refresh and client
        # credentials calls, and the browser flow.
        grant_types=["authorization_code", "refresh_token", "password", "client_credentials"],
    )
    mobile = clients.create_client(
        pair.live,
        "Demo Mobile App",
        public=True,
        redirect_uris=[DEMO_APP_REDIRECT, DEMO_REDIRECT],
        # A first-party native app: the browser flow, or the password grant with its OTP step.
        grant_types=["authorization_code", "refresh_token", "password"],
    )
    return {
        "account": pair.summary(),
        "users": [
            {
                "id": admin.id,
                "username": "admin",
                "password": admin_password,
                "role": Role.ADMINISTRATOR,
                "authMethod": admin.auth_method,
            },
            {
                "id": user.id,
                "username": "demo",
                "password": user_password,
                "role": Role.CUSTOMER,
                "authMethod": user.auth_method,
                "email": user.email,
            },
        ],
        "clients": [
            {
                "name": "Demo Web App",
                "clientId": web.client.client_id,
                "clientSecret": web.secret,
                "redirectUris": web.client.redirect_uris,
            },
            {
                "name": "Demo Mobile App",
                "clientId": mobile.client.client_id,
                "public": True,
                "redirectUris": mobile.client.redirect_uris,
            },
        ],
    }


def _with_urls(app: Flask, summary: dict[str, Any]) -> dict[str, Any]:
    issuer = app.config["ISSUER"]
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    urls = {"issuer": issuer, "health": f"{issuer}/healthz", "ready": f"{issuer}/readyz"}
    for name, path in (
        ("discovery", "/.well-known/openid-configuration"),
        ("token", "/oauth/token"),
        ("login", "/login"),
    ):
        if path in rules:  # appears as the later parts of the product land
            urls[name] = issuer + path
    if "login" in urls:  # the demo users belong to the demo account: a bare /login is global
        urls["login"] += f"?aid={summary['account']['id']}"
    summary = {**summary, "urls": urls}
    if "token" in urls:
        web = summary["clients"][0]
        admin = summary["users"][0]
        summary["curl"] = (
            f"curl -s -u '{web['clientId']}:{web['clientSecret']}' {urls['token']}"
            f" -d grant_type=password -d username={admin['username']}"
            f" -d 'password={admin['password']}' -d scope=aid:{summary['account']['id']}"
        )
    return summary


def describe(summary: dict[str, Any]) -> str:
    """A readable block for the terminal."""
    account = summary["account"]
    lines = ["", "authserver demo data", "====================", ""]
    lines += [f"  {name:<10} {url}" for name, url in summary["urls"].items()]
    lines += [
        "",
        f"  account    {account['name']}  id={account['id']}",
        f"             test account id={account['testAccountId']}",
        f"             publishable token (live) {account['publishableTokens']['live']}",
        f"             publishable token (test) {account['publishableTokens']['test']}",
        "",
    ]
    for user in summary["users"]:
        lines.append(
            f"  user       {user['username']} / {user['password']}"
            f"  (role {user['role']}, login {user['authMethod']})"
        )
    lines.append("")
    for client in summary["clients"]:
        secret = (
            f"  secret {client['clientSecret']}" if client.get("clientSecret") else "  (public)"
        )
        lines.append(f"  client     {client['name']}: {client['clientId']}{secret}")
    web = summary["clients"][0]
    admin, demo_user = summary["users"][0], summary["users"][1]
    lines += [
        "",
        "  For the README's examples, paste:",
        f"    export CLIENT_ID={web['clientId']} CLIENT_SECRET={web['clientSecret']}",
        f"    export AID={account['id']} TEST_AID={account['testAccountId']}"
        f" PRT={account['publishableTokens']['live']}",
        f"    export ADMIN_PASSWORD='{admin['password']}' DEMO_PASSWORD='{demo_user['password']}'",
    ]
    if "curl" in summary:
        lines += ["", "  Password grant:", f"    {summary['curl']}"]
    lines += [
        "",
        "  Mail and SMS go to instance/outbox/ and this console.",
        "  These details are kept in instance/demo.json.",
        "",
    ]
    return "\n".join(lines)
