"""Kenyan mobile numbers in the form Daraja wants: 2547XXXXXXXX or 2541XXXXXXXX."""

import phonenumbers


class InvalidPhoneNumber(ValueError):
    pass


def normalize_msisdn(raw: str) -> str:
    """07.., 01.., +254.., 254.. or 7.. (spaces, dashes allowed) -> 254 + 9 digits, or InvalidPhoneNumber."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidPhoneNumber("A phone number is required.")
    cleaned = raw.strip()
    if any(ch.isalpha() for ch in cleaned):
        raise InvalidPhoneNumber("Phone numbers contain digits only.")
    try:
        number = phonenumbers.parse(cleaned, "KE")
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber("Not a phone number.") from exc
    national = str(number.national_number)
    if (
        number.country_code != 254
        or len(national) != 9
        or national[0] not in "71"
        or not phonenumbers.is_valid_number(number)
        or phonenumbers.number_type(number) != phonenumbers.PhoneNumberType.MOBILE
    ):
        raise InvalidPhoneNumber("Use a Kenyan mobile number such as 0712345678 or +254712345678.")
    return f"254{national}"


def mask_msisdn(msisdn: str) -> str:
    """2547******149: enough to recognise a number in logs and lists, not enough to call it."""
    if not msisdn:
        return ""
    digits = str(msisdn)
    if len(digits) <= 7:
        return "*" * len(digits)
    return f"{digits[:4]}{'*' * (len(digits) - 7)}{digits[-3:]}"


def e164(msisdn: str) -> str:
    return f"+{msisdn}"


def visible_digits_match(masked: str, msisdn: str) -> bool:
    """Whether a possibly masked number ("0715***123", "25470****149", 254708374149) can be `msisdn`.

    Safaricom masks customer numbers in merchant notifications (daraja.md §3): only the digits it shows
    are compared, position by position, once both are written as 254 + 9 digits.
    """
    text = str(masked or "").strip().lstrip("+").replace(" ", "")
    if text.startswith("0"):
        text = "254" + text[1:]
    elif len(text) == 9 and text[:1] in "71*":
        text = "254" + text
    if not msisdn or len(text) != len(msisdn):
        return False
    return all(shown == actual for shown, actual in zip(text, msisdn, strict=True) if shown.isdigit())
