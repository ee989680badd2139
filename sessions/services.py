"""Writes of the sessions app. Broadcasts leave from here, after the transaction commits."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet

from courses.exceptions import DomainError
from courses.models import User
from sessions import groups
from sessions.models import PromptTemplate
from sessions.realtime import broadcast_on_commit, control_on_commit

ANNOUNCEMENT_MAX_CHARS = 2000


def tenant_announce(*, tenant_id: int, text: str, author: AbstractBaseUser | None) -> None:
    """Broadcast an announcement to every open socket of a tenant's users (ephemeral: seq null)."""
    text = (text or "").strip()
    if not text:
        raise DomainError("Write something to announce.", code="invalid", fields={"text": ["Required."]})
    if len(text) > ANNOUNCEMENT_MAX_CHARS:
        raise DomainError(
            f"An announcement has at most {ANNOUNCEMENT_MAX_CHARS} characters.",
            code="invalid", fields={"text": ["Too long."]},
        )
    data = {
        "tenant_id": tenant_id,
        "text": text,
        "author": (
            {"id": author.pk, "name": getattr(author, "display_name", str(author))} if author else None
        ),
    }
    broadcast_on_commit(groups=[groups.tenant_group(tenant_id)], event_type="tenant.announcement", data=data)


def user_sockets_close(
    *, user_id: int, code: int = 4401, kind: str | None = None, object_id: int | None = None
) -> None:
    """Close a user's open sockets after commit: all of them, or only those of one route object
    (`kind="room", object_id=3` when a student is moved out of room 3)."""
    control_on_commit(
        group=groups.user_group(user_id),
        message={"type": "ws.close", "code": int(code), "kind": kind, "object_id": object_id},
    )


# --- prompt template versions ------------------------------------------------------------------


def _prompt_lineage(*, tenant_id: int | None, kind: str) -> QuerySet[PromptTemplate]:
    return PromptTemplate.objects.filter(tenant_id=tenant_id, kind=kind)


def prompt_template_publish(*, template: PromptTemplate, created_by: User | None) -> PromptTemplate:
    """Insert the unsaved `template` as the next version of its tenant and kind, and activate it."""
    with transaction.atomic():
        # Lock the lineage so two publishers cannot both take the same version number.
        versions = list(
            _prompt_lineage(tenant_id=template.tenant_id, kind=template.kind)
            .select_for_update()
            .values_list("version", flat=True)
        )
        # Deactivate first: the database allows one active version per tenant and kind.
        _prompt_lineage(tenant_id=template.tenant_id, kind=template.kind).filter(is_active=True).update(
            is_active=False
        )
        template.pk = None
        template.version = max(versions, default=0) + 1
        template.is_active = True
        template.created_by = created_by
        template.save(force_insert=True)
    return template


def prompt_template_new_version(
    *, source: PromptTemplate, tenant_id: int | None, created_by: User | None
) -> PromptTemplate:
    """A copy of `source` published as the next active version of `tenant_id`'s lineage.

    With another tenant than the source's (a tenant copying a global template) the copy starts
    or continues that tenant's own lineage, which then takes precedence over the global one.
    """
    copy = PromptTemplate(
        tenant_id=tenant_id, kind=source.kind, name=source.name, body=source.body, notes=f"Copy of {source}"
    )
    return prompt_template_publish(template=copy, created_by=created_by)


def prompt_template_activate(*, template: PromptTemplate) -> None:
    """Make `template` the active version of its tenant and kind (e.g. to roll back)."""
    with transaction.atomic():
        lineage = _prompt_lineage(tenant_id=template.tenant_id, kind=template.kind)
        list(lineage.select_for_update().values_list("pk", flat=True))
        lineage.filter(is_active=True).exclude(pk=template.pk).update(is_active=False)
        lineage.filter(pk=template.pk).update(is_active=True)
    template.is_active = True
