from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "providers"
    verbose_name = "AI providers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the provider model for replication; nothing else happens at start-up."""
        from configsync.replication import registry

        registry.register("providers.aiproviderconfig", natural_key_field="name")
