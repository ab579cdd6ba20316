"""Schemathesis over /v1/openapi.json, as an owner, a plain member and a guest: every
check, zero failures. Not part of `make test` (the name is not test_*); `make api-fuzz`
runs it. The app serves on a loopback port from this test's database and Redis prefix.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from factories import World, make_user
from flask import Flask
from oauth_helpers import login
from verification_helpers import guest_token
from werkzeug.serving import make_server

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "schemathesis.toml"
SEED = int(os.environ.get("FUZZ_SEED", "20261207"))
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))  # per operation and phase; ~2 minutes
# Operations left out per role, and why: the owner deleting the account (or minting a new
# publishable token, which stops the guest's) would end the run for everyone after it.
OWNER_SKIPS = ("deleteAccount", "regeneratePublishableToken")


@pytest.fixture
def base_url(app: Flask) -> Iterator[str]:
    """The app on a loopback port, for as long as the test runs."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def _schemathesis(base_url: str, workdir: Path, token: str, *skips: str) -> subprocess.Popen[str]:
    """Start schemathesis as the token's holder (the roles run side by side); its cache
    goes to `workdir`, not into the checkout."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(CONFIG),
        "run",
        f"{base_url}/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--seed",
        str(SEED),
        "--max-examples",
        str(EXAMPLES),
        "--workers",
        "1",
        "--no-color",
        "--generation-database",
        "none",
    ]
    for operation_id in skips:
        command += ["--exclude-operation-id", operation_id]
    workdir.mkdir()
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "fuzz_hooks",
        "PYTHONPATH": os.pathsep.join([str(root), str(HERE)]),
    }
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=workdir
    )


def test_schemathesis_finds_nothing_for_any_role(
    app, client, world: World, base_url: str, tmp_path: Path
):
    """Schemathesis with all checks finds no 5xx, undocumented status or schema drift as
    a guest, a customer and an owner."""
    make_user(app, world.live_id, "fuzz-member", role="customer")
    member = login(client, world, username="fuzz-member", client_id=world.public_id)
    owner = login(client, world, username="alice", client_id=world.public_id)
    runs = {
        "guest": _schemathesis(base_url, tmp_path / "guest", guest_token(client, world.live_prt)),
        "member": _schemathesis(base_url, tmp_path / "member", member["access_token"]),
        "owner": _schemathesis(base_url, tmp_path / "owner", owner["access_token"], *OWNER_SKIPS),
    }
    outputs = {role: run.communicate(timeout=900)[0] for role, run in runs.items()}
    failed = [role for role, run in runs.items() if run.returncode != 0]
    for role, run in runs.items():
        print(f"===== schemathesis as {role}: exit {run.returncode}\n{outputs[role]}")
    assert not failed, f"schemathesis failed as: {', '.join(failed)}"
