import secrets

from django.contrib.auth import get_user_model
from django.db import transaction

from backoffice.models import TOKEN_PREFIX, ApiToken, hash_token


@transaction.atomic
def api_token_issue(*, username: str, name: str = "", staff: bool = False) -> tuple[ApiToken, str, bool]:
    """A new token for `username` (created if needed). The raw token exists only in the return value."""
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.is_staff = staff
        user.save()
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, key_prefix=raw[:10], key_hash=hash_token(raw))
    return token, raw, created
