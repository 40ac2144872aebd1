"""Recipients as they may appear in lists and logs: enough to recognise, not enough to contact."""

from common.masking import mask_email, mask_msisdn


def mask_recipient(channel: str, recipient: str) -> str:
    return mask_email(recipient) if channel == "email" else mask_msisdn(recipient)
