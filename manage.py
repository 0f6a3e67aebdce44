#!/usr/bin/env python
"""Django's command-line utility for configsync."""

import os
import sys


def main() -> None:
    if sys.argv[1:] == ["configsync", "keys", "generate"]:
        # Generating a key needs no settings: it must work before any key (or setting) exists,
        # e.g. under settings.production, which refuses to load without keys.
        from configsync.crypto.keyring import generate_key

        sys.stdout.write(generate_key() + "\n")
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.local")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    from configsync.crypto.errors import ConfigsyncError
    from settings.environment import stop_on_configuration_error

    try:
        # The settings stop start-up themselves (one line, exit 3) when a variable is wrong.
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # Any other missing or malformed setting met by a command: the same one line and status.
        stop_on_configuration_error(exc)
    except ConfigsyncError as exc:
        # An unusable key or an unreadable value met by any command (messages never hold values).
        sys.stderr.write(f"configsync: {exc}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
