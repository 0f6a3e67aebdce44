"""The admin form of AI providers: a write-only API key, each kind's rules checked on clean.

The widgets and the rules are configsync's (``configsync.forms``): the key is never rendered into
HTML, the form refuses to save over a change made since it was loaded, and it refuses to redirect
a stored key (a change of ``base_url``, ``endpoint`` or ``kind`` while a key is kept) unless its
``may_reveal`` is true or the key is entered again. ``ai_provider_set`` enforces the same rule.

Every option field's widget carries ``data-provider-kinds`` (the kinds that use it); the admin's
``providers/kind_fields.js`` shows only the selected kind's fields.
"""

from __future__ import annotations

from typing import Any

from django.utils.html import format_html

from configsync.forms import CLEAR, SecretField, SecretInput, VersionedModelForm
from providers.models import AIProviderConfig
from providers.registry import KINDS, OPTION_FIELDS
from providers.services import DESTINATION_FIELDS, DISABLED_DEFAULT, REDIRECT_NEEDS_REVEAL


class KindSecretInput(SecretInput):
    """:class:`SecretInput` wrapped in an element carrying ``data-provider-kinds`` (the base
    widget renders no extra attributes)."""

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> Any:
        return format_html(
            '<div data-provider-kinds="{}" data-provider-field="{}">{}</div>',
            self.attrs.get("data-provider-kinds", ""),
            name,
            super().render(name, value, attrs, renderer),
        )


def kinds_using(field: str) -> list[str]:
    """The provider kinds that use option ``field`` (``providers.registry``)."""
    return [spec.kind for spec in KINDS.values() if field in spec.allowed]


class AIProviderConfigAdminForm(VersionedModelForm):
    """The provider's fields with a write-only API key; the kind's rules are checked on clean."""

    api_key = SecretField(
        label="API key",
        help_text="Write-only: leave blank to keep the stored key; tick clear to remove it.",
    )

    class Meta:
        model = AIProviderConfig
        fields = (
            "name",
            "kind",
            *(name for name in OPTION_FIELDS if name != "api_key"),
            "enabled",
            "is_default",
        )
        exclude = ("api_key",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["api_key"].widget = KindSecretInput(is_set=self.instance.has_api_key)
        for name in OPTION_FIELDS:
            if name in self.fields:
                self.fields[name].widget.attrs["data-provider-kinds"] = " ".join(kinds_using(name))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("is_default") and not cleaned.get("enabled"):
            self.add_error("is_default", DISABLED_DEFAULT)
        # Put the submitted key on the (never saved) instance so that the model's clean(), which
        # holds each kind's rules, judges the submission; the admin saves through the service.
        api_key = cleaned.get("api_key")
        instance: AIProviderConfig = self.instance
        if instance.pk is not None and instance.has_api_key and api_key is None:
            moved = [
                name
                for name in DESTINATION_FIELDS
                if name in cleaned and cleaned[name] != self.initial.get(name)
            ]
            if moved and not self.may_reveal:
                for name in moved:
                    self.add_error(name, REDIRECT_NEEDS_REVEAL.format(fields=", ".join(moved)))
                return cleaned
        if api_key is CLEAR:
            self.instance.api_key = None
        elif api_key:
            self.instance.api_key = api_key
        return cleaned

    def service_arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``ai_provider_set`` for this submission."""
        data = self.cleaned_data
        api_key = data.get("api_key")
        arguments: dict[str, Any] = {
            "name": self.instance.name if self.instance.pk else data["name"],
            "kind": data["kind"],
            "enabled": data["enabled"],
            "is_default": data["is_default"],
            "api_key": "" if api_key is CLEAR else api_key,
        }
        for name in OPTION_FIELDS:
            if name != "api_key":
                arguments[name] = data.get(name, "")
        return arguments
