"""The Celery application. Beat schedules are code: see ``configsync.tasks.beat_schedule``.

Two queues (``settings.base``: ``CELERY_TASK_QUEUES``): ``celery``, the default, and ``push``,
which carries the push-only cycles a committed write enqueues (:func:`route_task`), so that a
push never waits behind a sync cycle, a retry or a snapshot. A worker started without ``-Q``
consumes both; the Procfile runs ``worker -Q celery`` and a ``pusher`` (``-Q push --pool=solo``).
"""

import os
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.local")

PUSH_QUEUE = "push"
"""The queue of push-only cycles (``configsync.tasks.sync_peer`` with ``pull=False``)."""

app = Celery("configsync")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def route_task(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **extra: Any
) -> dict[str, str] | None:
    """Celery's router (``CELERY_TASK_ROUTES``): a push-only ``sync_peer`` and the older
    ``push_to_peers`` go to :data:`PUSH_QUEUE`; everything else to the default queue
    (``None``: the next router, then the default)."""
    if name == "configsync.tasks.push_to_peers":
        return {"queue": PUSH_QUEUE}
    if name == "configsync.tasks.sync_peer":
        positional = list(args or ())
        pull = (kwargs or {}).get("pull", positional[1] if len(positional) > 1 else True)
        if pull is False:
            return {"queue": PUSH_QUEUE}
    return None


@app.on_after_finalize.connect
def _install_beat_schedule(sender: Celery, **kwargs: object) -> None:
    from configsync.tasks import beat_schedule

    sender.conf.beat_schedule = beat_schedule()
