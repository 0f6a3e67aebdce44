"""get_system_config in one process: typed values, defaults, the warm path, local invalidation."""

from __future__ import annotations

import os
import threading

import pytest

from configsync import ConfigKeyError, get_system_config
from configsync.lookup import lookup_cache
from configsync.models import LookupVersion
from configsync.services.system_config import system_config_delete, system_config_set

pytestmark = pytest.mark.django_db


def test_typed_and_decrypted(canary: str) -> None:
    system_config_set(key="N", value=3, value_type="int")
    system_config_set(key="F", value="on", value_type="bool")
    system_config_set(key="J", value={"a": [1]}, value_type="json")
    system_config_set(key="S", value=canary, is_sensitive=True)
    assert get_system_config("N") == 3
    assert get_system_config("F") is True
    assert get_system_config("J") == {"a": [1]}
    assert get_system_config("S") == canary


def test_missing_key_raises_key_error_naming_it() -> None:
    with pytest.raises(ConfigKeyError) as info:
        get_system_config("NOT_THERE")
    assert isinstance(info.value, KeyError)
    assert "NOT_THERE" in str(info.value)
    assert get_system_config("NOT_THERE", default=None) is None
    assert get_system_config("NOT_THERE", default=7) == 7


def test_warm_lookup_does_not_touch_the_database(django_assert_num_queries, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CONFIGSYNC_LOOKUP_CHECK_INTERVAL_SECONDS = 3600
    system_config_set(key="N", value=3, value_type="int")
    get_system_config("N")
    get_system_config("MISSING", default=0)
    with django_assert_num_queries(0):
        for _ in range(100):
            assert get_system_config("N") == 3
            assert get_system_config("MISSING", default=0) == 0


def test_local_write_invalidates_at_once() -> None:
    system_config_set(key="N", value=3, value_type="int")
    assert get_system_config("N") == 3
    system_config_set(key="N", value=4)
    assert get_system_config("N") == 4
    system_config_delete(key="N")
    assert get_system_config("N", default="gone") == "gone"


def test_json_values_cannot_be_mutated_through_the_cache() -> None:
    system_config_set(key="J", value={"a": 1}, value_type="json")
    get_system_config("J")["a"] = 2
    assert get_system_config("J") == {"a": 1}


def test_commit_bumps_the_version(django_capture_on_commit_callbacks, settings) -> None:  # type: ignore[no-untyped-def]
    settings.REDIS_URL = ""
    before = LookupVersion.objects.filter(pk=1).values_list("counter", flat=True).first() or 0
    with django_capture_on_commit_callbacks(execute=True):
        system_config_set(key="N", value=1, value_type="int")
    after = LookupVersion.objects.get(pk=1).counter
    assert after > before


def test_version_change_elsewhere_clears_the_cache(settings) -> None:  # type: ignore[no-untyped-def]
    """A bump by another process (a raw counter update here) is noticed on the next check."""
    settings.REDIS_URL = ""
    settings.CONFIGSYNC_LOOKUP_CHECK_INTERVAL_SECONDS = 0
    system_config_set(key="N", value=1, value_type="int")
    assert get_system_config("N") == 1
    # Another process changed the row without our signals firing here:
    from configsync.models import SystemConfig

    SystemConfig.objects.filter(key="N").update(value="2")
    lookup_cache._data[("system", "N")] = 1  # what this process had cached
    LookupVersion.objects.update_or_create(pk=1, defaults={"counter": 10_000})
    assert get_system_config("N") == 2


def test_a_load_racing_an_invalidation_is_not_cached() -> None:
    system_config_set(key="N", value=1, value_type="int")

    def slow_loader(key: object) -> object:
        lookup_cache.invalidate_local()  # a change arrives while we load
        return "stale"

    assert lookup_cache.get("system", "RACE", slow_loader) == "stale"
    assert ("system", "RACE") not in lookup_cache._data


def test_concurrent_readers_and_invalidations() -> None:
    """Readers in threads always get the current value while invalidations run concurrently."""
    current = {"value": 0}
    errors: list[str] = []

    def loader(key: object) -> object:
        return current["value"]

    def read() -> None:
        for _ in range(2000):
            before = current["value"]
            seen = lookup_cache.get("test", "K", loader)
            if not isinstance(seen, int) or seen > current["value"] or seen < before - 1:
                errors.append(f"{seen} outside [{before - 1}, {current['value']}]")

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for step in range(1, 200):
        current["value"] = step
        lookup_cache.invalidate_local()
    for thread in threads:
        thread.join()
    assert errors == []
    assert lookup_cache.get("test", "K", loader) == 199


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_starts_with_an_empty_cache() -> None:
    system_config_set(key="N", value=5, value_type="int")
    get_system_config("N")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report whether the inherited cache was dropped
        os.close(read_fd)
        os.write(write_fd, b"empty" if not lookup_cache._data else b"inherited")
        os._exit(0)
    os.close(write_fd)
    try:
        assert os.read(read_fd, 32) == b"empty"
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="REDIS_URL is not set")
def test_redis_message_clears_the_cache_without_polling(settings) -> None:  # type: ignore[no-untyped-def]
    import time

    from configsync.lookup import RedisVersion

    settings.CONFIGSYNC_LOOKUP_CHECK_INTERVAL_SECONDS = 3600
    lookup_cache.stop()
    lookup_cache._reset()
    loads: list[int] = []

    def loader(key: object) -> int:
        loads.append(1)
        return len(loads)

    try:
        lookup_cache.get("test", "K", loader)  # first use: version read, listener started
        other_process = RedisVersion(os.environ["REDIS_URL"])
        deadline = time.monotonic() + 10
        while not other_process.client.pubsub_numsub(other_process.channel)[0][1]:
            assert time.monotonic() < deadline, "listener never subscribed"
            time.sleep(0.02)
        time.sleep(0.1)  # the subscribe confirmation itself clears the cache once
        before = lookup_cache.get("test", "K", loader)
        assert lookup_cache.get("test", "K", loader) == before  # cached, no polling
        other_process.bump()
        while lookup_cache.get("test", "K", loader) == before:
            assert time.monotonic() < deadline, "pub/sub message did not clear the cache"
            time.sleep(0.01)
    finally:
        lookup_cache.stop()
        lookup_cache._reset()


def test_replicated_change_invalidates_and_broadcasts_once_per_batch(
    django_capture_on_commit_callbacks, settings
) -> None:  # type: ignore[no-untyped-def]
    """A batch applied by replication clears the cache and bumps the version exactly once."""
    from configsync.replication.services.apply import changes_apply
    from tests.support.replication import REMOTE, remote_change

    settings.REDIS_URL = ""
    settings.CONFIGSYNC_NODE_ID = "node-local"
    settings.CONFIGSYNC_LOOKUP_CHECK_INTERVAL_SECONDS = 3600  # no version check in between
    with django_capture_on_commit_callbacks(execute=True):
        system_config_set(key="N", value="1")
    assert get_system_config("N") == "1"
    before = LookupVersion.objects.get(pk=1).counter

    with django_capture_on_commit_callbacks(execute=True):
        results = changes_apply(
            changes=[remote_change("N", "2"), remote_change("M", "3"), remote_change("O", "4")],
            source_node=REMOTE,
            source_name="peer",
        )

    # N was also written here, so its remote version is concurrent: a conflict the later one wins.
    assert [r.status for r in results] == ["conflict", "applied", "applied"]
    assert get_system_config("N") == "2"
    assert LookupVersion.objects.get(pk=1).counter == before + 1
