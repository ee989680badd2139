"""Shapes of the analytics API, for the OpenAPI schema (the documents are built by selectors)."""

from __future__ import annotations

from rest_framework import serializers


class TopicSerializer(serializers.Serializer):
    topic = serializers.CharField()
    segments = serializers.ListField(child=serializers.IntegerField(), help_text="Seqs of the lines naming it.")


class ConfusionPointSerializer(serializers.Serializer):
    topic = serializers.CharField()
    signal = serializers.ChoiceField(
        choices=["phrase", "repeated_question", "silence_after_question", "guardrail_redirect", "llm"]
    )
    seq = serializers.IntegerField()
    evidence = serializers.CharField()


class RoomRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    topic = serializers.CharField()


class StudentAnalyticsSerializer(serializers.Serializer):
    student = serializers.IntegerField()
    name = serializers.CharField()
    room = RoomRefSerializer(allow_null=True)
    talk_time_ms = serializers.IntegerField()
    turns = serializers.IntegerField()
    speech_turns = serializers.IntegerField()
    text_turns = serializers.IntegerField()
    words = serializers.IntegerField()
    questions = serializers.IntegerField()
    hints_needed = serializers.IntegerField()
    topics = TopicSerializer(many=True)
    confusion_points = ConfusionPointSerializer(many=True)
    engagement_score = serializers.IntegerField(min_value=0, max_value=100)
    evidence = serializers.DictField(
        child=serializers.ListField(child=serializers.IntegerField()),
        help_text="turns, questions, explanations, self_corrections, hints -> seqs.",
    )
    transcript_links = serializers.DictField(child=serializers.CharField(), help_text="seq -> transcript URL.")
    detail_url = serializers.CharField()


class SessionAnalyticsSerializer(serializers.Serializer):
    session = serializers.IntegerField()
    students = StudentAnalyticsSerializer(many=True)
    summary = serializers.CharField()
    status = serializers.ChoiceField(choices=["pending", "computing", "ready", "failed"])
    progress = serializers.IntegerField()
    version = serializers.IntegerField()
    computed_at = serializers.DateTimeField(allow_null=True)
    final = serializers.BooleanField(help_text="False: an incremental result while the session runs.")
    summary_offline = serializers.BooleanField()
    title = serializers.CharField()
    course = serializers.IntegerField()
    participation = serializers.JSONField(required=False, help_text="Professors and staff only.")
    rooms = serializers.JSONField(required=False, help_text="Professors and staff only.")
    confusion_topics = serializers.JSONField(required=False, help_text="Professors and staff only.")


class EvidenceLineSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    room = serializers.IntegerField(allow_null=True)
    speaker = serializers.CharField()
    speaker_kind = serializers.CharField()
    text = serializers.CharField()
    source = serializers.CharField()
    start_ms = serializers.IntegerField()
    end_ms = serializers.IntegerField()


class StudentDetailSerializer(StudentAnalyticsSerializer):
    session = serializers.IntegerField()
    status = serializers.CharField()
    version = serializers.IntegerField()
    lines = EvidenceLineSerializer(many=True)


class ProgressSessionSerializer(serializers.Serializer):
    session = serializers.IntegerField()
    title = serializers.CharField()
    course = serializers.IntegerField()
    started_at = serializers.DateTimeField(allow_null=True)
    talk_time_ms = serializers.IntegerField()
    turns = serializers.IntegerField()
    words = serializers.IntegerField()
    questions = serializers.IntegerField()
    hints_needed = serializers.IntegerField()
    topics = serializers.ListField(child=serializers.CharField())
    confusion_count = serializers.IntegerField()
    engagement_score = serializers.IntegerField()
    version = serializers.IntegerField()


class StudentProgressSerializer(serializers.Serializer):
    student = serializers.IntegerField()
    name = serializers.CharField()
    course = serializers.IntegerField(allow_null=True)
    sessions = ProgressSessionSerializer(many=True)
