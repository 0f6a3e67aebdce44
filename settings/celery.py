"""The Celery application. Beat schedules are code: see ``configsync.tasks.beat_schedule``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.local")

app = Celery("configsync")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _install_beat_schedule(sender: Celery, **kwargs: object) -> None:
    from configsync.tasks import beat_schedule

    sender.conf.beat_schedule = beat_schedule()
