"""Fixtures of the task tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.push import push_flags_clear


@pytest.fixture(autouse=True)
def _no_push_flag_outlives_the_test() -> Iterator[None]:
    push_flags_clear()
    yield
    push_flags_clear()
