"""A software passkey authenticator for the HTTP and domain tests (the browser tests use
Chromium's virtual one): it answers our WebAuthn options the way a platform
authenticator does, per the WebAuthn spec (P-256 key, "none" attestation, COSE key in
CBOR, signatures over authenticatorData + SHA-256(clientDataJSON)). It stands in for the
device outside our server; none of it is our server's code."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from factories import PASSWORD
from flask import Flask
from oauth_helpers import b64url, unb64url

from authserver.identity import passkeys
from authserver.platform.extensions import db
from authserver.platform.models import User

ISSUER = "http://localhost:5000"  # browsers (and our pages) refuse passkeys on IP origins
RP_ID = "localhost"

UP, UV, AT = 0x01, 0x04, 0x40  # authenticatorData flags: user present, verified, attested


class SoftAuthenticator:
    """One passkey on one device: register once, then sign in any number of times."""

    def __init__(self, origin: str = ISSUER, rp_id: str = RP_ID):
        self.origin = origin
        self.rp_id = rp_id
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(16)
        self.sign_count = 0
        self.user_handle: bytes | None = None

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        data = {"type": kind, "challenge": challenge, "origin": origin or self.origin}
        return json.dumps(data).encode()

    def _auth_data(self, flags: int, rp_id: str | None, attested: bytes = b"") -> bytes:
        rp_hash = hashlib.sha256((rp_id or self.rp_id).encode()).digest()
        return rp_hash + bytes([flags]) + self.sign_count.to_bytes(4, "big") + attested

    def register(self, options: str | dict[str, Any], *, origin: str | None = None) -> str:
        """The answer to navigator.credentials.create() for these options (JSON)."""
        opts = json.loads(options) if isinstance(options, str) else options
        self.user_handle = unb64url(opts["user"]["id"])
        numbers = self.key.public_key().public_numbers()
        cose = cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )
        attested = (
            bytes(16) + len(self.credential_id).to_bytes(2, "big") + self.credential_id + cose
        )
        auth_data = self._auth_data(UP | UV | AT, None, attested)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", opts["challenge"], origin)
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "attestationObject": b64url(attestation),
                    "transports": ["internal"],
                },
                "clientExtensionResults": {},
            }
        )

    def sign_in(
        self,
        options: str | dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        verified: bool = True,
        count: int | None = None,
    ) -> str:
        """The answer to navigator.credentials.get(); the counter moves on by one unless
        `count` sets it (a clone's)."""
        opts = json.loads(options) if isinstance(options, str) else options
        self.sign_count = self.sign_count + 1 if count is None else count
        auth_data = self._auth_data(UP | (UV if verified else 0), rp_id)
        client_data = self._client_data("webauthn.get", opts["challenge"], origin)
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature),
                    "userHandle": b64url(self.user_handle or b""),
                },
                "clientExtensionResults": {},
            }
        )


def user_of(user_id: str) -> User:
    """The user's row (inside an app context)."""
    user = db.session.get(User, user_id)
    assert user is not None
    return user


def enrol(
    app: Flask,
    user_id: str,
    name: str = "Laptop",
    otp: str | None = None,
    recovery_code: str | None = None,
) -> SoftAuthenticator:
    """What the security page does: prove with the password, ask for options, answer
    them with a new authenticator, keep the passkey. `app` needs a named-host issuer;
    `otp` (or `recovery_code`) is the proof of a user with a code method."""
    device = SoftAuthenticator()
    with app.app_context():
        user = user_of(user_id)
        passkeys.prove_for_enrolment(user, password=PASSWORD, otp=otp, recovery_code=recovery_code)
        options = passkeys.start_registration(user)
        passkeys.finish_registration(user, device.register(options), name)
    return device
