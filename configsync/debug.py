"""Django's error reports (DEBUG pages, admin e-mails) without secrets."""

from __future__ import annotations

from django.views.debug import SafeExceptionReporterFilter


class SecretExceptionReporterFilter(SafeExceptionReporterFilter):
    """Masks credential-bearing settings and every registered secret in an error report."""
