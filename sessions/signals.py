"""Signal receivers of the sessions app. Connected by importing this module in
`SessionsConfig.ready()`."""

from __future__ import annotations

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import Signal, receiver

from sessions.services import user_sockets_close


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="sessions.close_sockets_of_inactive_user")
def close_sockets_of_inactive_user(sender, instance, created: bool, update_fields=None, **kwargs) -> None:
    """A deactivated user loses their open sockets at once, not at their next reconnect."""
    if created or instance.is_active:
        return
    if update_fields is not None and "is_active" not in update_fields:
        return
    user_sockets_close(user_id=instance.pk, code=4401)


# Sent after a session ended and its transaction committed (`sender`: LiveSession, `session_id`).
# The analytics app queues its computation on it; sessions imports nothing of analytics.
session_ended = Signal()

# --- Live analytics hooks (the confusion radar) -----------------------------------------------
# analytics connects to these; sessions imports nothing of analytics.

# Sent after a transcript segment committed (any speaker): `sender`: TranscriptSegment,
# `segment_id`, `session_id`, `room_id` (None for the main lecture), `speaker_kind`.
segment_recorded = Signal()

# Sent after "clarify for everyone" committed: `sender`: LiveSession, `session_id`, `topic`,
# `by` ({id, name}), `at` (ISO 8601), `text` (what the rooms were told).
confusion_clarified = Signal()

# Sent (sync, in a worker thread) when the monitor connects or its page renders: `sender`:
# LiveSession, `session_id`. Each receiver returns a list of (event_type, data) to add to the
# monitor's snapshot (the radar's `analytics.update`).
monitor_snapshot = Signal()
