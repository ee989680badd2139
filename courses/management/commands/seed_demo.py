"""`manage.py seed_demo`: load the demo tenant (idempotent; `make run` calls it on every start)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from courses.services import demo_seed


def _count_label(count: int, name: str) -> str:
    label = "LLM models" if name == "llm_models" else name.replace("_", " ")
    return f"{count} {label[:-1] if count == 1 else label}"


class Command(BaseCommand):
    help = (
        "Create the demo tenant, its professor, ten students, CS101 with its notes, and the tutor defaults."
    )

    def handle(self, *args, **options) -> None:
        result = demo_seed()
        created = {name: count for name, count in result["created"].items() if count}
        if created:
            made = ", ".join(_count_label(count, name) for name, count in created.items())
            self.stdout.write(self.style.SUCCESS(f"Demo data created: {made}."))
        else:
            self.stdout.write("Demo data already present; nothing to create.")
        self.stdout.write(
            f'Tenant: {result["tenant"]}. Course: {result["course"]}, with "{result["document"]}".'
        )
        students = [name for name in result["logins"] if name.startswith("student")]
        others = [name for name in result["logins"] if not name.startswith("student")]
        logins = [others[0], f"{students[0]}..{students[-1]}", *others[1:]]
        self.stdout.write("")
        self.stdout.write(
            self.style.MIGRATE_HEADING(f"Demo logins (password: {result['password']}): ") + ", ".join(logins)
        )
        self.stdout.write(
            "  professor and students: the portal at /; staff and admin: the Django admin at /admin/"
        )
