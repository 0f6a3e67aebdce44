"""Development settings: ``make run`` with nothing configured gives a working node.

Embedded defaults: SQLite and Celery's filesystem broker under ``var/``, local-memory cache, and
a development encryption key generated once into ``var/`` (see ``configsync.crypto.keyring``).
"""

import os

os.environ.setdefault("DJANGO_DEBUG", "true")
os.environ.setdefault("DJANGO_SECRET_KEY", "django-insecure-local-development-only")

from .base import *  # noqa: F403
