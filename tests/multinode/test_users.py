"""Users replicate between real nodes: a superuser made with ``createsuperuser`` on ``a`` logs in
to ``b``'s admin over HTTP with the same password, and a new password set on ``b`` reaches ``a``."""

from __future__ import annotations

import pytest

from multinode import Cluster, unique_key, wait_until
from tests.support.multinode import admin_login, create_superuser, set_password

pytestmark = pytest.mark.multinode

CONVERGE = 90.0
PASSWORD = "CANARY-user-password-a1"
NEW_PASSWORD = "CANARY-user-password-b2"


def test_a_user_made_on_a_logs_in_on_b_and_a_new_password_on_b_reaches_a(
    two_nodes: Cluster,
) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    username = unique_key("user").lower()
    create_superuser(a, username, PASSWORD)
    assert admin_login(a, username, PASSWORD)

    wait_until(
        lambda: admin_login(b, username, PASSWORD), timeout=CONVERGE, what="the user logs in on b"
    )

    set_password(b, username, NEW_PASSWORD)
    wait_until(
        lambda: admin_login(a, username, NEW_PASSWORD),
        timeout=CONVERGE,
        what="the new password set on b logs in on a",
    )
    assert not admin_login(a, username, PASSWORD)
    # Only ciphertext of the hash is in either node's change feed.
    for node in (a, b):
        ((data,),) = node.sql(
            "SELECT data FROM configsync_replicatedrecord"
            " WHERE model_label = 'auth.user' AND natural_key = %s",
            [username],
        )
        assert "enc1:" in str(data)
        assert not any(f"{hasher}$" in str(data) for hasher in ("pbkdf2_sha256", "argon2", "md5"))
