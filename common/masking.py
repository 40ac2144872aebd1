"""Contact details as they may appear in lists and logs: enough to recognise, not enough to contact."""

import re

from common.phone import mask_msisdn

__all__ = ["mask_email", "mask_msisdn", "mask_phones_in"]

# A Kenyan mobile number inside free text (a callback body, a JSON document): 254 or 0, then 7 or 1 and eight
# digits, not part of a longer run of digits (Daraja timestamps, CheckoutRequestIDs).
_MSISDN_IN_TEXT = re.compile(r"(?<!\d)(?:\+?254|0)[17]\d{8}(?!\d)")


def mask_email(address: str) -> str:
    """jane.doe@example.com -> j*******@example.com"""
    local, at, domain = (address or "").partition("@")
    if not at:
        return "*" * len(local)
    return f"{local[:1]}{'*' * max(len(local) - 1, 3)}@{domain}"


def mask_phones_in(text: str) -> str:
    """'"PhoneNumber": 254708374149' -> '"PhoneNumber": 2547*****149'; everything else is kept."""
    return _MSISDN_IN_TEXT.sub(lambda match: mask_msisdn(match.group()), text or "")
