"""Which stored records of replicated models fail the validation every write passes now.

Read by system check W040 (``configsync.replication.checks``); reads only.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

from configsync.replication import registry


def stored_records_invalid(*, limit: int = 100) -> list[tuple[str, str, str]]:
    """Stored records of replicated models that fail the validation every write passes now,
    as ``(model label, natural key, reasons)``, at most ``limit`` of them.

    Rows written before received versions were validated, or loaded with raw fixtures, may hold
    a value no read path can use (a value that does not parse as its type, a token bound to
    another record). Reasons name fields and rules, never values; tokens of a key this node lacks
    are not verified. Reads every record (decrypting each token to verify it, keeping nothing).
    """
    found: list[tuple[str, str, str]] = []
    for rm in registry.all_registered():
        for instance in rm.model._default_manager.order_by("pk").iterator():
            try:
                rm.validate(instance)
            except ValidationError as exc:
                reasons = "; ".join(
                    f"{name}: {', '.join(str(m) for m in messages)}"
                    for name, messages in getattr(
                        exc, "message_dict", {"data": exc.messages}
                    ).items()
                )
                found.append((rm.label, rm.natural_key(instance), reasons))
                if len(found) >= limit:
                    return found
    return found
