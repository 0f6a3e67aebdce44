"""A first end-to-end check of the foundation; the full proofs live beside each area's code."""

import pytest
from django.db import connection

from configsync import get_system_config
from configsync.services.system_config import system_config_set


@pytest.mark.django_db
def test_sensitive_value_is_stored_only_as_ciphertext(canary: str) -> None:
    system_config_set(key="OPENAI_API_KEY", value=canary, is_sensitive=True)

    with connection.cursor() as cursor:
        cursor.execute("SELECT value, secret_value FROM configsync_systemconfig")
        value, secret = cursor.fetchone()
    assert canary not in value and canary not in secret
    assert secret.startswith("enc1:")
    assert get_system_config("OPENAI_API_KEY") == canary
