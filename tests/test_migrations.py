"""Every model change ships with its migration.

0.1.0 is released: migrations are ordinary numbered ones from now on, never a regenerated
``0001``. ``makemigrations --check`` fails when a model differs from what the migrations build
(CI's ``make test`` also runs it, as ``make migrations-check``).
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from configsync.models import SystemConfig

pytestmark = pytest.mark.django_db


def makemigrations_check() -> tuple[int, str]:
    """``makemigrations --check --dry-run``: its exit status and what it printed."""
    out = io.StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


def test_no_model_change_lacks_its_migration() -> None:
    code, output = makemigrations_check()
    assert code == 0, f"a model change has no migration (run makemigrations):\n{output}"
    assert "No changes detected" in output


def test_the_check_fails_on_a_model_change_without_a_migration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    field = SystemConfig._meta.get_field("description")
    monkeypatch.setattr(field, "help_text", "changed without a migration")
    code, output = makemigrations_check()
    assert code == 1
    assert "description" in output
