"""Producer processes for the broker tests: publish a range of numbered messages, then exit.

``python -m tests.broker.producer task FIRST COUNT OUTPUT`` sends ``tests.broker.record`` tasks
through the project's Celery app, loading the settings exactly as web, worker and beat do.
``python -m tests.broker.producer raw FIRST COUNT FOLDER`` publishes ``{"n": number}`` to the
queue ``stress`` of the embedded transport on ``FOLDER`` (no Django).
"""

from __future__ import annotations

import sys
import time

PADDING = 1024 * 1024
PACE_SECONDS = 0.03
"""Paced so that the consumer keeps up and often reads the newest file."""


def padding(number: int) -> str:
    # Every fifth message is large: the bigger a message, the longer kombu's stock filesystem
    # transport shows it half-written under its final name.
    return "x" * PADDING if number % 5 == 0 else ""


def raw_options(folder: str) -> dict[str, object]:
    return {
        "data_folder_in": f"{folder}/broker",
        "data_folder_out": f"{folder}/broker",
        "control_folder": f"{folder}/control",
        "polling_interval": 0,
    }


def publish_tasks(first: int, count: int, output: str) -> None:
    import django

    django.setup()
    from settings.celery import app

    with app.producer_or_acquire() as producer:
        for number in range(first, first + count):
            app.send_task(
                "tests.broker.record",
                args=[number, output, padding(number)],
                producer=producer,
            )
            time.sleep(PACE_SECONDS)


def publish_raw(first: int, count: int, folder: str) -> None:
    from kombu import Connection

    with (
        Connection(
            "filesystem://",
            transport="configsync.broker:Transport",
            transport_options=raw_options(folder),
        ) as connection,
        connection.SimpleQueue("stress") as queue,
    ):
        for number in range(first, first + count):
            queue.put({"n": number, "padding": padding(number)}, serializer="json")


def main() -> None:
    mode, first, count, target = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    (publish_tasks if mode == "task" else publish_raw)(first, count, target)


if __name__ == "__main__":
    main()
