"""``configsync sync`` and ``diff`` from the command line: failures are one-line reasons, exit 1."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from django.core.management import call_command

from configsync.models import SyncRun
from tests.factories import PeerFactory

pytestmark = pytest.mark.django_db


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(capsys: Any, *args: str) -> tuple[int, str, str]:
    try:
        call_command("configsync", *args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_sync_without_peers_says_so(capsys: Any) -> None:
    code, _, err = run(capsys, "sync")
    assert code == 1 and "no peers for deployment mode" in err


def test_sync_with_a_down_peer_fails_for_it_and_records_the_run(capsys: Any, settings: Any) -> None:
    settings.CONFIGSYNC_PEERS = [f"down=http://127.0.0.1:{_closed_port()}"]
    settings.CONFIGSYNC_PEER_TIMEOUT_SECONDS = 2
    code, out, err = run(capsys, "sync")
    assert code == 1
    assert "peer down: pulled 0" in out and "FAILED" in out
    assert "sync failed with down" in err and "unreachable" in err
    assert len(err.strip().splitlines()) == 1
    run_row = SyncRun.objects.get(peer__name="down")
    assert not run_row.ok and "unreachable" in run_row.error


def test_unknown_peer_names_are_refused(capsys: Any) -> None:
    PeerFactory(name="known")
    for args in (("sync", "--peer", "nope"), ("diff", "--peer", "nope")):
        code, _, err = run(capsys, *args)
        assert code == 1 and "no peer named 'nope'" in err


def test_diff_with_a_down_peer_is_a_one_line_failure(capsys: Any, settings: Any) -> None:
    settings.CONFIGSYNC_PEER_TIMEOUT_SECONDS = 2
    PeerFactory(name="down", base_url=f"http://127.0.0.1:{_closed_port()}")
    code, _, err = run(capsys, "diff", "--peer", "down", "--json")
    assert code == 1 and "unreachable" in err and len(err.strip().splitlines()) == 1
