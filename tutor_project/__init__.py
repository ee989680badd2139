"""AI Professor project package: settings, ASGI entry point, URL map and the Celery app."""

from .celery import app as celery_app

__all__ = ("celery_app",)
