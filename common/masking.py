"""Contact details as they may appear in lists and logs: enough to recognise, not enough to contact."""

from common.phone import mask_msisdn

__all__ = ["mask_email", "mask_msisdn"]


def mask_email(address: str) -> str:
    """jane.doe@example.com -> j*******@example.com"""
    local, at, domain = (address or "").partition("@")
    if not at:
        return "*" * len(local)
    return f"{local[:1]}{'*' * max(len(local) - 1, 3)}@{domain}"
