"""The initiator's SecurityCredential for Reversal, B2C and Transaction Status (daraja.md §6.1).

SecurityCredential = base64(RSA-encrypt(initiator password)) with the M-Pesa public-key certificate of the
environment, PKCS#1 v1.5 padding. Sending the plain password is answered with ResultCode 2001 ("wrong
algorithm or certificate"). MPESA_SECURITY_CREDENTIAL, when set, is used as given (already encrypted, e.g.
from the Daraja portal), so the password need not be on the server at all.
"""

import base64
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings


class SecurityCredentialError(ValueError):
    """The initiator credential cannot be produced from the configuration."""


def load_public_key(data: bytes) -> rsa.RSAPublicKey:
    """An RSA public key from a certificate (PEM or DER, as Safaricom ships .cer files) or a bare PEM key."""
    loaders = (
        lambda raw: x509.load_pem_x509_certificate(raw).public_key(),
        lambda raw: x509.load_der_x509_certificate(raw).public_key(),
        serialization.load_pem_public_key,
        serialization.load_der_public_key,
    )
    for load in loaders:
        try:
            key = load(data)
        except (ValueError, UnsupportedAlgorithm):
            continue
        if isinstance(key, rsa.RSAPublicKey):
            return key
        raise SecurityCredentialError("The M-Pesa certificate does not hold an RSA public key.")
    raise SecurityCredentialError("The M-Pesa certificate is not a PEM or DER certificate or public key.")


def encrypt_initiator_password(password: str, public_key: rsa.RSAPublicKey) -> str:
    return base64.b64encode(public_key.encrypt(password.encode(), padding.PKCS1v15())).decode()


def security_credential() -> str:
    """MPESA_SECURITY_CREDENTIAL, or MPESA_INITIATOR_PASSWORD encrypted with MPESA_CERTIFICATE_PATH."""
    if settings.MPESA_SECURITY_CREDENTIAL:
        return settings.MPESA_SECURITY_CREDENTIAL
    password = settings.MPESA_INITIATOR_PASSWORD
    path = settings.MPESA_CERTIFICATE_PATH
    if not password or not path:
        raise SecurityCredentialError(
            "Set MPESA_SECURITY_CREDENTIAL, or MPESA_INITIATOR_PASSWORD with MPESA_CERTIFICATE_PATH."
        )
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SecurityCredentialError(f"Cannot read MPESA_CERTIFICATE_PATH: {exc.strerror}.") from exc
    # A fresh encryption per call: PKCS#1 v1.5 is randomised, and nothing secret is kept in memory.
    return encrypt_initiator_password(password, load_public_key(data))


def initiator_configured() -> None:
    """Raise SecurityCredentialError unless an initiator name and a credential can be produced."""
    if not settings.MPESA_INITIATOR_NAME:
        raise SecurityCredentialError("Set MPESA_INITIATOR_NAME (the API operator for refunds).")
    security_credential()
