"""Settings of a multi-node test node that carries the test app (data types ``projects`` and
``templates``): the README's development settings plus ``tests.testapp``.

Selected per node with ``DJANGO_SETTINGS_MODULE=tests.testapp.node_settings`` (the harness's
``node_env``); everything else comes from the environment, as for ``settings.local``.
"""

from settings.local import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]  # noqa: F405
