"""Fuzzed ``.env`` files (``configsync/envbridge/envfile.py``) and the bridge that reads them.

Properties: any bytes parse or raise ``EnvSyntaxError`` (with a line number and a reason, never
a value); what parses renders back byte for byte; setting any value on a parsed file and reading
it again gives that value and leaves every other variable as it was (the writer's round trip),
and removing a name removes only it; a bridge run (``env sync``) on any near-valid file either
runs or refuses with an ``EnvBridgeError``, and a refused run changes neither the database nor
the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from hypothesis import given
from hypothesis import strategies as st

from configsync.envbridge.envfile import EnvDocument, EnvSyntaxError
from configsync.envbridge.errors import EnvBridgeError
from configsync.envbridge.service import env_sync
from configsync.models import AuditEvent
from tests.fuzz.strategies import FUZZ, HOSTILE, TEXT, mutated_bytes
from tests.support.fuzz import state

VALID = (
    "\ufeff# configsync .env\n"
    "export SITE_NAME=fuzz\r\n"
    "WORKERS = 4  # inline\n"
    "\n"
    "EMPTY=\n"
    "SINGLE='its' \n"
    'QUOTED="a \\"b\\" \\n c"\n'
    "MULTI='line one\nline two'\n"
    "API_TOKEN=sk-CANARY-env-0001\n"
    "URL=postgres://u:p@h/db\n"
    "HASH=#not-a-comment\n"
    "DOLLAR=$HOME/${X}\n"
    "name.with-dash_1=é🚀\n"
    "LAST=no-newline"
).encode("utf-8")

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,10}", fullmatch=True)
VALUES = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
    st.lists(st.one_of(st.text(max_size=3), HOSTILE), max_size=6)
    .map("".join)
    .filter(lambda v: "\ud800" not in v and "\udfff" not in v),
)
FILES = st.one_of(
    st.binary(max_size=200),
    TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
    mutated_bytes(VALID),
    mutated_bytes(VALID),
    st.lists(
        st.one_of(
            st.builds("{}={}\n".format, NAMES, VALUES),
            st.builds("export {} = '{}'\r\n".format, NAMES, VALUES),
            st.builds('{}="{}"\n'.format, NAMES, VALUES),
            TEXT,
        ),
        max_size=6,
    ).map(lambda lines: "".join(lines).encode("utf-8", "surrogatepass")),
)


def parsed(data: bytes) -> EnvDocument | None:
    try:
        return EnvDocument.parse_bytes(data, path="app.env")
    except EnvSyntaxError as exc:
        assert exc.problems and all(line >= 1 and reason for line, reason in exc.problems)
        assert "sk-CANARY" not in str(exc)
        return None


def test_the_valid_file_parses() -> None:
    document = parsed(VALID)
    assert document is not None and document.values()["QUOTED"] == 'a "b" \n c'


@FUZZ
@given(data=FILES)
def test_any_bytes_parse_and_render_back_byte_for_byte_or_are_refused(data: bytes) -> None:
    document = parsed(data)
    if document is not None:
        assert document.render().encode("utf-8") == data


@FUZZ
@given(data=FILES, name=NAMES, value=VALUES, remove=st.booleans())
def test_a_value_written_into_any_file_reads_back_and_touches_nothing_else(
    data: bytes, name: str, value: str, remove: bool
) -> None:
    document = parsed(data)
    if document is None:
        return
    before = document.values()
    if remove:
        document.remove(name)
        expected = {n: v for n, v in before.items() if n != name}
    else:
        document.set(name, value)
        expected = {**before, name: value}
    again = EnvDocument.parse(document.render())
    assert again.values() == expected
    assert again.render() == document.render()


@pytest.mark.django_db
@FUZZ
@given(data=FILES)
def test_a_bridge_run_on_any_file_runs_or_changes_nothing(
    data: bytes, tmp_path_factory: Any, settings: Any
) -> None:
    path = Path(tmp_path_factory.mktemp("env")) / "app.env"
    path.write_bytes(data)
    path.chmod(0o600)
    settings.CONFIGSYNC_ENV_FILE = str(path)
    with transaction.atomic():
        before, events = state(), AuditEvent.objects.count()
        try:
            env_sync(path=str(path))
        except EnvBridgeError as exc:
            assert "sk-CANARY" not in str(exc)
            assert state() == before and AuditEvent.objects.count() == events
            assert path.read_bytes() == data
        else:
            assert parsed(data) is not None
        transaction.set_rollback(True)
