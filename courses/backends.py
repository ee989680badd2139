"""Authentication backend: a user of a deactivated tenant cannot log in (portal or API)."""

from __future__ import annotations

from django.contrib.auth.backends import ModelBackend


class TenantAwareModelBackend(ModelBackend):
    def user_can_authenticate(self, user) -> bool:
        if not super().user_can_authenticate(user):
            return False
        tenant = getattr(user, "tenant", None)
        return tenant is None or tenant.is_active

    def get_user(self, user_id):
        # Session-cookie requests of a tenant deactivated mid-session are logged out too.
        user = super().get_user(user_id)
        return user if user is not None and self.user_can_authenticate(user) else None
