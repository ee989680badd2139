"""Input/output shapes of the sessions API."""

from __future__ import annotations

from rest_framework import serializers

from courses.api.serializers import StrictCharField
from sessions.models import Conversation, Message
from sessions.services import PRACTICE_MODE_CHOICES, TITLE_MAX_CHARS


class JoinTicketOutputSerializer(serializers.Serializer):
    """Where to connect and the one-use ticket to connect with."""

    ws_url = serializers.CharField(
        help_text="Absolute WebSocket URL (ws:// or wss://); append `?ticket=<ticket>`."
    )
    ticket = serializers.CharField(
        help_text="Signed, bound to you and this object, valid once within WS_TICKET_TTL_SECONDS (<= 60 s)."
    )
    expires_in = serializers.IntegerField(help_text="Seconds the ticket stays valid.")


class RealtimeErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)


class RealtimeErrorSerializer(serializers.Serializer):
    """The API's one error shape (courses/api/errors.py)."""

    error = RealtimeErrorDetailSerializer()


# --- Practice conversations ---------------------------------------------------------------------


class ConversationSerializer(serializers.ModelSerializer):
    """A practice conversation. `last_seq`: the highest event `seq` so far (for `after_seq`)."""

    message_count = serializers.IntegerField(read_only=True, required=False)
    preview = serializers.CharField(read_only=True, allow_null=True, required=False)
    reused = serializers.SerializerMethodField(help_text="Create only: an empty conversation was reused.")

    class Meta:
        model = Conversation
        fields = [
            "id", "course", "mode", "title", "last_seq", "message_count", "preview",
            "created_at", "updated_at", "reused",
        ]
        read_only_fields = fields

    def get_reused(self, conversation: Conversation) -> bool:
        return bool(self.context.get("reused", False))


class ConversationCreateSerializer(serializers.Serializer):
    course = serializers.IntegerField(min_value=1)
    mode = serializers.ChoiceField(choices=PRACTICE_MODE_CHOICES, required=False)
    title = StrictCharField(max_length=TITLE_MAX_CHARS, required=False, allow_blank=True)
    reuse_empty = serializers.BooleanField(
        default=True, help_text="Return an empty conversation of the same mode instead of a new one."
    )


class ConversationUpdateSerializer(serializers.Serializer):
    title = StrictCharField(max_length=TITLE_MAX_CHARS, required=False, allow_blank=True)
    mode = serializers.ChoiceField(choices=PRACTICE_MODE_CHOICES, required=False)


class ConversationClearSerializer(serializers.Serializer):
    course = serializers.IntegerField(min_value=1)
    mode = serializers.ChoiceField(
        choices=PRACTICE_MODE_CHOICES, required=False, default="", allow_blank=True,
        help_text="Empty or absent: every mode.",
    )


class ClearedSerializer(serializers.Serializer):
    deleted = serializers.IntegerField()


class MessageSerializer(serializers.ModelSerializer):
    author_name = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = [
            "id", "seq", "role", "author", "author_name", "text", "source", "provider", "status", "guardrail",
            "citations", "model", "offline", "notice", "prompt_tokens", "completion_tokens", "created_at",
        ]
        read_only_fields = fields

    def get_author_name(self, message: Message) -> str | None:
        return message.author.display_name if message.author_id else None


class MessagePostSerializer(serializers.Serializer):
    # Length and emptiness are the service's rules (message_text_clean), one message for all surfaces.
    text = serializers.JSONField(help_text="The student's message (at most TUTOR_MAX_MESSAGE_CHARS characters).")


class MessageExchangeSerializer(serializers.Serializer):
    """Without `Accept: text/event-stream`: the question and the tutor's finished reply."""

    message = MessageSerializer()
    reply = MessageSerializer()
