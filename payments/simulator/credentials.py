"""OAuth tokens, STK passwords and initiator SecurityCredentials."""

import base64
import binascii
import hmac
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings

from . import state, traffic
from .ids import access_token, epoch_now
from .validation import DarajaError

CERTS_DIR = Path(__file__).resolve().parent / "certs"
# What the application encrypts the initiator password with while MPESA_ENVIRONMENT=simulator.
CERTIFICATE_PATH = CERTS_DIR / "simulator-cert.pem"
# A throwaway test key: it protects nothing but the simulator's own checks.
PRIVATE_KEY_PATH = CERTS_DIR / "simulator-key.pem"

DEFAULT_INITIATOR_NAME = "testapi"
DEFAULT_INITIATOR_PASSWORD = "Safaricom999!*!"


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


# --- OAuth -----------------------------------------------------------------------------------------


def oauth_generate(*, authorization: str, grant_type: str | None) -> dict[str, str]:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise DarajaError("400.008.01", "Invalid Authentication passed")
    if grant_type != "client_credentials":
        raise DarajaError("400.008.02", "Invalid grant type passed")
    try:
        key, colon, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise DarajaError("400.008.01", "Invalid Authentication passed") from None
    if not colon or not (
        _same(key, settings.MPESA_CONSUMER_KEY) & _same(secret, settings.MPESA_CONSUMER_SECRET)
    ):
        raise DarajaError("400.008.01", "Invalid Authentication passed")
    token = access_token()
    lifetime = traffic.token_seconds()
    minted_at = epoch_now()
    # Minting invalidates the previous token (portal FAQ): only the latest one is stored.
    state.token_store(token, minted_at + lifetime, lifetime)
    traffic.record_mint(minted_at)
    # A string in real traffic, a second short of the lifetime: "3599" for an hour (daraja.md §1).
    return {"access_token": token, "expires_in": str(lifetime - 1)}


def bearer_is_valid(authorization: str) -> bool:
    scheme, _, token = authorization.partition(" ")
    current = state.token_current()
    if scheme.lower() != "bearer" or not token or current is None:
        return False
    return _same(token.strip(), current["token"]) and epoch_now() < current["expires_at"]


# --- M-Pesa Express password ----------------------------------------------------------------------


def stk_password_is_valid(*, shortcode: str, timestamp: str, password: object) -> bool:
    if not isinstance(password, str):
        return False
    expected = base64.b64encode(f"{shortcode}{settings.MPESA_PASSKEY}{timestamp}".encode()).decode()
    return _same(password, expected)


# --- Initiator SecurityCredential ------------------------------------------------------------------


@lru_cache(maxsize=1)
def _private_key() -> rsa.RSAPrivateKey:
    return serialization.load_pem_private_key(PRIVATE_KEY_PATH.read_bytes(), password=None)


def initiator_is_valid(*, initiator: str, security_credential: str) -> bool:
    """base64(RSA PKCS#1 v1.5 (password)) with the simulator certificate, for the configured initiator.

    A wrong credential is accepted synchronously; the async Result then carries 2001 (as real M-Pesa).
    """
    expected_name = getattr(settings, "MPESA_INITIATOR_NAME", DEFAULT_INITIATOR_NAME)
    expected_password = getattr(settings, "MPESA_INITIATOR_PASSWORD", DEFAULT_INITIATOR_PASSWORD)
    try:
        ciphertext = base64.b64decode(security_credential, validate=True)
        password = _private_key().decrypt(ciphertext, padding.PKCS1v15()).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return False
    return _same(initiator, expected_name) & _same(password, expected_password)
