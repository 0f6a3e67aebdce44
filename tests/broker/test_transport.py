"""``configsync.broker``: the embedded transport shows readers whole files only.

A consumer reading as fast as it can while several producer processes publish large and small
messages: with kombu's stock filesystem transport (``kombu.transport.filesystem:Transport`` in
both places below) it meets a file still being written within the first few hundred messages
(``JSONDecodeError``, kombu issue #1551); with ours every message arrives whole, exactly once.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from kombu import Connection
from kombu.exceptions import ChannelError

from tests.broker.producer import raw_options

# The embedded filesystem broker between processes: the same in either CI pass (one_pass).
pytestmark = pytest.mark.one_pass

ROOT = Path(__file__).resolve().parents[2]
TRANSPORT = "configsync.broker:Transport"


def connect(folder: Path) -> Connection:
    (folder / "broker").mkdir(parents=True, exist_ok=True)
    return Connection(
        "filesystem://", transport=TRANSPORT, transport_options=raw_options(str(folder))
    )


def producers(folder: Path, count: int, per_producer: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "tests.broker.producer", "raw"),
                *(str(index * per_producer), str(per_producer), str(folder)),
            ],
            cwd=ROOT,
        )
        for index in range(count)
    ]


def test_a_fast_consumer_reads_every_concurrent_message_whole_and_once(tmp_path: Path) -> None:
    count, per_producer = 4, 150
    total = count * per_producer
    received: Counter[int] = Counter()
    with connect(tmp_path) as connection, connection.SimpleQueue("stress") as queue:
        running = producers(tmp_path, count, per_producer)
        while sum(received.values()) < total:
            try:
                message = queue.get(block=True, timeout=1)
            except queue.Empty:
                # Every producer done and the queue drained: nothing more will come.
                if all(process.poll() is not None for process in running):
                    break
                continue
            received[message.payload["n"]] += 1
            message.ack()
        assert [process.wait(timeout=120) for process in running] == [0] * count
    assert sorted(received) == list(range(total))
    assert [number for number, times in received.items() if times != 1] == []
    # Nothing half-written or unread is left behind, and no temporary file either.
    assert os.listdir(tmp_path / "broker") == []
    assert os.listdir(tmp_path / "claimed") == []


def test_an_unreadable_message_is_set_aside_and_the_next_one_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with connect(tmp_path) as connection, connection.SimpleQueue("stress") as queue:
        # A damaged file (as the stock transport could leave) ahead of a good message.
        (tmp_path / "broker" / "0_00000000-0000-0000-0000-000000000000.stress.msg").write_text("")
        queue.put({"n": 1}, serializer="json")
        with caplog.at_level(logging.ERROR, logger="configsync.broker"):
            message = queue.get(block=True, timeout=5)
        assert message.payload == {"n": 1}
        message.ack()
    assert os.listdir(tmp_path / "rejected") == [
        "0_00000000-0000-0000-0000-000000000000.stress.msg"
    ]
    assert "unreadable message set aside" in caplog.text


def test_concurrent_binds_keep_every_queue_in_the_exchange_table(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from kombu import Connection, Exchange, Queue\n"
        "from tests.broker.producer import raw_options\n"
        "first = int(sys.argv[1])\n"
        f"with Connection('filesystem://', transport={TRANSPORT!r},\n"
        f"                transport_options=raw_options({str(tmp_path)!r})) as c:\n"
        "    exchange = Exchange('fan', type='fanout')\n"
        "    for n in range(first, first + 25):\n"
        "        Queue(f'q{n}', exchange)(c.default_channel).declare()\n"
    )
    (tmp_path / "broker").mkdir()
    running = [
        subprocess.Popen([sys.executable, "-c", script, str(index * 25)], cwd=ROOT)
        for index in range(4)
    ]
    assert [process.wait(timeout=120) for process in running] == [0] * 4
    table = json.loads((tmp_path / "control" / "fan.exchange").read_text())
    assert sorted(queue for _, _, queue in table) == sorted(f"q{n}" for n in range(100))


CONSUME_AND_HANG = (
    "import sys, time\n"
    "from kombu import Connection\n"
    "from tests.broker.producer import raw_options\n"
    f"with Connection('filesystem://', transport={TRANSPORT!r},\n"
    "                transport_options=raw_options(sys.argv[1])) as c:\n"
    "    message = c.SimpleQueue('stress').get(block=True, timeout=30)\n"
    "    print(message.payload['n'], flush=True)\n"
    "    time.sleep(300)\n"
)


def test_a_message_taken_by_a_consumer_killed_before_its_ack_is_delivered_again(
    tmp_path: Path,
) -> None:
    # acks_late promises at-least-once: a worker killed (kill -9, or honcho's SIGKILL when a
    # warm shutdown outlasts its five seconds) after taking a task and before acknowledging it
    # must not have taken the task with it.
    with connect(tmp_path) as connection, connection.SimpleQueue("stress") as queue:
        queue.put({"n": 7}, serializer="json")
    consumer = subprocess.Popen(
        [sys.executable, "-c", CONSUME_AND_HANG, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE
    )
    try:
        assert consumer.stdout is not None
        assert consumer.stdout.readline().strip() == b"7"
    finally:
        consumer.kill()
        consumer.wait(timeout=30)
    with connect(tmp_path) as connection, connection.SimpleQueue("stress") as queue:
        message = queue.get(block=True, timeout=5)
        assert message.payload == {"n": 7}
        message.ack()
    assert os.listdir(tmp_path / "broker") == []
    assert os.listdir(tmp_path / "claimed") == []


def test_a_live_consumers_unacknowledged_message_is_not_taken_by_another(tmp_path: Path) -> None:
    with connect(tmp_path) as first, first.SimpleQueue("stress") as first_queue:
        first_queue.put({"n": 1}, serializer="json")
        message = first_queue.get(block=True, timeout=5)
        with (
            connect(tmp_path) as second,
            second.SimpleQueue("stress") as second_queue,
            pytest.raises(second_queue.Empty),
        ):
            second_queue.get(block=True, timeout=0.5)
        message.ack()
    assert os.listdir(tmp_path / "claimed") == []


def claimed_messages(folder: Path) -> int:
    return sum(1 for path in (folder / "claimed").rglob("*.msg"))


def test_rejected_requeued_and_no_ack_messages_leave_no_claim_behind(tmp_path: Path) -> None:
    with connect(tmp_path) as connection, connection.SimpleQueue("stress") as queue:
        queue.put({"n": 1}, serializer="json")
        queue.get(block=True, timeout=5).requeue()
        assert claimed_messages(tmp_path) == 0
        again = queue.get(block=True, timeout=5)
        assert again.payload == {"n": 1}
        again.reject()
        assert claimed_messages(tmp_path) == 0
        queue.put({"n": 2}, serializer="json")
        assert queue.get_nowait().payload == {"n": 2}  # not acknowledged: restored on close
        queue.put({"n": 3}, serializer="json")
        channel = connection.default_channel
        got = channel.basic_get("stress", no_ack=True)
        assert got is not None
        assert claimed_messages(tmp_path) == 1  # {"n": 2}'s, until it is acknowledged
    with connect(tmp_path) as connection, connection.SimpleQueue("stress") as queue:
        restored = queue.get(block=True, timeout=5)
        assert restored.payload == {"n": 2}
        restored.ack()
        with pytest.raises(queue.Empty):
            queue.get(block=True, timeout=0.5)
    assert os.listdir(tmp_path / "broker") == []
    assert os.listdir(tmp_path / "claimed") == []


def test_a_message_claimed_but_not_read_goes_back_when_the_channel_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with connect(tmp_path) as connection, connection.SimpleQueue("stress") as queue:
        queue.put({"n": 5}, serializer="json")
        with monkeypatch.context() as patch:
            patch.setattr(Path, "read_bytes", lambda self: (_ for _ in ()).throw(OSError(5, "EIO")))
            with pytest.raises(ChannelError):
                queue.get(block=True, timeout=5)
    with connect(tmp_path) as connection, connection.SimpleQueue("stress") as queue:
        message = queue.get(block=True, timeout=5)
        assert message.payload == {"n": 5}
        message.ack()
    assert os.listdir(tmp_path / "claimed") == []
