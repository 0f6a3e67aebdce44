from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "providers"
    verbose_name = "AI providers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the provider model for replication, with its validation (the rules
        ``ai_provider_set`` applies) and its one-default rule, and for lookup invalidation
        (``providers.get_ai_config`` reads through ``configsync.lookup``); nothing else."""
        from configsync.lookup import invalidate_on_change
        from configsync.replication import hooks, registry
        from providers.services import ai_provider_default_claim

        invalidate_on_change("providers.AIProviderConfig")

        registry.register(
            "providers.aiproviderconfig",
            natural_key_field="name",
            data_type="ai_providers",
            critical=True,
        )
        hooks.register_before_apply(
            "providers.aiproviderconfig",
            lambda instance: ai_provider_default_claim(provider=instance),  # type: ignore[arg-type]
        )
        registry.register_validation(
            "providers.aiproviderconfig",
            # What ai_provider_set runs; the model's clean() verifies the API key's token.
            lambda instance: instance.full_clean(exclude=["api_key"], validate_unique=False),
        )
