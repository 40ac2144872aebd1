"""API tokens: issue (the raw token exists only in the return value), authenticate, revoke."""

import datetime as dt
import logging
import secrets
from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from audit.models import AuditAction
from audit.services import audit_record, changes_between, field_values
from audit.tracking import untracked
from backoffice.exceptions import (
    ApiTokenExpired,
    ApiTokenInvalid,
    ApiTokenPermissionDenied,
    ApiTokenRefused,
    ApiTokenScopeMissing,
)
from backoffice.models import TOKEN_PREFIX, ApiScope, ApiToken, hash_token

logger = logging.getLogger(__name__)

# last_used_at is written at most this often per token: one UPDATE a minute, not one per request.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
MAX_TOKEN_LENGTH = 200
# What an audit record of a token keeps: never the token or its hash.
TOKEN_AUDIT_FIELDS = ("name", "key_prefix", "scopes", "expires_at", "revoked_at")


def _clean_scopes(scopes: Iterable[str]) -> list[str]:
    wanted = {str(scope) for scope in ([scopes] if isinstance(scopes, str) else scopes)}
    unknown = sorted(wanted - set(ApiScope.values))
    if unknown:
        raise ApiTokenInvalid(
            f"Unknown scope {', '.join(map(repr, unknown))}; known scopes: {', '.join(ApiScope.values)}."
        )
    if not wanted:
        raise ApiTokenInvalid(f"Give at least one scope ({', '.join(ApiScope.values)}).")
    return [scope for scope in ApiScope.values if scope in wanted]


def _expiry(*, expires_at: dt.datetime | None, expires_days: int | None) -> dt.datetime | None:
    if expires_at is not None and expires_days is not None:
        raise ApiTokenInvalid("Give an expiry date or a number of days, not both.")
    now = timezone.now()
    if expires_days is not None:
        if expires_days < 1:
            raise ApiTokenInvalid("A token lives at least one day (--expires-days 1 or more).")
        return now + dt.timedelta(days=expires_days)
    if expires_at is not None:
        if timezone.is_naive(expires_at):
            raise ApiTokenInvalid("The expiry needs a time zone.")
        if expires_at <= now:
            raise ApiTokenInvalid("The expiry is in the past.")
    return expires_at


@transaction.atomic
def api_token_issue(
    *,
    username: str,
    name: str = "",
    staff: bool = False,
    scopes: Iterable[str] = (ApiScope.ORDERS,),
    expires_at: dt.datetime | None = None,
    expires_days: int | None = None,
    actor=None,
    issued_by: str = "",
) -> tuple[ApiToken, str, bool]:
    """A new token for `username` (created if needed). The raw token exists only in the return value.

    `scopes` say what the token may do (default: the storefront's `orders`); `expires_at` or
    `expires_days` end it (neither: it lasts until revoked). `staff` applies only to a user created here.
    Every token issued is recorded in the audit trail: by `actor` (the person, when signed in) or, from a
    shell, by what `issued_by` names (e.g. "manage.py issue_api_token").
    """
    clean_scopes = _clean_scopes(scopes)
    expiry = _expiry(expires_at=expires_at, expires_days=expires_days)
    user_model = get_user_model()
    # Created in one insert (unusable password, staff or not), so the user's own record is one creation.
    user, created = user_model.objects.get_or_create(
        username=username, defaults={"password": make_password(None), "is_staff": staff}
    )
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with untracked(ApiToken):  # recorded below as issued, with its user
        token = ApiToken.objects.create(
            user=user,
            name=name,
            key_prefix=raw[:10],
            key_hash=hash_token(raw),
            scopes=clean_scopes,
            expires_at=expiry,
        )
    data = {"user": user.get_username(), "user_created": created}
    if issued_by:
        data["by"] = issued_by
    audit_record(
        action=AuditAction.TOKEN_ISSUED,
        actor=actor,
        obj=token,
        changes=changes_between({}, field_values(token, TOKEN_AUDIT_FIELDS)),
        data=data,
    )
    return token, raw, created


def api_token_authenticate(*, raw_token: str, scope: str | None) -> AbstractBaseUser:
    """The user a bearer token acts for, when the token may be used for `scope`.

    Unknown, revoked and inactive-user tokens are refused alike (nothing to learn about tokens one does
    not hold); an expired token says so; a valid token without `scope` is refused naming the scope.
    `scope=None` is an endpoint that declared no scope: no token may use it.
    """
    if not raw_token or len(raw_token) > MAX_TOKEN_LENGTH:
        raise ApiTokenRefused("A valid API token is required (Authorization: Bearer).")
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=hash_token(raw_token), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        raise ApiTokenRefused("A valid API token is required (Authorization: Bearer).")
    now = timezone.now()
    if token.is_expired(now=now):
        raise ApiTokenExpired(
            f"This API token expired at {token.expires_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC; "
            "ask for a new one."
        )
    if scope is None:
        raise ApiTokenScopeMissing(
            "This endpoint declares no token scope, so no token may use it.", scope=None
        )
    if not token.has_scope(scope):
        raise ApiTokenScopeMissing(
            f"This API token does not have the '{scope}' scope this endpoint needs.", scope=scope
        )
    if not token.last_used_at or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


@transaction.atomic
def api_token_revoke(*, token_id: int, actor) -> ApiToken:
    """Revoke a token for good (its next request is a 401). Revoking it again changes nothing."""
    if actor is None or not actor.is_active or not actor.has_perm("backoffice.change_apitoken"):
        raise ApiTokenPermissionDenied("You are not allowed to revoke API tokens.")
    token = ApiToken.objects.select_for_update().filter(pk=token_id).first()
    if token is None:
        raise ApiTokenInvalid(f"There is no API token #{token_id}.")
    if token.revoked_at is None:
        before = field_values(token, TOKEN_AUDIT_FIELDS)
        token.revoked_at = timezone.now()
        with untracked(ApiToken):  # recorded below as revoked
            token.save(update_fields=["revoked_at"])
        audit_record(
            action=AuditAction.TOKEN_REVOKED,
            actor=actor,
            obj=token,
            changes=changes_between(before, field_values(token, TOKEN_AUDIT_FIELDS)),
            data={"user": token.user.get_username()},
        )
        logger.info("API token #%s of user #%s revoked by user #%s", token.pk, token.user_id, actor.pk)
    return token
