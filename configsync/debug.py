"""Django's error reports (DEBUG pages, admin e-mails) without secrets.

Django's own ``SafeExceptionReporterFilter`` hides settings whose *name* looks secret and, only
with ``DEBUG`` off, variables marked ``@sensitive_variables``. With ``DEBUG`` on (the development
default) a 500 page would still show a provider's API key held in a frame's local variable, a
``password`` inside ``EXTERNAL_DATABASE_URL``, ``REDIS_URL`` or ``CELERY_BROKER_URL``, the
credentials of ``CONFIGSYNC_PEERS`` and the data callback's URL. Here, whatever ``DEBUG`` says:

* every text of the report that we build — each frame variable (as its ``repr``), each request
  parameter and header, each setting, the exception message and the request URL — goes through
  :func:`mask_report_text`: every secret registered in this process (``configsync.logging``: each
  plaintext set or decrypted, and each one submitted to a secret's form or serializer field),
  secret-shaped text, the password of every URL's userinfo and the values of secret-named query
  parameters are masked;
* settings and local variables whose *name* says secret are replaced whole.

The filter is ``DEFAULT_EXCEPTION_REPORTER_FILTER``. The exception message and the query string
are not the filter's to see; :class:`SecretExceptionReporter` (``DEFAULT_EXCEPTION_REPORTER``)
masks them.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

from django.template.defaultfilters import pprint
from django.utils.datastructures import MultiValueDict
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from configsync.logging import MASK, mask_text

_SECRET_NAME = re.compile(
    r"API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|CREDENTIAL|PRIVATE|DSN", re.I
)
"""Setting (and header) names whose whole value is hidden: Django's list plus a few."""

_SECRET_VARIABLE = re.compile(
    r"(?i)(api_?key|token|secret|passw|credential|authorization|private|cookie|signature)"
)
"""Local variable, POST and query parameter names whose whole value is hidden."""

_WHOLE_URL_SETTING = re.compile(r"CALLBACK|WEBHOOK|HOOK_URL", re.I)
"""Settings holding a URL that may itself be the credential (a webhook's path carries a token):
only its scheme and host are shown."""

_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^\s/?#@'\"<>]*@)?([^\s/?#'\"<>]*)([^\s'\"<>]*)")


def _mask_url(match: re.Match[str], *, whole: bool = False) -> str:
    scheme, userinfo, host, rest = match.groups()
    if userinfo and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":" + MASK + "@"
    if whole:
        return f"{scheme}{userinfo or ''}{host}{'/' + MASK if rest else ''}"
    path, sep, query = rest.partition("?")
    if sep:
        fragment = ""
        if "#" in query:
            query, fragment = query.split("#", 1)
            fragment = "#" + fragment
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = [
            (k, MASK if _SECRET_VARIABLE.search(k) or k.lower() == "key" else v) for k, v in pairs
        ]
        rest = f"{path}?{urlencode(masked, safe='*')}{fragment}"
    return f"{scheme}{userinfo or ''}{host}{rest}"


def mask_report_text(text: str, *, whole_urls: bool = False) -> str:
    """``text`` with registered secrets, secret shapes and URL credentials masked.

    ``whole_urls`` keeps only the scheme and host of each URL (for a webhook-style setting).
    """
    text = _URL.sub(lambda m: _mask_url(m, whole=whole_urls), text)
    return mask_text(text)


class _Shown:
    """A frame variable already rendered and masked; the report shows its text as is."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class SecretExceptionReporterFilter(SafeExceptionReporterFilter):
    """Masks credential-bearing settings and every registered secret in an error report.

    Active whatever ``DEBUG`` says (Django's filter stands down under ``DEBUG``).
    """

    hidden_settings = _SECRET_NAME

    def is_active(self, request: Any) -> bool:
        return True

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        whole = isinstance(key, str) and bool(_WHOLE_URL_SETTING.search(key))
        cleansed = super().cleanse_setting(key, value)
        return self._mask(cleansed, whole_urls=whole)

    def _mask(self, value: Any, *, whole_urls: bool = False) -> Any:
        if isinstance(value, str):
            return mask_report_text(value, whole_urls=whole_urls) if value else value
        if isinstance(value, dict):
            return {k: self._mask(v, whole_urls=whole_urls) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._mask(v, whole_urls=whole_urls) for v in value)
        if isinstance(value, int | float | bool) or value is None:
            return value
        return _Shown(mask_report_text(pprint(value)))

    def get_safe_request_meta(self, request: Any) -> dict[str, Any]:
        return {k: self._mask(v) for k, v in super().get_safe_request_meta(request).items()}

    def get_safe_cookies(self, request: Any) -> dict[str, Any]:
        return {k: self._mask(v) for k, v in super().get_safe_cookies(request).items()}

    def masked_items(self, data: Any) -> MultiValueDict[Any, Any]:
        """A copy of ``data`` (POST, GET) with secret-named parameters hidden, the rest masked."""
        masked: MultiValueDict[Any, Any] = MultiValueDict()
        for name, values in data.lists():
            if _SECRET_VARIABLE.search(str(name)):
                masked.setlist(name, [self.cleansed_substitute for _ in values])
            else:
                masked.setlist(name, [self._mask(v) for v in values])
        return masked

    def get_post_parameters(self, request: Any) -> Any:
        parameters = super().get_post_parameters(request)
        return self.masked_items(parameters) if parameters else parameters

    def get_cleansed_multivaluedict(self, request: Any, multivaluedict: Any) -> Any:
        return self.masked_items(super().get_cleansed_multivaluedict(request, multivaluedict))

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> Any:
        shown: dict[str, Any] = {}
        for name, value in super().get_traceback_frame_variables(request, tb_frame):
            if (
                isinstance(value, str) and value == self.cleansed_substitute
            ) or _SECRET_VARIABLE.search(str(name)):
                shown[name] = _Shown(self.cleansed_substitute)
            else:
                # Strings are masked before ``repr`` escapes them (a JSON text holding a secret
                # would show it escaped twice); what is left is masked again as shown.
                with contextlib.suppress(RecursionError):
                    value = self._mask(value)
                shown[name] = _Shown(mask_report_text(pprint(value)))
        return shown.items()


class SecretExceptionReporter(ExceptionReporter):
    """Also masks what the filter does not see: the exception message and notes, the query
    string and the request URL."""

    def get_traceback_data(self) -> dict[str, Any]:
        data = super().get_traceback_data()
        for name in ("exception_value", "exception_notes", "request_insecure_uri"):
            if isinstance(data.get(name), str):
                data[name] = mask_report_text(data[name])
        if self.request is not None and hasattr(self.filter, "masked_items"):
            data["request_GET_items"] = self.filter.masked_items(self.request.GET).items()
        for frame in data.get("frames", []):
            if isinstance(frame.get("exc_cause"), BaseException):
                frame["exc_cause"] = mask_report_text(str(frame["exc_cause"]))
        return data
