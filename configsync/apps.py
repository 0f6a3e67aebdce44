from django.apps import AppConfig


class ConfigsyncConfig(AppConfig):
    name = "configsync"
    verbose_name = "configsync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Wire signals and register system checks; nothing else happens at start-up."""
        from configsync import checks, signals  # noqa: F401
        from configsync.replication import registry

        registry.register("configsync.systemconfig", natural_key_field="key")
