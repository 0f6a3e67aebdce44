from django.apps import AppConfig


class TestappConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"
    verbose_name = "test app"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register both models for replication through the public call, as a user would."""
        import configsync

        from .models import Project, Template

        configsync.replicate(Project, natural_key="slug", data_type="projects", critical=False)
        configsync.replicate(Template, natural_key="slug", data_type="templates", critical=False)
