"""Create-or-update services that survive another transaction creating the same record first.

``system_config_set`` and ``ai_provider_set`` read the record ``select_for_update`` and create it
when there is none. A row that does not exist yet cannot be locked, so a concurrent writer (an
applied replicated change, another web process) can insert the same natural key between our read
and our insert; on PostgreSQL our insert then fails with ``IntegrityError`` once that transaction
commits. The same holds for a partial unique constraint such as "one default provider". Such a
write is retried once, in a fresh savepoint: by then the competing row is committed and visible
(READ COMMITTED), so the retry takes its lock and updates it — the outcome of the two writes
arriving one after the other. SQLite serializes writers (``BEGIN IMMEDIATE``) and never gets here.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import IntegrityError, transaction

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


def retry_on_concurrent_create(func: Callable[P, T]) -> Callable[P, T]:
    """Run ``func`` atomically (a savepoint inside a transaction); on ``IntegrityError`` once more.

    ``func`` must re-read what it writes (it does not keep state between the two attempts). A
    second ``IntegrityError`` propagates: it is not a race then.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            with transaction.atomic():
                return func(*args, **kwargs)
        except IntegrityError as exc:
            logger.info(
                "%s: a concurrent write created the same record first (%s); retrying once",
                func.__name__,
                type(exc).__name__,
            )
        with transaction.atomic():
            return func(*args, **kwargs)

    return wrapper
