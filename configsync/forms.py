"""Admin forms and widgets for configsync's models (the admin itself stays thin: it calls services).

The widgets (:class:`SecretInput`, :class:`SecretField`) and :class:`VersionedModelForm` are for
every app whose model holds a secret (``providers.forms`` builds on them).

The rule these forms enforce: a secret is never rendered into HTML — not as a value, not in a
password input, not when a submission with errors is shown again. A secret is shown as "set" or
"not set" beside an empty, write-only input: left blank it keeps the stored value, filled in it
replaces it, and the "clear" box removes it.

Optimistic concurrency: each change form carries the record's version token
(:func:`configsync.versioning.record_etag`) in a hidden field and refuses to save when the record
changed since the form was loaded (edited by someone else, or replicated from a peer).

Reveals: a form refuses a change that would reveal a stored secret (make a sensitive setting plain
keeping its value, re-check a kept secret under another type) or redirect it (another app's form,
such as a provider's URL or kind while it holds a key, unless the key is entered again) unless its
``may_reveal`` is true; the admin sets it from the user's reveal right. The services enforce the
same rule again.
"""

from __future__ import annotations

import contextlib
from typing import Any

from django import forms
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.utils.html import format_html

from configsync.crypto.errors import DecryptionError
from configsync.logging import register_secret
from configsync.models import SystemConfig
from configsync.schema import Declaration, declaration_get
from configsync.sensitivity import SensitivityDecision, sensitivity_decide
from configsync.services.system_config import MAKE_PLAIN_NEEDS_REVEAL, RETYPE_NEEDS_REVEAL
from configsync.value_types import ValueType, value_parse, value_serialize
from configsync.versioning import record_etag

CONFIRM_MAKE_PLAIN = "_confirm_make_plain"
"""Posted by the admin's confirmation page when the user agreed to make a secret plain."""


class Clear:
    """The value a :class:`SecretInput` submits when its "clear" box is ticked."""

    def __repr__(self) -> str:
        return "CLEAR"


CLEAR = Clear()


def makes_secret_plain(instance: SystemConfig, data: Any) -> bool:
    """Whether the submitted change-form ``data`` turns ``instance``'s stored secret into plain
    text: the record holds a secret, "sensitive" is unticked and the value is neither replaced nor
    cleared."""
    return (
        instance.pk is not None
        and instance.is_sensitive
        and instance.has_value
        and not data.get("is_sensitive")
        and not data.get("value")
        and data.get("value_clear") not in ("on", "true", "1")
    )


class SecretInput(forms.Widget):
    """Write-only input: shows only whether a secret is set; never renders any value.

    ``is_set`` is decided by the form from the stored record (without decrypting it).
    """

    def __init__(self, attrs: dict[str, Any] | None = None, *, is_set: bool = False) -> None:
        super().__init__(attrs)
        self.is_set = is_set

    def render(
        self,
        name: str,
        value: Any,
        attrs: dict[str, Any] | None = None,
        renderer: Any = None,
    ) -> Any:
        # ``value`` (bound data or initial) is deliberately ignored: nothing is echoed back.
        final_attrs = self.build_attrs(self.attrs, attrs)
        input_id = final_attrs.get("id", f"id_{name}")
        status = "set" if self.is_set else "not set"
        placeholder = "leave blank to keep the current value" if self.is_set else ""
        clear = ""
        if self.is_set:
            clear = format_html(
                ' <label for="{id}_clear"><input type="checkbox" name="{name}_clear" '
                'id="{id}_clear"> clear</label>',
                id=input_id,
                name=name,
            )
        return format_html(
            '<div class="configsync-secret"><strong class="configsync-secret-status">{status}'
            '</strong> <input type="password" name="{name}" id="{id}" value="" '
            'autocomplete="new-password" placeholder="{placeholder}" class="vTextField">'
            "{clear}</div>",
            status=status,
            name=name,
            id=input_id,
            placeholder=placeholder,
            clear=clear,
        )

    def value_from_datadict(self, data: Any, files: Any, name: str) -> Any:
        if data.get(f"{name}_clear") in ("on", "true", "1"):
            return CLEAR
        return data.get(name, "")

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return name not in data and f"{name}_clear" not in data


class SecretField(forms.Field):
    """A write-only secret: cleans to ``None`` (keep), ``CLEAR`` (remove) or the new text."""

    widget = SecretInput

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> Any:
        if value is CLEAR:
            return CLEAR
        if value in (None, ""):
            return None
        return str(value)

    def has_changed(self, initial: Any, data: Any) -> bool:
        return data is CLEAR or data not in (None, "")

    def bound_data(self, data: Any, initial: Any) -> Any:
        return None  # never carried back into the page


class VersionedModelForm(forms.ModelForm):
    """A ModelForm that refuses to save over a change made since the form was loaded."""

    version = forms.CharField(widget=forms.HiddenInput, required=False)
    may_reveal = False
    """Whether the user holds the reveal right (set by the admin; a safe default otherwise)."""
    version_error = (
        "This record was changed (by someone else, or by replication) after you opened this "
        "page. Reload it and make your change again."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["version"].initial = record_etag(self.instance)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or self.cleaned_data
        if self.instance.pk is not None:
            submitted = cleaned.get("version") or ""
            if submitted != record_etag(self.instance):
                raise ValidationError(self.version_error, code="stale")
        return cleaned


_TRUE_TEXTS = ("true", "1", "yes", "on")


def _is_true_text(value: Any) -> bool:
    return value is True or str(value).strip().lower() in _TRUE_TEXTS


def typed_value_widget(value_type: str, declaration: Declaration | None = None) -> forms.Widget:
    """The widget editing a plain value of ``value_type``: a checkbox for bool, a number input
    for int and float, a URL input for url, a JSON text area for json, a select for a declared
    setting with choices, a text area otherwise. Each submits text that ``value_parse`` reads."""
    if declaration is not None and declaration.choices is not None and value_type != "bool":
        texts = []
        for choice in declaration.choices:
            try:
                texts.append(value_serialize(choice, value_type))
            except ValidationError:
                texts.append(str(choice))
        return forms.Select(choices=[(text, text) for text in texts])
    if value_type == ValueType.BOOL:
        return forms.CheckboxInput(check_test=_is_true_text)
    if value_type == ValueType.INT:
        return forms.NumberInput(attrs={"step": "1"})
    if value_type == ValueType.FLOAT:
        return forms.NumberInput(attrs={"step": "any"})
    if value_type == ValueType.URL:
        return forms.URLInput(attrs={"class": "vURLField", "size": 60})
    if value_type == ValueType.JSON:
        return forms.Textarea(
            attrs={
                "rows": 8,
                "cols": 60,
                "class": "vLargeTextField configsync-json",
                "spellcheck": "false",
                "data-value-type": "json",
            }
        )
    return forms.Textarea(attrs={"rows": 3, "cols": 60})


def _initial_text(value: str, value_type: str) -> str:
    """The stored text as the typed widget shows it (JSON indented for editing)."""
    if value_type == ValueType.JSON:
        try:
            import json

            return json.dumps(value_parse(value, value_type), indent=2, ensure_ascii=False)
        except ValidationError:
            return value
    return value


class SensitivityChoiceField(forms.Field):
    """The add form's "sensitive": yes, no, or left to the secret rule (``None``)."""

    widget = forms.Select(
        choices=[
            ("", "Decide by the secret rule (names like *_KEY, URLs with a password)"),
            ("true", "Yes: store encrypted, write-only"),
            ("false", "No: plain"),
        ]
    )

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("label", "Is sensitive")
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        if _is_true_text(value):
            return True
        if str(value).strip().lower() in ("false", "0", "no", "off"):
            return False
        raise ValidationError("Select yes, no or the secret rule.", code="invalid")


class SystemConfigAdminForm(VersionedModelForm):
    """One ``value`` input for every setting; write-only when the setting is sensitive.

    A non-sensitive setting's value is edited with its type's widget (:func:`typed_value_widget`);
    a sensitive one (or one being made sensitive in this submission), and every new setting, gets
    a :class:`SecretInput`. A declared setting (``configsync.schema``) shows its help text; on
    the add page its type, category and description start from the declaration, and a blank
    value stores the declared default. The add page's "sensitive" is yes, no or "decide by the
    secret rule" (``configsync.sensitivity.sensitivity_decide``; a declared ``sensitive=True``
    counts as an explicit yes); ``sensitivity_decision`` then says which rule applied.
    """

    value = forms.CharField(
        label="Value",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Text of the value, parsed as its type. For a sensitive setting it is "
        "write-only: leave it blank to keep the stored value.",
    )

    class Meta:
        model = SystemConfig
        fields = ("key", "value_type", "is_sensitive", "category", "description")
        # The admin lists "value" among its fields (the form field above); excluding the model
        # field keeps the ModelForm from ever copying it onto the instance.
        exclude = ("value", "secret_value")  # noqa: DJ006

    sensitivity_decision: SensitivityDecision | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        instance: SystemConfig = self.instance
        adding = instance.pk is None
        self.declaration = self._declaration(adding)
        if adding:
            self.fields["is_sensitive"] = SensitivityChoiceField()
            self._initial_from_declaration()
        submitted_sensitive = self.is_bound and _is_true_text(
            self.data.get(self.add_prefix("is_sensitive"), "")
        )
        self.write_only = adding or instance.is_sensitive or bool(submitted_sensitive)
        help_text = str(self.fields["value"].help_text)
        if self.write_only:
            if adding and self.declaration is not None and self.declaration.has_default:
                help_text += " Leave it blank to store the declared default."
            self.fields["value"] = SecretField(
                label="Value",
                widget=SecretInput(is_set=not adding and instance.has_value),
                help_text=help_text,
            )
        else:
            self.fields["value"].widget = typed_value_widget(instance.value_type, self.declaration)
            self.fields["value"].initial = _initial_text(instance.value, instance.value_type)
        if self.declaration is not None:
            self.fields["value"].help_text = self._declared_help(help_text)

    def _declaration(self, adding: bool) -> Declaration | None:
        if not adding:
            key = self.instance.key
        elif self.is_bound:
            key = self.data.get(self.add_prefix("key"), "")
        else:
            key = self.initial.get("key", "")
        return declaration_get(str(key)) if key else None

    def _initial_from_declaration(self) -> None:
        declaration = self.declaration
        if declaration is None or self.is_bound:
            return
        self.initial.setdefault("value_type", declaration.value_type)
        self.initial.setdefault("category", declaration.category)
        self.initial.setdefault("description", declaration.help_text)
        if declaration.sensitive:
            self.initial.setdefault("is_sensitive", "true")

    def _declared_help(self, help_text: str) -> str:
        declaration = self.declaration
        assert declaration is not None
        parts = [declaration.help_text] if declaration.help_text else []
        if declaration.has_default and not declaration.sensitive:
            with contextlib.suppress(ValidationError):  # E050 names a bad default
                parts.append(f"Default: {declaration.default_text()}.")
        elif declaration.has_default:
            parts.append("A default is declared.")
        parts.append(help_text)
        return " ".join(parts)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        instance: SystemConfig = self.instance
        value = cleaned.get("value")
        declaration = self.declaration
        if value is CLEAR or (value is None and instance.pk is None):
            value = cleaned["value"] = ""  # a new setting's blank value is the empty text
            if instance.pk is None and declaration is not None and declaration.has_default:
                # ... or, for a declared setting, its declared default (E050 names a bad one)
                with contextlib.suppress(ValidationError):
                    value = cleaned["value"] = declaration.default_text()
        if instance.pk is None:
            explicit = cleaned.get("is_sensitive")
            if explicit is None and declaration is not None and declaration.sensitive:
                explicit = True
            self.sensitivity_decision = sensitivity_decide(
                key=str(cleaned.get("key") or ""), value=value, explicit=explicit
            )
            cleaned["is_sensitive"] = self.sensitivity_decision.sensitive
        if value and cleaned.get("is_sensitive"):
            # Masked from here on (logs, a DEBUG report's POST data of a fault before the save).
            register_secret(value)
        value_type = cleaned.get("value_type")
        if value is None and instance.is_sensitive and instance.has_value and not self.may_reveal:
            # Checked before the kept secret is re-validated below, which would be the oracle.
            if "is_sensitive" in cleaned and not cleaned["is_sensitive"]:
                self.add_error("is_sensitive", MAKE_PLAIN_NEEDS_REVEAL)
                return cleaned
            if value_type and value_type != instance.value_type:
                self.add_error("value_type", RETYPE_NEEDS_REVEAL)
                return cleaned
        if (
            value is None
            and value_type
            and (
                value_type != instance.value_type
                or cleaned.get("is_sensitive") != instance.is_sensitive
            )
        ):
            try:
                value = instance.raw_value()  # kept, but re-stored: check it fits the new type
            except DecryptionError as exc:
                self.add_error("value", str(exc))
                return cleaned
        if value is not None and value_type:
            try:
                value_serialize(value, value_type)
            except ValidationError as exc:
                self.add_error("value", exc.messages)
                return cleaned
            if declaration is not None and value_type == declaration.value_type:
                try:
                    declaration.validate(value_parse(value, value_type))
                except ValidationError as exc:
                    self.add_error("value", exc.messages)
                except ImproperlyConfigured as exc:
                    self.add_error("value", str(exc))
        return cleaned

    def service_arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``system_config_set`` for this submission."""
        data = self.cleaned_data
        arguments: dict[str, Any] = {
            "key": self.instance.key if self.instance.pk else data["key"],
            "value_type": data["value_type"],
            "is_sensitive": data["is_sensitive"],
            "category": data["category"],
            "description": data["description"],
        }
        if data.get("value") is not None:
            arguments["value"] = data["value"]
        return arguments
