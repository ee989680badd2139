"""Prompt template versions in the admin: publish, fork a global template, roll back."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from sessions.models import PromptTemplate
from tests import factories

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:live_sessions_prompttemplate_changelist")
ADD = reverse("admin:live_sessions_prompttemplate_add")


def change_url(template: PromptTemplate) -> str:
    return reverse("admin:live_sessions_prompttemplate_change", args=[template.pk])


def form_data(template: PromptTemplate, **overrides) -> dict:
    data = {
        "tenant": template.tenant_id or "", "kind": template.kind, "name": template.name,
        "body": template.body, "notes": template.notes,
    }
    data.update(overrides)
    return data


def lineage(tenant, kind=PromptTemplate.Kind.SOCRATIC) -> list[tuple[int, bool]]:
    return list(
        PromptTemplate.objects.filter(tenant=tenant, kind=kind).order_by("version").values_list("version", "is_active")
    )


def test_save_as_new_in_the_change_form_publishes_the_next_version(client, superuser, tenant):
    v1 = factories.PromptTemplateFactory(tenant=tenant)
    client.force_login(superuser)
    response = client.post(
        change_url(v1), form_data(v1, body="Ask one question at a time.", notes="shorter", _saveasnew="1")
    )
    assert response.status_code == 302
    assert lineage(tenant) == [(1, False), (2, True)]
    v2 = PromptTemplate.objects.get(tenant=tenant, version=2)
    assert (v2.body, v2.notes, v2.created_by) == ("Ask one question at a time.", "shorter", superuser)
    assert PromptTemplate.objects.get(pk=v1.pk).body == v1.body


def test_plain_save_edits_the_version_in_place(client, superuser, tenant):
    v1 = factories.PromptTemplateFactory(tenant=tenant)
    client.force_login(superuser)
    assert client.post(change_url(v1), form_data(v1, notes="typo fixed")).status_code == 302
    assert lineage(tenant) == [(1, True)]
    assert PromptTemplate.objects.get().notes == "typo fixed"


def test_a_version_cannot_move_to_another_kind(client, superuser, tenant):
    v1 = factories.PromptTemplateFactory(tenant=tenant)
    client.force_login(superuser)
    response = client.post(change_url(v1), form_data(v1, kind=PromptTemplate.Kind.QA))
    assert response.status_code == 200
    assert "kind" in response.context["adminform"].form.errors


def test_a_body_that_is_not_a_template_is_refused(client, superuser, tenant):
    v1 = factories.PromptTemplateFactory(tenant=tenant)
    client.force_login(superuser)
    response = client.post(change_url(v1), form_data(v1, body="Hello {% if %}"))
    assert response.status_code == 200
    assert "body" in response.context["adminform"].form.errors


def test_adding_a_template_publishes_it_as_the_active_version(client, staff_user, tenant, other_tenant):
    factories.PromptTemplateFactory(tenant=tenant, version=1)
    client.force_login(staff_user)
    response = client.post(
        ADD, {"tenant": other_tenant.pk, "kind": "socratic", "name": "Mine", "body": "Hi {{ student_name }}"}
    )
    assert response.status_code == 302
    assert lineage(tenant) == [(1, False), (2, True)]
    assert lineage(other_tenant) == []


def test_tenant_staff_copy_a_global_template_into_their_tenant(client, staff_user, tenant):
    global_v3 = factories.PromptTemplateFactory(tenant=None, version=3, body="Global words.")
    client.force_login(staff_user)
    response = client.post(CHANGELIST, {"action": "save_as_new_version", "_selected_action": [global_v3.pk]})
    assert response.status_code == 302
    own = PromptTemplate.objects.get(tenant=tenant)
    assert (own.version, own.is_active, own.body, own.created_by) == (1, True, "Global words.", staff_user)
    global_v3.refresh_from_db()
    assert global_v3.is_active  # the global default stays for every other tenant


def test_one_template_per_kind_per_action(client, superuser, tenant):
    v1 = factories.PromptTemplateFactory(tenant=tenant, version=1, is_active=False)
    v2 = factories.PromptTemplateFactory(tenant=tenant, version=2)
    client.force_login(superuser)
    response = client.post(CHANGELIST, {"action": "save_as_new_version", "_selected_action": [v1.pk, v2.pk]})
    assert "Select one template per kind" in " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert lineage(tenant) == [(1, False), (2, True)]


def test_activate_rolls_back_to_an_older_version(client, superuser, tenant):
    v1 = factories.PromptTemplateFactory(tenant=tenant, version=1, is_active=False)
    factories.PromptTemplateFactory(tenant=tenant, version=2)
    client.force_login(superuser)
    client.post(CHANGELIST, {"action": "activate_version", "_selected_action": [v1.pk]})
    assert lineage(tenant) == [(1, True), (2, False)]


def test_tenant_staff_cannot_activate_a_global_version(client, staff_user):
    global_v1 = factories.PromptTemplateFactory(tenant=None, version=1, is_active=False)
    global_v2 = factories.PromptTemplateFactory(tenant=None, version=2)
    client.force_login(staff_user)
    client.post(CHANGELIST, {"action": "activate_version", "_selected_action": [global_v1.pk]})
    assert lineage(None) == [(1, False), (2, True)]
    assert global_v2.pk in {t.pk for t in client.get(CHANGELIST).context["cl"].result_list}
