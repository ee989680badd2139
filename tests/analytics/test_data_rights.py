"""Student data rights: export (others' words redacted), erase (no personal data left), audit, API."""

from __future__ import annotations

import io
import json
import zipfile
from decimal import Decimal

import pytest
from axes.models import AccessLog
from django.apps import apps
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import models
from django.urls import reverse

from analytics.data_rights import student_data_erase, student_data_export, student_data_export_zip
from analytics.models import DataRightsAudit, SessionAnalytics, StudentProgress
from courses.exceptions import DomainError
from courses.models import Student, User
from sessions.models import Conversation, LiveSession, Message, Speaker, TranscriptSegment
from tests import factories

pytestmark = pytest.mark.django_db

# What identifies the student, and what only they said: none of it may survive an erase.
NEEDLES = ["Zebulon", "Quixotl", "zq_learner", "zq@example.net", "Zebbo", "quasar-loop conundrum", "S-7781"]
# What another student said: never in the first student's export.
OTHERS = ["Bartholomew", "Vexley", "bv_other", "pangolin heresy"]


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(tenant, course, professor, staff_user):
    zeb = factories.EnrollmentFactory(
        course=course, student__user__username="zq_learner", student__user__first_name="Zebulon",
        student__user__last_name="Quixotl", student__user__email="zq@example.net",
        student__preferred_name="Zebbo", student__student_number="S-7781",
    ).student
    bart = factories.EnrollmentFactory(
        course=course, student__user__username="bv_other", student__user__first_name="Bartholomew",
        student__user__last_name="Vexley", student__user__email="bv@example.net",
    ).student
    session = factories.LiveSessionFactory(course=course, professor=professor, status=LiveSession.Status.ENDED)
    room = factories.BreakoutRoomFactory(session=session, number=1)
    for s in (zeb, bart):
        factories.RoomAssignmentFactory(room=room, session=session, student=s)
    seq = iter(range(1, 100))

    def line(kind, text, user=None, name="Tutor", room=room, audio=False):
        segment = factories.TranscriptSegmentFactory(
            session=session, room=room, seq=next(seq), speaker_kind=kind, speaker_user=user,
            speaker_name=name, text=text,
        )
        if audio:
            segment.audio.save(f"utt-{segment.pk}.wav", ContentFile(b"RIFF-zeb-audio"), save=True)
        return segment

    line(Speaker.PROFESSOR, "Welcome to the lab.", name="Dr. Prof", room=None)
    own = line(Speaker.STUDENT, "My quasar-loop conundrum, explained.", zeb.user, "Zebulon Quixotl", audio=True)
    other = line(Speaker.STUDENT, "A pangolin heresy from me.", bart.user, "Bartholomew Vexley", audio=True)
    tutor_message = factories.MessageFactory(
        conversation=factories.ConversationFactory(course=course, student=None, session=session, room=room),
        seq=1, role=Message.Role.TUTOR, text="Zebulon and Bartholomew, good questions. Zebbo, try a loop.",
    )
    line(Speaker.TUTOR, tutor_message.text)
    factories.MessageFactory(
        conversation=tutor_message.conversation, seq=2, role=Message.Role.STUDENT, author=zeb.user,
        text="quasar-loop conundrum again",
    )
    chat = factories.ConversationFactory(course=course, student=zeb, title="quasar-loop conundrum?")
    factories.MessageFactory(conversation=chat, seq=1, author=zeb.user, text="Why the quasar-loop conundrum?")
    factories.MessageFactory(conversation=chat, seq=2, role=Message.Role.TUTOR, text="Think, Zebulon.")
    factories.StudentProgressFactory(session=session, student=zeb, words=7)
    SessionAnalytics.objects.create(
        session=session, summary="Zebulon Quixotl asked about loops.", participation={"note": "zq_learner spoke"}
    )
    factories.UsageEventFactory(tenant=tenant, user=zeb.user, cost=Decimal("0.01"))
    LogEntry.objects.create(
        user=staff_user, content_type=ContentType.objects.get_for_model(User), object_id=str(zeb.user.pk),
        object_repr="zq_learner", action_flag=CHANGE, change_message="Changed Zebulon's e-mail",
    )
    AccessLog.objects.create(username="zq_learner", user_agent="test", ip_address="127.0.0.1", http_accept="*/*",
                             path_info="/login/")
    return {"zeb": zeb, "bart": bart, "session": session, "own": own, "other": other, "chat": chat}


def personal_data_left(needles: list[str]) -> list[str]:
    """Every text and JSON column of every model, searched for each needle (case-insensitive)."""
    hits = []
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        fields = [
            f.attname for f in model._meta.concrete_fields
            if isinstance(f, models.CharField | models.TextField | models.JSONField | models.FileField)
        ]
        if not fields:
            continue
        for row in model._default_manager.values_list(*fields):
            text = json.dumps(row, default=str).lower()
            hits += [f"{model._meta.label}: {n}" for n in needles if n.lower() in text]
    return hits


# --- export -------------------------------------------------------------------------------------


def test_export_holds_their_data_and_redacts_everybody_elses(world, staff_user):
    data = student_data_export(student=world["zeb"], by=staff_user)
    dumped = json.dumps(data)

    for word in OTHERS:
        assert word.lower() not in dumped.lower(), word
    assert "quasar-loop conundrum" in dumped and "zq@example.net" in dumped
    lines = data["sessions"][0]["transcript"]
    assert {"speaker": "another student", "text": "[redacted]"}.items() <= next(
        line for line in lines if line["speaker_kind"] == "student"
    ).items()
    assert any(line["text"] == "Welcome to the lab." for line in lines)  # the professor's, kept
    assert any("another student, good questions" in line["text"] for line in lines)  # the tutor's, kept
    assert [m["text"] for m in data["practice_conversations"][0]["messages"]] == [
        "Why the quasar-loop conundrum?", "Think, Zebulon.",
    ]
    assert [m["text"] for m in data["room_messages"]] == ["quasar-loop conundrum again"]
    assert data["progress"][0]["words"] == 7 and len(data["usage"]) == 1
    audit = DataRightsAudit.objects.get()
    assert (audit.action, audit.student_id, audit.by, audit.tenant_id) == (
        "export", world["zeb"].pk, staff_user, world["zeb"].tenant_id,
    )


def test_export_redacts_another_students_preferred_name_too(world, staff_user):
    bart = world["bart"]
    bart.preferred_name = "Barty"
    bart.save()
    factories.TranscriptSegmentFactory(
        session=world["session"], room=None, seq=90, speaker_kind=Speaker.PROFESSOR, speaker_name="Dr. Prof",
        text="Barty, please read your answer aloud.",
    )
    dumped = json.dumps(student_data_export(student=world["zeb"], by=staff_user))
    assert "barty" not in dumped.lower()
    assert "another student, please read your answer aloud." in dumped


def test_export_zip_carries_their_own_audio_only(world, staff_user):
    archive = zipfile.ZipFile(io.BytesIO(student_data_export_zip(student=world["zeb"], by=staff_user)))
    names = archive.namelist()
    assert "export.json" in names
    audio = [n for n in names if n.startswith("audio/")]
    assert len(audio) == 1 and str(world["own"].pk) in audio[0]
    assert archive.read(audio[0]) == b"RIFF-zeb-audio"
    assert "pangolin" not in archive.read("export.json").decode()
    assert DataRightsAudit.objects.get().counts["audio_files"] == 1


# --- erase --------------------------------------------------------------------------------------


def test_erase_leaves_another_tenants_admin_history_alone(world, staff_user, other_tenant):
    """Another institution's namesake is not this student: its staff's admin history keeps the name."""
    theirs = factories.StaffUserFactory(tenant=other_tenant, username="their_staff")
    entry = LogEntry.objects.create(
        user=theirs, content_type=ContentType.objects.get_for_model(User), object_id="999999",
        object_repr="Zebulon Quixotl", action_flag=CHANGE, change_message="Renamed Zebulon",
    )
    student_data_erase(student=world["zeb"], by=staff_user, mode="anonymise")
    entry.refresh_from_db()
    assert (entry.object_repr, entry.change_message) == ("Zebulon Quixotl", "Renamed Zebulon")
    assert "Zebulon" not in LogEntry.objects.get(user=staff_user).change_message


@pytest.mark.parametrize("mode", ["anonymise", "delete"])
def test_erase_leaves_no_personal_data(world, staff_user, mode, django_capture_on_commit_callbacks):
    assert personal_data_left(NEEDLES)  # the search finds them before
    own_audio, other_audio = world["own"].audio.name, world["other"].audio.name
    with django_capture_on_commit_callbacks(execute=True):
        audit = student_data_erase(student=world["zeb"], by=staff_user, mode=mode)

    assert personal_data_left(NEEDLES) == []
    assert not default_storage.exists(own_audio) and default_storage.exists(other_audio)
    assert not Conversation.objects.filter(pk=world["chat"].pk).exists()
    assert not StudentProgress.objects.filter(student_id=world["zeb"].pk).exists()
    # The other student's words and the room's transcript stay, readable.
    assert TranscriptSegment.objects.filter(text="A pangolin heresy from me.").exists()
    assert TranscriptSegment.objects.get(pk=world["own"].pk).text == "[erased]"
    assert TranscriptSegment.objects.filter(session=world["session"]).count() == 4
    assert audit.action == mode and audit.student_id == world["zeb"].pk
    assert audit.counts["lines"] == 1 and audit.counts["conversations"] == 1 and audit.counts["audio_files"] == 1
    user_exists = User.objects.filter(pk=world["zeb"].user_id).exists()
    assert user_exists is (mode == "anonymise")
    if mode == "anonymise":
        user = User.objects.get(pk=world["zeb"].user_id)
        assert not user.is_active and not user.has_usable_password()
        assert Student.objects.filter(pk=world["zeb"].pk).exists()
    assert DataRightsAudit.objects.filter(student_id=world["zeb"].pk, action=mode).count() == 1


def test_erase_refuses_an_unknown_mode(world, staff_user):
    with pytest.raises(DomainError) as error:
        student_data_erase(student=world["zeb"], by=staff_user, mode="shred")
    assert error.value.fields == {"mode": ["One of: anonymise, delete."]}
    assert personal_data_left(["quasar-loop conundrum"])


# --- API ----------------------------------------------------------------------------------------


def export_url(student) -> str:
    return reverse("api:student-export", args=[student.pk])


def erase_url(student) -> str:
    return reverse("api:student-erase", args=[student.pk])


def test_staff_export_json_and_zip(client, world, staff_user, api_headers):
    response = client.get(export_url(world["zeb"]), **api_headers(staff_user))
    assert response.status_code == 200
    assert response.json()["profile"]["username"] == "zq_learner"
    assert "pangolin" not in response.content.decode()

    response = client.get(export_url(world["zeb"]) + "?format=zip", **api_headers(staff_user))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert "export.json" in zipfile.ZipFile(io.BytesIO(response.content)).namelist()

    bad = client.get(export_url(world["zeb"]) + "?format=xml", **api_headers(staff_user))
    assert bad.status_code == 400 and bad.json()["error"]["fields"] == {"format": ["One of: json, zip."]}
    assert list(DataRightsAudit.objects.order_by("pk").values_list("action", flat=True)) == ["export", "export_zip"]


def test_only_tenant_staff_may_use_it(client, world, professor, other_tenant, api_headers):
    zeb = world["zeb"]
    for user in (professor.user, world["bart"].user, zeb.user):
        assert client.get(export_url(zeb), **api_headers(user)).status_code == 403
        response = client.post(erase_url(zeb), {"mode": "delete"}, content_type="application/json", **api_headers(user))
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    outsider_staff = factories.StaffUserFactory(tenant=other_tenant)
    response = client.get(export_url(zeb), **api_headers(outsider_staff))
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert client.post(erase_url(zeb), {"mode": "delete"}, content_type="application/json",
                       **api_headers(outsider_staff)).status_code == 404
    assert client.get(export_url(zeb)).status_code == 401
    assert not DataRightsAudit.objects.exists()
    assert User.objects.filter(pk=zeb.user_id).exists()


def test_staff_erase_via_api(client, world, staff_user, api_headers):
    bad = client.post(erase_url(world["zeb"]), {"mode": "shred"}, content_type="application/json",
                      **api_headers(staff_user))
    assert bad.status_code == 400 and "mode" in bad.json()["error"]["fields"]
    response = client.post(erase_url(world["zeb"]), {"mode": "anonymise"}, content_type="application/json",
                           **api_headers(staff_user))
    assert response.status_code == 200
    body = response.json()
    assert body["action"] == "anonymise" and body["student_id"] == world["zeb"].pk
    assert DataRightsAudit.objects.get(pk=body["audit_id"]).by == staff_user
    assert User.objects.get(pk=world["zeb"].user_id).username.startswith("erased-")


# --- admin actions ------------------------------------------------------------------------------


def changelist_post(client, action: str, students, **extra):
    return client.post(
        reverse("admin:courses_student_changelist"),
        {"action": action, "_selected_action": [s.pk for s in students], **extra},
    )


def test_admin_export_action_downloads_a_zip(client, world, staff_user):
    client.force_login(staff_user)
    response = changelist_post(client, "student_data_export_action", [world["zeb"]])
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert "export.json" in zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    both = changelist_post(client, "student_data_export_action", [world["zeb"], world["bart"]])
    assert len(zipfile.ZipFile(io.BytesIO(both.content)).namelist()) == 2
    assert DataRightsAudit.objects.filter(action="export_zip").count() == 3


@pytest.mark.parametrize("mode", ["anonymise", "delete"])
def test_admin_erase_actions_ask_first(client, world, staff_user, mode):
    client.force_login(staff_user)
    confirm = changelist_post(client, f"student_data_{mode}_action", [world["zeb"]])
    assert confirm.status_code == 200 and "This cannot be undone" in confirm.content.decode()
    assert not DataRightsAudit.objects.exists()

    done = changelist_post(client, f"student_data_{mode}_action", [world["zeb"]], confirm="yes")
    assert done.status_code == 302
    assert DataRightsAudit.objects.get().action == mode
    assert User.objects.filter(pk=world["zeb"].user_id).exists() is (mode == "anonymise")


def test_admin_actions_see_only_their_tenants_students(client, world, other_tenant):
    outsider_staff = factories.StaffUserFactory(tenant=other_tenant)
    client.force_login(outsider_staff)
    changelist_post(client, "student_data_delete_action", [world["zeb"]], confirm="yes")
    assert User.objects.filter(pk=world["zeb"].user_id).exists()
    assert not DataRightsAudit.objects.exists()


@pytest.mark.parametrize("mode", ["anonymise", "delete"])
def test_erase_closes_the_students_open_sockets(world, staff_user, mode, monkeypatch):
    closed = []
    monkeypatch.setattr("sessions.signals.user_sockets_close", lambda *, user_id, code: closed.append((user_id, code)))
    student_data_erase(student=world["zeb"], by=staff_user, mode=mode)
    assert closed == [(world["zeb"].user_id, 4401)]


# --- spoken practice questions (Message.audio) ---------------------------------------------------


def spoken_question(world) -> Message:
    """Zeb said a practice question aloud and the tenant kept its audio."""
    message = factories.MessageFactory(
        conversation=world["chat"], seq=3, author=world["zeb"].user, text="Say the quasar-loop again?",
        source="speech", provider="pocketsphinx",
    )
    message.audio.save(f"c{world['chat'].pk}-3.wav", ContentFile(b"RIFF-zeb-question"), save=True)
    return message


def test_export_zip_carries_their_spoken_questions_audio(world, staff_user):
    message = spoken_question(world)
    archive = zipfile.ZipFile(io.BytesIO(student_data_export_zip(student=world["zeb"], by=staff_user)))
    data = json.loads(archive.read("export.json"))
    row = data["practice_conversations"][0]["messages"][-1]
    assert (row["text"], row["source"]) == ("Say the quasar-loop again?", "speech")
    assert archive.read(row["audio"]) == b"RIFF-zeb-question" and f"m{message.pk}-" in row["audio"]
    assert [m["source"] for m in data["practice_conversations"][0]["messages"]] == ["text", "text", "speech"]
    assert DataRightsAudit.objects.get().counts["audio_files"] == 2  # the room line's and the question's


def test_erase_deletes_their_spoken_questions_audio(world, staff_user, django_capture_on_commit_callbacks):
    name = spoken_question(world).audio.name
    assert default_storage.exists(name)
    with django_capture_on_commit_callbacks(execute=True):
        audit = student_data_erase(student=world["zeb"], by=staff_user, mode="anonymise")
    assert not default_storage.exists(name)
    assert not Message.objects.filter(conversation_id=world["chat"].pk).exists()
    assert audit.counts["audio_files"] == 2
