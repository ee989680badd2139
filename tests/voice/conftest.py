"""The voice socket tests use the live-session fixtures of tests/sessions (a room, its student)."""

from tests.sessions.conftest import (  # noqa: F401  (fixtures)
    _fresh_channel_layer,
    assigned_student,
    fast_passwords,
    live_session,
    other_professor,
    other_room,
    room,
    student_of_other_room,
)
