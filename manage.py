#!/usr/bin/env python
"""Django's command-line utility for configsync."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.local")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A missing or malformed setting is an operator error: one clear line, no traceback.
        sys.stderr.write(f"configsync: configuration error: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
