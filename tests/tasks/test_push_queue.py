"""The ``push`` queue: a push on commit never waits behind a sync cycle of the default queue.

A committed write publishes its push-only cycle to the ``push`` queue of the real broker (Redis
with ``REDIS_URL``, else the embedded one), where the Procfile's ``pusher`` alone takes it; every
other task keeps the default queue, and a worker started without ``-Q`` consumes both.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from configsync import tasks
from configsync.models import Peer
from configsync.services.system_config import system_config_set
from settings.celery import PUSH_QUEUE, route_task
from tests.factories import PeerFactory
from tests.support.replication import use_replication_settings

pytestmark = pytest.mark.django_db(transaction=True)

PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


def _queue_of(app: Celery, name: str, args: list[Any], kwargs: dict[str, Any]) -> str:
    """The queue Celery's router sends ``name(*args, **kwargs)`` to."""
    return str(app.amqp.router.route({}, name, args=args, kwargs=kwargs)["queue"].name)


@pytest.mark.parametrize(
    ("args", "kwargs", "queue"),
    [
        ([7], {"pull": False}, PUSH_QUEUE),
        ([7, False], {}, PUSH_QUEUE),
        ([7], {}, "celery"),
        ([7], {"pull": True, "push": False}, "celery"),
    ],
)
def test_a_push_only_cycle_goes_to_the_push_queue_and_every_other_cycle_to_the_default(
    args: list[Any], kwargs: dict[str, Any], queue: str
) -> None:
    app = tasks.sync_peer.app
    assert _queue_of(app, "configsync.tasks.sync_peer", args, kwargs) == queue


def test_other_tasks_keep_the_default_queue_and_a_worker_without_q_consumes_both() -> None:
    app = tasks.sync_peer.app
    assert _queue_of(app, "configsync.tasks.sync_all_peers", [], {}) == "celery"
    assert _queue_of(app, "configsync.tasks.heartbeat", [], {}) == "celery"
    assert _queue_of(app, "configsync.tasks.push_to_peers", [], {}) == PUSH_QUEUE
    assert route_task("configsync.tasks.notify_data_callback", [], {}, {}) is None
    assert set(app.amqp.queues) == {"celery", PUSH_QUEUE}


def test_the_procfile_runs_a_solo_pusher_of_the_push_queue_beside_a_worker_of_the_default() -> None:
    entries = dict(
        line.split(":", 1) for line in PROCFILE.read_text().splitlines() if line[:1].isalpha()
    )
    worker, pusher = (shlex.split(entries[name]) for name in ("worker", "pusher"))
    assert worker[:4] == pusher[:4] == ["celery", "-A", "settings", "worker"]
    assert worker[worker.index("-Q") + 1] == "celery"
    assert pusher[pusher.index("-Q") + 1] == PUSH_QUEUE
    assert "--pool=solo" in pusher


@pytest.fixture
def queues() -> Iterator[dict[str, Any]]:
    """The broker's ``celery`` and ``push`` queues, emptied before and after the test."""
    app = tasks.sync_peer.app
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in app.amqp.queues.values():
            queue(channel).declare()
            queue(channel).purge()
        yield {name: queue(channel) for name, queue in app.amqp.queues.items()}
        for queue in app.amqp.queues.values():
            queue(channel).purge()


def _drain(queue: Any) -> list[tuple[str, list[Any], dict[str, Any]]]:
    """Every message left in ``queue``: (task name, arguments, keyword arguments)."""
    taken = []
    while (message := queue.get(no_ack=True)) is not None:
        body = message.body if isinstance(message.body, bytes | str) else json.dumps(message.body)
        args, kwargs, _embed = json.loads(body)
        taken.append((message.headers["task"], args, kwargs))
    return taken


def test_a_committed_write_publishes_its_push_to_the_push_queue_alone(
    settings: Any, queues: dict[str, Any]
) -> None:
    use_replication_settings(settings)
    peer: Peer = PeerFactory(name="remote", base_url="http://127.0.0.1:9")
    system_config_set(key="PUSHED_THROUGH_ITS_QUEUE", value="v")
    assert _drain(queues[PUSH_QUEUE]) == [
        ("configsync.tasks.sync_peer", [peer.pk], {"pull": False})
    ]
    assert _drain(queues["celery"]) == []
