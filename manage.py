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

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A missing or malformed setting is an operator error: one clear line, no traceback.
        sys.stderr.write(f"configsync: configuration error: {exc}\n")
        sys.exit(2)
    except ConfigsyncError as exc:
        # An unusable key or an unreadable value met by any command (messages never hold values).
        sys.stderr.write(f"configsync: {exc}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
