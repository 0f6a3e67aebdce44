from django.apps import AppConfig


class ConfigsyncConfig(AppConfig):
    name = "configsync"
    verbose_name = "configsync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Connect every receiver and register every system check, one function per subsystem.

        This is the only place configsync wires anything: importing a module never connects a
        receiver nor registers a check (each connection has a ``dispatch_uid``, so calling
        ``ready()`` twice connects nothing twice). Nothing else happens at start-up.
        """
        from configsync import checks, lookup, receivers
        from configsync.crypto import receivers as crypto_receivers
        from configsync.envbridge import receivers as envbridge_receivers
        from configsync.replication import auth as replication_auth
        from configsync.replication import checks as replication_checks
        from configsync.replication import receivers as replication_receivers
        from configsync.replication import registry
        from configsync.snapshots import checks as snapshot_checks

        checks.checks_register()
        replication_checks.checks_register()
        snapshot_checks.checks_register()  # E060: the promotion rules
        receivers.signals_connect()  # the core: node identity at migrate, the data callback
        crypto_receivers.signals_connect()  # the keyring follows its settings
        lookup.signals_connect()  # lookup caches are invalidated on every committed change
        replication_receivers.signals_connect()  # local writes become changes; push on write
        envbridge_receivers.signals_connect()  # the .env file follows committed changes

        registry.register(
            "configsync.systemconfig",
            natural_key_field="key",
            data_type="system_config",
            critical=True,
        )
        replication_auth.auth_register()  # django.contrib.auth users and groups
