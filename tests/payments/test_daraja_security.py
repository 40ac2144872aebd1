from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from payments.daraja.security import SecurityCredentialError, initiator_configured, security_credential
from tests.payments.refunds_support import decrypt_credential

CERT = str(Path(__file__).resolve().parents[2] / "payments" / "simulator" / "certs" / "simulator-cert.pem")


def test_credential_is_the_initiator_password_rsa_pkcs1v15_encrypted_with_the_certificate(settings):
    settings.MPESA_SECURITY_CREDENTIAL = ""
    settings.MPESA_INITIATOR_PASSWORD = "Safaricom999!*!"
    settings.MPESA_CERTIFICATE_PATH = CERT

    first, second = security_credential(), security_credential()

    assert decrypt_credential(first) == decrypt_credential(second) == "Safaricom999!*!"
    assert first != second  # PKCS#1 v1.5 padding is random: the password never shows in the ciphertext
    assert "Safaricom999" not in first


def test_der_certificates_as_safaricom_ships_them_work(settings, tmp_path):
    certificate = x509.load_pem_x509_certificate(Path(CERT).read_bytes())
    der = tmp_path / "ProductionCertificate.cer"
    der.write_bytes(certificate.public_bytes(serialization.Encoding.DER))
    settings.MPESA_SECURITY_CREDENTIAL = ""
    settings.MPESA_INITIATOR_PASSWORD = "s3cret#pass"
    settings.MPESA_CERTIFICATE_PATH = str(der)

    assert decrypt_credential(security_credential()) == "s3cret#pass"


def test_a_ready_made_security_credential_is_used_as_given(settings):
    settings.MPESA_SECURITY_CREDENTIAL = "ALREADY-ENCRYPTED=="
    settings.MPESA_INITIATOR_PASSWORD = ""
    settings.MPESA_CERTIFICATE_PATH = ""

    assert security_credential() == "ALREADY-ENCRYPTED=="


@pytest.mark.parametrize(
    ("password", "path", "message"),
    [
        ("", CERT, "MPESA_INITIATOR_PASSWORD"),
        ("pw", "", "MPESA_CERTIFICATE_PATH"),
        ("pw", "/nonexistent/cert.cer", "Cannot read"),
        ("pw", __file__, "not a PEM or DER"),
    ],
)
def test_missing_or_broken_configuration_is_a_clear_error(settings, password, path, message):
    settings.MPESA_SECURITY_CREDENTIAL = ""
    settings.MPESA_INITIATOR_PASSWORD = password
    settings.MPESA_CERTIFICATE_PATH = path

    with pytest.raises(SecurityCredentialError, match=message):
        security_credential()


def test_an_initiator_name_is_required(settings):
    settings.MPESA_INITIATOR_NAME = ""

    with pytest.raises(SecurityCredentialError, match="MPESA_INITIATOR_NAME"):
        initiator_configured()
