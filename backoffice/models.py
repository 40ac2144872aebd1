"""API tokens: one user may hold several; only a hash is stored. Each token carries the scopes it may use."""

import datetime as dt
import hashlib

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "bo_"


def hash_token(raw_token: str) -> str:
    return hashlib.sha256(raw_token.encode()).hexdigest()


class ApiScope(models.TextChoices):
    """What a token may do. backoffice/api.py mounts each router with the one scope its endpoints need.

    A token never does more than its user may: the refund endpoints also check the user's permissions.
    """

    ORDERS = "orders", "Storefront: place and read orders, payment status, retry, ask M-Pesa now"
    REFUNDS = "refunds", "Staff refunds: request and list refunds (the user's own permissions apply)"
    REPORTS = "reports", "Staff reports: collections and success-rate figures (the user's permissions apply)"


class ApiTokenStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"


def validate_scopes(value) -> None:
    # Read at call time, so a scope added to ApiScope needs no migration.
    if not isinstance(value, list) or not value:
        raise ValidationError("Give at least one scope.")
    unknown = [scope for scope in value if scope not in ApiScope.values]
    if unknown:
        raise ValidationError(
            "Unknown scope %(unknown)s; known: %(known)s.",
            params={"unknown": ", ".join(map(str, unknown)), "known": ", ".join(ApiScope.values)},
        )
    if len(set(value)) != len(value):
        raise ValidationError("A scope is listed twice.")


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    key_prefix = models.CharField(
        max_length=12, editable=False, help_text="First characters, to recognise a token."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # A JSON list of ApiScope values (works the same on SQLite and PostgreSQL). Empty: the token can do nothing.
    scopes = models.JSONField(default=list, validators=[validate_scopes], help_text="What the token may do.")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.key_prefix}… ({self.user})"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def is_expired(self, *, now: dt.datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    @property
    def status(self) -> ApiTokenStatus:
        if self.revoked_at is not None:
            return ApiTokenStatus.REVOKED
        if self.is_expired():
            return ApiTokenStatus.EXPIRED
        return ApiTokenStatus.ACTIVE
