"""Subcommands of ``manage.py configsync``.

Every module in this package defines ``register(subparsers)``, which adds its subcommands and
sets ``handler=<callable(command, options)>`` on each parser. Handlers raise
``CommandError(reason, returncode=1)`` for a failure; a value printed on purpose comes last, on its
own line. The ``configsync`` management command discovers the modules; nothing else to wire.
"""
