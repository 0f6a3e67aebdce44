"""Django's users and groups as replicated models (registered from ``ConfigsyncConfig.ready()``).

``auth.user`` replicates by ``username``: names, email, the active/staff/superuser flags,
``date_joined``, its groups by name and its own permissions by natural key, and the password
hash as a *sensitive* field (encrypted with the keyring on the wire, in the change feed and in
kept conflicts; see the registry). ``last_login`` stays local: it changes on every login and
would make each login a new version on every node. ``auth.group`` replicates by ``name`` with its
permissions by natural key (``[codename, app_label, model]``). Permissions and content types are
not replicated: ``migrate`` makes them from the code on each node.

A received user passes the model's own ``full_clean`` (the password excluded: it is a hash, not
a field value to validate) and its password must be a hash one of ``PASSWORD_HASHERS`` knows or
an unusable password (``!`` prefix) or empty (a user made without one); a group passes its
``full_clean`` (the registry's default).
"""

from __future__ import annotations

from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX, identify_hasher
from django.core.exceptions import ValidationError
from django.db import models

from configsync.replication import registry

USER_LABEL = "auth.user"
GROUP_LABEL = "auth.group"


def user_validate(instance: models.Model) -> None:
    """A received user is what a local write could store; never names a value."""
    errors: dict[str, list[ValidationError]] = {}
    try:
        instance.full_clean(exclude=["password"], validate_unique=False)
    except ValidationError as exc:
        errors.update(exc.error_dict)
    password = getattr(instance, "password", "") or ""
    # Empty is what a user made without a password (``User.objects.create``) stores: no
    # password matches it (Django's check_password), like the unusable ``!`` form. A node must
    # take from a peer every user a local write could store, or the two never converge.
    if password and not password.startswith(UNUSABLE_PASSWORD_PREFIX):
        try:
            identify_hasher(password)
        except ValueError:
            errors["password"] = [
                ValidationError("is not a password hash this node knows", code="invalid_type")
            ]
    if errors:
        raise ValidationError(errors)


def auth_register() -> None:
    """Register users and groups with replication (idempotent)."""
    registry.register(
        GROUP_LABEL,
        natural_key_field="name",
        many_to_many=("permissions",),
        data_type="users",
        critical=True,
    )
    registry.register(
        USER_LABEL,
        natural_key_field="username",
        data_type="users",
        critical=True,
        exclude=("last_login",),
        sensitive=("password",),
        many_to_many=("groups", "user_permissions"),
    )
    registry.register_validation(USER_LABEL, user_validate)
