"""``CONFIGSYNC_TEST_MERGE_RULE``: the test-only switch that breaks the merge rule on purpose.

``broken`` makes this node keep its own version in every conflict (the convergence tests must
catch it: ``tests/chaos/test_state_machine.py``); unset, the later version wins as always. Check
``configsync.E023`` refuses the switch outside ``settings.local`` and ``settings.test`` (and
``settings.production`` refuses the variable at start-up: ``tests/settings/test_environment.py``).
"""

from __future__ import annotations

from typing import Any

import pytest

from configsync.models import Conflict, SystemConfig
from configsync.replication.checks import check_test_merge_rule
from configsync.replication.hlc import physical_now_ms
from configsync.replication.services.apply import changes_apply
from configsync.services.system_config import system_config_set
from tests.support.replication import REMOTE, remote_change, stamp


def _later_remote_edit() -> str:
    """A local edit of ``K``, then a concurrent later one from ``REMOTE``; the winner's value."""
    system_config_set(key="K", value="local")
    later = stamp(REMOTE, wall=physical_now_ms() + 1000)
    changes_apply(
        changes=[remote_change("K", "remote", hlc=later)], source_node=REMOTE, source_name="p"
    )
    assert Conflict.objects.count() == 1
    return SystemConfig.objects.get(key="K").value


@pytest.mark.django_db
def test_the_real_rule_takes_the_later_version(settings: Any) -> None:
    settings.CONFIGSYNC_TEST_MERGE_RULE = ""
    assert _later_remote_edit() == "remote"


@pytest.mark.django_db
def test_the_broken_rule_keeps_the_local_version(settings: Any) -> None:
    settings.CONFIGSYNC_TEST_MERGE_RULE = "broken"
    assert _later_remote_edit() == "local"
    assert Conflict.objects.get().winner == "local"


def test_the_switch_is_allowed_only_under_the_local_and_test_settings(settings: Any) -> None:
    settings.CONFIGSYNC_TEST_MERGE_RULE = ""
    assert check_test_merge_rule() == []
    settings.CONFIGSYNC_TEST_MERGE_RULE = "broken"
    for module in ("settings.test", "settings.local"):
        settings.SETTINGS_MODULE = module
        assert check_test_merge_rule() == []
    for module in ("settings.production", "mysite.settings"):
        settings.SETTINGS_MODULE = module
        assert [m.id for m in check_test_merge_rule()] == ["configsync.E023"]
    settings.SETTINGS_MODULE = "settings.test"
    settings.CONFIGSYNC_TEST_MERGE_RULE = "lower-node-wins"
    (error,) = check_test_merge_rule()
    assert error.id == "configsync.E023" and "broken" in error.msg
