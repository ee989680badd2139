"""Input/output shapes of the sessions API."""

from __future__ import annotations

from rest_framework import serializers


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
