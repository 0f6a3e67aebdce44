"""The configsync Django project: ``base`` plus one module per environment."""

from .celery import app as celery_app

__all__ = ["celery_app"]
