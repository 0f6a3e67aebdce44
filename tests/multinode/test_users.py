"""Users replicate between real nodes: a superuser made with ``createsuperuser`` on ``a`` logs in
to ``b``'s admin over HTTP with the same password, and a new password set on ``b`` reaches ``a``."""

from __future__ import annotations

import subprocess

import pytest
import requests

from multinode import Cluster, unique_key, wait_until
from multinode.cluster import PYTHON, REPO, Node

pytestmark = pytest.mark.multinode

CONVERGE = 90.0
PASSWORD = "CANARY-user-password-a1"
NEW_PASSWORD = "CANARY-user-password-b2"


def admin_login(node: Node, username: str, password: str) -> bool:
    """A real login through ``node``'s admin login form; whether it gave a session."""
    with requests.Session() as session:
        login = f"{node.base_url}/admin/login/"
        session.get(login, timeout=10)
        response = session.post(
            login,
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": session.cookies.get("csrftoken", ""),
                "next": "/admin/",
            },
            headers={"Referer": login},
            timeout=10,
        )
        response.raise_for_status()
        if "sessionid" not in session.cookies:
            return False
        return session.get(f"{node.base_url}/admin/", timeout=10).url.rstrip("/").endswith("/admin")


def test_a_user_made_on_a_logs_in_on_b_and_a_new_password_on_b_reaches_a(
    two_nodes: Cluster,
) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    username = unique_key("user").lower()
    made = subprocess.run(
        [
            PYTHON,
            "manage.py",
            "createsuperuser",
            "--noinput",
            "--username",
            username,
            "--email",
            f"{username}@example.invalid",
        ],
        cwd=REPO,
        env={**a.env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    assert admin_login(a, username, PASSWORD)

    wait_until(
        lambda: admin_login(b, username, PASSWORD), timeout=CONVERGE, what="the user logs in on b"
    )

    b.shell(
        "from django.contrib.auth.models import User\n"
        f"user = User.objects.get(username={username!r})\n"
        f"user.set_password({NEW_PASSWORD!r})\n"
        "user.save()\n"
    )
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
