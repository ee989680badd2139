"""Tenant scoping for the Django admin: one set of rules for every ModelAdmin and inline of ours.

Who sees what:

- a superuser sees and edits everything;
- a *tenant staff* user (role "staff", ``is_staff``, with a tenant) sees and edits the rows of
  their tenant without any Django permission granted by hand; global rows (tenant empty:
  personas, prompt templates, the LLM chain) are visible to them read-only;
- any other admin user keeps Django's model permissions, still limited to their tenant's rows.

Scoping happens in ``get_queryset``, so the changelist, the change/delete/history views (which
load the object through it and redirect to the admin index when it is missing), autocomplete and
raw-id lookups all agree. Foreign-key and many-to-many choices are limited the same way, through
the related model's own admin, and new rows get the user's tenant.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import ValidationError
from django.db.models import Count, IntegerField, Model, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.utils.text import Truncator

from courses.models import Tenant, User


def is_tenant_staff(user: Any) -> bool:
    """A tenant's own administrator: manages that tenant's rows in the admin without model perms."""
    return bool(
        user.is_authenticated
        and user.is_active
        and user.is_staff
        and not user.is_superuser
        and user.role == User.Role.STAFF
        and user.tenant_id is not None
    )


def is_restricted(user: Any) -> bool:
    """Everybody but a superuser only ever sees one tenant's rows."""
    return not user.is_superuser


def subquery_count(queryset: QuerySet, *, fk: str, outer: str = "pk") -> Coalesce:
    """COUNT of `queryset` rows whose `fk` points at the outer row, as a correlated subquery.

    Unlike several ``Count()`` annotations over joins, counts never multiply each other and the
    changelist stays one query however many columns are counted.
    """
    counted = (
        queryset.filter(**{fk: OuterRef(outer)})
        .order_by()
        .values(fk)
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def _tenant_ids_of(value: Any) -> set[int]:
    """Tenants a cleaned form value belongs to: a row with a tenant, or several (many-to-many)."""
    items = value if isinstance(value, QuerySet | list | tuple) else [value]
    tenant_ids = set()
    for item in items:
        if isinstance(item, Tenant):
            tenant_ids.add(item.pk)
        elif isinstance(item, Model) and getattr(item, "tenant_id", None) is not None:
            tenant_ids.add(item.tenant_id)
    return tenant_ids


class PreloadedAutocompleteSelect(AutocompleteSelect):
    """An autocomplete select that labels its selected row from the object the form already holds.

    Django's widget looks the selected row up again, one query per form: an inline of 30
    enrollments would cost 30 queries. `ScopedModelForm` hands the widget the related object its
    instance has loaded (through the inline's select_related), and the page stays flat.
    """

    preloaded: Model | None = None

    def optgroups(self, name, value, attr=None):
        selected = [str(v) for v in value if str(v) not in self.choices.field.empty_values]
        obj = self.preloaded
        if obj is None or selected != [str(obj.pk)]:
            return super().optgroups(name, value, attr)
        options = [] if self.is_required else [self.create_option(name, "", "", False, 0)]
        label = self.choices.field.label_from_instance(obj)
        options.append(self.create_option(name, obj.pk, label, set(selected), len(options)))
        return [(None, options, 0)]


class ScopedModelForm(forms.ModelForm):
    """The form of our admins.

    It refuses a row that would tie together rows of different tenants (e.g. a course of one
    tenant with a student of another): restricted users only get their tenant's choices anyway,
    this guards superusers, who see every tenant's. And it hands autocomplete widgets the related
    objects its instance has already loaded (see `PreloadedAutocompleteSelect`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            widget = getattr(field.widget, "widget", field.widget)  # inside RelatedFieldWidgetWrapper
            if isinstance(widget, PreloadedAutocompleteSelect):
                model_field = self.instance._meta.get_field(name)
                if model_field.is_cached(self.instance):
                    widget.preloaded = model_field.get_cached_value(self.instance)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        fields_by_tenant: dict[int, list[str]] = {}
        for name, value in cleaned.items():
            for tenant_id in _tenant_ids_of(value):
                fields_by_tenant.setdefault(tenant_id, []).append(name)
        if len(fields_by_tenant) > 1:
            names = sorted({name for names in fields_by_tenant.values() for name in names})
            raise ValidationError(
                "These belong to different tenants: %(fields)s.",
                code="tenant_mismatch",
                params={"fields": ", ".join(names)},
            )
        return cleaned


class _TenantScoping:
    """Rules shared by model admins and inlines. Configure with the class attributes below."""

    #: Lookup from the model to its tenant: "tenant", "course__tenant", ... ("pk" for Tenant).
    tenant_path: str = "tenant"
    #: Rows with no tenant are global: visible to everybody, editable only by superusers.
    global_rows: bool = False
    #: Records (transcripts, messages, usage, analytics) that tenant staff may read, not write.
    tenant_staff_read_only: bool = False
    #: select_related() for this model's rows when they are offered as choices elsewhere.
    choice_select_related: tuple[str, ...] = ()

    # --- rows --------------------------------------------------------------------------------

    def scope_queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """`queryset` limited to what the user may see."""
        user = request.user
        if not is_restricted(user):
            return queryset
        tenant_id = user.tenant_id
        own = Q(**{self.tenant_path: tenant_id}) if tenant_id is not None else Q(pk__in=[])
        if self.global_rows:
            own |= Q(**{f"{self.tenant_path}__isnull": True})
        return queryset.filter(own)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return self.scope_queryset(request, super().get_queryset(request))  # type: ignore[misc]

    def tenant_id_of(self, obj: Model) -> int | None:
        """The tenant id of `obj`, following `tenant_path`."""
        *hops, last = self.tenant_path.split("__")
        for hop in hops:
            obj = getattr(obj, hop)
            if obj is None:
                return None
        return obj.pk if last == "pk" else getattr(obj, f"{last}_id")

    def user_owns(self, request: HttpRequest, obj: Model | None) -> bool:
        """Whether the user may write `obj` as far as tenants go (None: the model in general)."""
        if not is_restricted(request.user) or obj is None:
            return True
        tenant_id = self.tenant_id_of(obj)
        return tenant_id is not None and tenant_id == request.user.tenant_id

    def user_sees(self, request: HttpRequest, obj: Model | None) -> bool:
        if self.user_owns(request, obj):
            return True
        return self.global_rows and self.tenant_id_of(obj) is None  # type: ignore[arg-type]

    # --- choices -----------------------------------------------------------------------------

    def choices_for(self, request: HttpRequest, model: type[Model], db: str | None = None) -> QuerySet:
        """Rows of `model` the user may pick in a form, scoped by that model's own admin.

        A model with no admin of ours is offered only if it has a direct tenant field; otherwise
        a restricted user gets no choices at all (fail closed).
        """
        queryset = model._default_manager.using(db).all()
        try:
            related_admin = self.admin_site.get_model_admin(model)  # type: ignore[attr-defined]
        except NotRegistered:
            related_admin = None
        if related_admin is not None and (ordering := related_admin.get_ordering(request)):
            queryset = queryset.order_by(*ordering)
        if isinstance(related_admin, _TenantScoping):
            if related_admin.choice_select_related:
                queryset = queryset.select_related(*related_admin.choice_select_related)
            return related_admin.scope_queryset(request, queryset)
        if not is_restricted(request.user):
            return queryset
        if any(f.name == "tenant" for f in model._meta.get_fields()):
            return queryset.filter(tenant_id=request.user.tenant_id)
        return queryset.none()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if "widget" not in kwargs and db_field.name in self.get_autocomplete_fields(request):  # type: ignore[attr-defined]
            kwargs["widget"] = PreloadedAutocompleteSelect(db_field, self.admin_site, using=kwargs.get("using"))  # type: ignore[attr-defined]
        if "queryset" not in kwargs:
            kwargs["queryset"] = self.choices_for(request, db_field.remote_field.model, kwargs.get("using"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if "queryset" not in kwargs:
            kwargs["queryset"] = self.choices_for(request, db_field.remote_field.model, kwargs.get("using"))
        return super().formfield_for_manytomany(db_field, request, **kwargs)  # type: ignore[misc]

    def has_module_permission(self, request: HttpRequest) -> bool:
        if is_tenant_staff(request.user):
            return True
        return super().has_module_permission(request)  # type: ignore[misc]


class TenantScopedAdminMixin(_TenantScoping):
    """Put first in the bases of a ModelAdmin: ``class CourseAdmin(TenantScopedAdminMixin, admin.ModelAdmin)``."""

    # --- permissions -------------------------------------------------------------------------

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if obj is not None and not self.user_sees(request, obj):
            return False
        if is_tenant_staff(request.user):
            return True
        return super().has_view_permission(request, obj)  # type: ignore[misc]

    def has_add_permission(self, request: HttpRequest) -> bool:
        if is_tenant_staff(request.user):
            return not self.tenant_staff_read_only
        return super().has_add_permission(request)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if not self.user_owns(request, obj):
            return False
        if is_tenant_staff(request.user):
            return not self.tenant_staff_read_only
        return super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if not self.user_owns(request, obj):
            return False
        if is_tenant_staff(request.user):
            return not self.tenant_staff_read_only
        return super().has_delete_permission(request, obj)  # type: ignore[misc]

    # --- the tenant column and field ---------------------------------------------------------

    @property
    def _has_tenant_field(self) -> bool:
        return self.tenant_path == "tenant"

    def get_list_display(self, request: HttpRequest):
        columns = super().get_list_display(request)  # type: ignore[misc]
        if is_restricted(request.user):
            columns = [c for c in columns if c != "tenant"]
        return columns

    def get_list_filter(self, request: HttpRequest):
        filters = super().get_list_filter(request)  # type: ignore[misc]
        if is_restricted(request.user):
            filters = [f for f in filters if _filter_field(f) != "tenant"]
        return filters

    def get_form(self, request: HttpRequest, obj: Model | None = None, change: bool = False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)  # type: ignore[misc]
        tenant_field = form.base_fields.get("tenant") if self._has_tenant_field else None
        if tenant_field is not None and is_restricted(request.user):
            # Shown, never chosen: the tenant is the user's. A disabled field still takes part in
            # validation, so the (tenant, ...) unique constraints are checked by the form.
            tenant_field.disabled = True
            tenant_field.required = True
            tenant_field.initial = request.user.tenant_id
            tenant_field.help_text = ""
        return form

    def save_model(self, request: HttpRequest, obj: Model, form: forms.ModelForm, change: bool) -> None:
        if self._has_tenant_field and is_restricted(request.user):
            obj.tenant_id = request.user.tenant_id  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)  # type: ignore[misc]


def _filter_field(list_filter_entry: Any) -> Any:
    if isinstance(list_filter_entry, tuple | list):
        return list_filter_entry[0]
    return list_filter_entry


class TenantScopedInlineMixin(_TenantScoping):
    """Put first in the bases of an inline. The parent admin has already scoped the parent row.

    ``read_only = True`` makes the inline a record to read (no add, change or delete, for anybody).
    """

    read_only: bool = False

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if is_tenant_staff(request.user):
            return True
        return super().has_view_permission(request, obj)  # type: ignore[misc]

    def has_add_permission(self, request: HttpRequest, obj: Model | None) -> bool:
        if self.read_only:
            return False
        if is_tenant_staff(request.user):
            return not self.tenant_staff_read_only
        return super().has_add_permission(request, obj)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if self.read_only:
            return False
        if is_tenant_staff(request.user):
            return not self.tenant_staff_read_only
        return super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if self.read_only:
            return False
        if is_tenant_staff(request.user):
            return not self.tenant_staff_read_only
        return super().has_delete_permission(request, obj)  # type: ignore[misc]


class LimitedInlineFormSet(BaseInlineFormSet):
    """An inline formset showing only the first `limit` rows: for read-only lists that can be long."""

    limit = 50

    def get_queryset(self) -> QuerySet:
        # Cached: the formset indexes the queryset once per form, and a fresh slice would be
        # a fresh query each time.
        if not hasattr(self, "_limited_queryset"):
            self._limited_queryset = super().get_queryset()[: self.limit]
        return self._limited_queryset


def limited_formset(limit: int) -> type[LimitedInlineFormSet]:
    return type(f"LimitedInlineFormSet{limit}", (LimitedInlineFormSet,), {"limit": limit})


class ReadOnlyTabularInline(TenantScopedInlineMixin, admin.TabularInline):
    """A tabular list of child records: nothing to add, change or delete; no empty extra rows."""

    read_only = True
    extra = 0
    can_delete = False
    show_change_link = True

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None):
        return self.get_fields(request, obj)


def text_preview(text: str, length: int = 80) -> str:
    """A changelist column's short form of a long text."""
    return Truncator(text).chars(length)
