"""The wheel: it carries every template, stylesheet, translation and data file, and once
installed (not editable) it serves the pages and renders mail from any directory."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parents[1]
GUNICORN_CONF = REPO / "deploy" / "gunicorn.conf.py"
# Folders the build maps into the package: the repository's top level -> inside the wheel.
MAPPED = {"templates": "authserver/templates", "static": "authserver/static"}


def _files(root: Path) -> list[str]:
    """Every file under `root` as a /-separated relative path, without bytecode caches."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 120) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built once for this module (the backend from the running venv)."""
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    flags = ["--no-deps", "--no-build-isolation", "--no-index"]
    _run([*pip, "wheel", *flags, "-w", str(out), str(REPO)], REPO, dict(os.environ))
    (built,) = out.glob("authserver-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (--no-deps); the dependencies come from the
    running venv's site-packages through a .pth line. Such a line only adds the folder to
    sys.path: that folder's own .pth files, among them the editable install's import hook
    for the checkout, are not run, so only the installed wheel can provide `authserver`."""
    venv = tmp_path_factory.mktemp("venv")
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", "--without-pip", str(venv)], venv, dict(os.environ))
    python = venv / "bin" / "python"
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        venv,
        _clean_env(),
    ).strip()
    shared = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    Path(purelib, "shared-deps.pth").write_text("".join(f"{p}\n" for p in shared))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        venv,
        _clean_env(),
    )
    return venv


def _clean_env(**settings: str) -> dict[str, str]:
    """The environment without anything pointing at the checkout or configuring the app."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "FLASK_APP") and not k.startswith("AUTHSERVER_")
    }
    return {**env, "PYTHONDONTWRITEBYTECODE": "1", **settings}


def test_wheel_carries_every_template_stylesheet_translation_and_data_file(wheel: Path) -> None:
    """The wheel holds every file of authserver/, templates/ and static/ (the latter two
    inside the package), and nothing else but its metadata."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    expected = {f"authserver/{f}" for f in _files(REPO / "authserver")}
    for top, inside in MAPPED.items():
        expected |= {f"{inside}/{f}" for f in _files(REPO / top)}
    assert sorted(expected - names) == []
    assert sorted(n for n in names - expected if not n.startswith("authserver-0")) == []
    # The ones the server cannot start or speak without, by name (so a renamed folder
    # cannot make the comparison above pass on nothing).
    for name in (
        "authserver/templates/base.html",
        "authserver/templates/pages/login.html",
        "authserver/templates/email/identity.email_verification_token.create.success.txt",
        "authserver/templates/sms/identity.otp.create.success.txt",
        "authserver/static/style.css",
        "authserver/platform/translations/fr/LC_MESSAGES/messages.po",
        "authserver/platform/translations/es/LC_MESSAGES/messages.po",
        "authserver/identity/data/common-passwords.txt.gz",
        "authserver/platform/migrations/alembic.ini",
        "authserver/platform/migrations/env.py",
        "authserver/platform/migrations/script.py.mako",
        "authserver/platform/migrations/versions/0001_initial_schema.py",
    ):
        assert name in names


# Run by the installed venv's python: where the package and its folders are, and a French
# email rendered from the shipped templates and translations, on a user of the database.
MAIL = """
import json, os, sys
from authserver import create_app
from authserver.identity import accounts, users
from authserver.platform import keys
instance = os.environ.pop("AUTHSERVER_INSTANCE_PATH")
default_instance = create_app(require_keys=False).instance_path
os.environ["AUTHSERVER_INSTANCE_PATH"] = instance
bootstrap = create_app(require_keys=False)
with bootstrap.app_context():
    keys.rotate(bootstrap.extensions["authserver.keys"])  # what `keys rotate` does
app = create_app()
with app.app_context():
    pair = accounts.create_account("Acme", default_locale="fr")
    user = users.create_user(account=pair.live, username="ana", password="correct horse 42",
                             role="customer", email="ana@example.com")
    notifier = app.extensions["authserver.notifications"]
    event = "identity.email_verification_token.create.success"
    (mail,) = notifier.compose(event, {"user": user, "account": pair.live, "token": "tok123"})
print(json.dumps({"file": sys.modules["authserver"].__file__, "templates": app.template_folder,
                  "static": app.static_folder, "default_instance": default_instance,
                  "subject": mail.subject, "text": mail.text, "locale": mail.locale}))
"""


def test_installed_wheel_serves_login_and_stylesheet_and_renders_mail(
    installed: Path, tmp_path: Path
) -> None:
    """From another directory, the installed wheel (not the checkout) migrates a database,
    serves /login in French and its stylesheet under gunicorn, and renders a French email."""
    python, elsewhere = str(installed / "bin" / "python"), tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "instance").mkdir(mode=0o700)  # the SQLite file goes here
    env = _clean_env(
        AUTHSERVER_SECRET_KEY="s" * 40,
        AUTHSERVER_INSTANCE_PATH=str(tmp_path / "instance"),
        AUTHSERVER_MAIL_URL="memory:",
        AUTHSERVER_SMS_URL="memory:",
        AUTHSERVER_ARGON2_MEMORY_COST="1024",
        AUTHSERVER_ARGON2_TIME_COST="1",
    )
    # The wheel's console script runs the shipped migrations (one process less: the
    # signing key is made by the script below).
    _run([str(installed / "bin" / "authserver"), "db", "upgrade"], elsewhere, env)
    found = json.loads(_run([python, "-c", MAIL], elsewhere, env))
    site, package = installed / "lib", Path(found["file"]).parent
    assert package.is_relative_to(site), found
    assert found["templates"] == str(package / "templates")
    assert found["static"] == str(package / "static")
    # Without AUTHSERVER_INSTANCE_PATH: under the venv, but not inside site-packages.
    assert Path(found["default_instance"]).is_relative_to(installed), found
    assert not Path(found["default_instance"]).is_relative_to(site), found
    assert found["locale"] == "fr"
    assert found["subject"] == "Confirmez votre adresse e-mail"
    assert "/verify-email?token=tok123" in found["text"]

    port = _free_port()
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [
                python,
                "-m",
                "gunicorn",
                "-c",
                str(GUNICORN_CONF),
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                "1",
                "--threads",
                "2",
                "authserver:create_app()",
            ],
            cwd=elsewhere,
            env={**env, "AUTHSERVER_ISSUER": f"http://127.0.0.1:{port}"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_up(base, server, log)
        status, headers, page = _get(base + "/login", {"Accept-Language": "fr"})
        assert status == 200, page
        assert "Se connecter" in page.decode()
        href = re.search(r'<link rel="stylesheet" href="([^"]+)"', page.decode())
        assert href, page
        status, headers, css = _get(base + href.group(1))
        assert status == 200
        assert headers["Content-Type"].startswith("text/css")
        assert css == (REPO / "static" / "style.css").read_bytes()
    finally:
        server.terminate()
        server.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback only
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status), dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), dict(exc.headers), exc.read()


def _wait_up(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, f"gunicorn exited:\n{log.read_text()}"
        try:
            if _get(base + "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"gunicorn did not come up:\n{log.read_text()}")
