import pytest

from configsync.selectors.replication import feed_page
from configsync.services.system_config import system_config_delete, system_config_set


@pytest.mark.django_db
def test_smoke(canary):
    system_config_set(key="A", value="1")
    system_config_set(key="S", value=canary, is_sensitive=True)
    system_config_delete(key="A")
    page = feed_page(cursor="", limit=10)
    print(page)
    assert len(page.changes) == 2
