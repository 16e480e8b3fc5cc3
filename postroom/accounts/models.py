from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models
from django.utils import timezone
from django.utils.crypto import salted_hmac


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **fields: Any) -> User:
        if not email:
            raise ValueError("an email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)  # None gives an unusable password (e.g. OpenID Connect sign-up)
        user.save(using=self._db)
        return user


def new_security_stamp() -> str:
    return secrets.token_hex(16)


class User(AbstractBaseUser):
    """A person who can sign in. Organization roles live on ``orgs.Membership``, not here."""

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    # Changing it ends every other session: Django's session hash covers only the password, so
    # a second-factor or email change rotates this stamp too (SECURITY.md R18).
    security_stamp = models.CharField(max_length=32, default=new_security_stamp)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    def __str__(self) -> str:
        return self.email

    @property
    def display_name(self) -> str:
        return self.name or self.email.split("@")[0]

    def get_session_auth_hash(self) -> str:
        return salted_hmac(
            "postroom.accounts.User.get_session_auth_hash",
            f"{self.password}\x00{self.security_stamp}",
            algorithm="sha256",
        ).hexdigest()


class LoginThrottle(models.Model):
    """Consecutive failed sign-in attempts counted under one key (see accounts.throttle).

    The key is an HMAC of what is counted (an account, a typed address, a client network), so
    the table holds neither addresses people typed nor client IPs.
    """

    key = models.CharField(max_length=64, unique=True)
    # Set for keys that belong to an account, so a password reset or an operator can clear them.
    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    failures = models.PositiveIntegerField(default=0)
    last_failure_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.key[:12]}… {self.failures} failure(s)"


class KnownLoginNetwork(models.Model):
    """A client network (HMAC of the IPv4 address or IPv6 /64) the account signed in from."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    network_key = models.CharField(max_length=64)
    last_login_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "network_key"], name="known_login_network_unique")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.network_key[:12]}…"


class TotpStepUse(models.Model):
    """The newest TOTP time step accepted for a user: a code is accepted once (SECURITY.md R8)."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="+")
    last_step = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.user_id} step {self.last_step}"


class ApiTokenScope(models.TextChoices):
    READ = "read", "Read only"
    WRITE = "write", "Read and write"


class ApiToken(models.Model):
    """A personal API token (see ``postroom.accounts.api_tokens``): the token itself is shown
    once and stored only as an HMAC; ``prefix`` is its public, non-secret beginning."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=11, unique=True)
    token_hash = models.CharField(max_length=64)
    scope = models.CharField(max_length=8, choices=ApiTokenScope.choices, default=ApiTokenScope.READ)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # The client network of the last use (IPv4 /24, IPv6 /48), shown to the token's owner.
    last_used_network = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.scope})"

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired()
