"""gunicorn's configuration file, read from the working directory (the repository root).

It loads the Django settings once, in the master, before anything is bound or forked: a missing or
malformed variable then stops ``gunicorn settings.wsgi`` with the settings' one line on stderr and
exit status 3 (``settings.environment.startup_guard``), rather than every worker printing it and
the master halting with its own traceback. Command-line options still take precedence.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.local")

from django.conf import settings as _settings

_settings.SECRET_KEY  # noqa: B018 - imports, and so validates, the settings module
