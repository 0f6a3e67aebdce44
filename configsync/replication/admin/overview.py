"""The admin's sync health: a summary on the admin index and the sync overview page.

* **Index**: the default admin site's ``index_template`` is set to
  ``admin/configsync/index.html``, which extends Django's own index and adds, through the
  ``configsync_admin`` template tags, this node's id, its deployment mode and its overall state
  (healthy / degraded / failing, ``selectors.health``) with a link to the overview. Setting the
  attribute is the least invasive hook that works with the default site (no custom ``AdminSite``,
  no settings change, no template directory ahead of Django's).
* **Sync overview** (``/admin/configsync/peer/overview/``, ``admin:configsync_sync_overview``):
  every peer with its transport and state (healthy / behind / failing / disabled, in colour and
  words), last success, last error (its first line: class and short reason), changes behind,
  success rate over the recent runs, clock skew and open conflicts; with ``CONFIGSYNC_NATS_URL``
  set, the NATS stream's consumer lag as the server reports it now (or why it is unreachable).
  Staff who may view peers.
* **Sync now** (``POST /admin/configsync/peer/sync-now/``, CSRF-protected): enqueues a cycle
  with every enabled peer, or one (``peer``), through ``configsync.tasks.sync_trigger`` — the
  service behind ``POST /api/v1/sync/trigger``, which enqueues on commit. Staff who may change
  peers. Redirects back to the overview with a message.

The views are served under the peer admin's URLs (``PeerAdmin.get_urls`` in ``records.py``).
Nothing here shows a value, a key or a credential.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from configsync.models import Peer
from configsync.replication.admin.display import error_summary, moment_ago, state_badge
from configsync.replication.natsfollow.service import nats_status
from configsync.replication.selectors.health import PeerHealth, sync_health
from configsync.replication.selectors.peers import UnknownPeerError
from configsync.selectors.node import NodeIdentityMissing, node_id
from configsync.tasks import sync_trigger

INDEX_TEMPLATE = "admin/configsync/index.html"


def _can(request: HttpRequest, action: str) -> bool:
    opts = Peer._meta
    return request.user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")


def _skew(peer: PeerHealth) -> str:
    skew = peer.status.clock_skew_ms
    if skew is None:
        return "not measured yet"
    state = peer.status.clock_state
    return f"{skew:+d} ms" + ("" if state == "ok" else f" ({state.replace('_', ' ')})")


def _rate(peer: PeerHealth) -> str:
    rate = peer.status.success_rate
    if rate is None:
        return "no runs yet"
    return f"{rate:.0%} of the last {peer.status.recent_runs}"


def overview_rows(peers: list[PeerHealth]) -> list[dict[str, Any]]:
    """What the overview table shows of each peer (ready to render; no value, no URL)."""
    return [
        {
            "id": peer.status.id,
            "name": peer.status.name,
            "transport": peer.status.transport,
            "state": peer.state,
            "badge": state_badge(peer.state, peer.reason),
            "reason": peer.reason,
            "last_success": moment_ago(peer.status.last_success_at),
            "last_error": error_summary(peer.status.last_error) or "-",
            "last_error_at": moment_ago(peer.status.last_error_at)
            if peer.status.last_error
            else "",
            "changes_behind": peer.status.changes_behind,
            "success_rate": _rate(peer),
            "clock_skew": _skew(peer),
            "open_conflicts": peer.status.open_conflicts,
            "enabled": peer.status.enabled,
            # "sync now" does nothing with a peer the deployment mode does not use
            "syncable": peer.status.enabled and peer.status.in_mode,
        }
        for peer in peers
    ]


def sync_overview_view(request: HttpRequest) -> HttpResponse:
    """``GET``: the sync overview page (see the module docstring)."""
    if not _can(request, "view") and not _can(request, "change"):
        raise PermissionDenied
    try:
        this_node = node_id()
    except NodeIdentityMissing:
        this_node = "(not set: run migrate)"
    health = sync_health(node=this_node)
    context = {
        **admin.site.each_context(request),
        "title": "Sync overview",
        "health": health,
        "node_badge": state_badge(health.state, "; ".join(health.reasons)),
        "rows": overview_rows(health.peers),
        "nats": nats_status(),
        "can_sync": _can(request, "change"),
        "sync_now_url": reverse("admin:configsync_sync_now"),
        "conflicts_url": reverse("admin:configsync_conflict_changelist") + "?status__exact=open",
        "runs_url": reverse("admin:configsync_syncrun_changelist"),
        "mode_url": reverse("admin:configsync_nodeidentity_changelist"),
    }
    return TemplateResponse(request, "admin/configsync/peer/sync_overview.html", context)


@require_POST
def sync_now_view(request: HttpRequest) -> HttpResponse:
    """``POST``: enqueue a cycle now with every enabled peer, or with ``peer`` (a name)."""
    if not _can(request, "change"):
        raise PermissionDenied
    name = request.POST.get("peer") or None
    try:
        peers = sync_trigger(peer_name=name)
    except UnknownPeerError:
        messages.error(request, "No such peer; nothing was enqueued.")
    else:
        if peers:
            names = ", ".join(peer.name for peer in peers)
            messages.success(request, f"Sync enqueued with {names}.")
        else:
            messages.warning(request, "No enabled peer to sync with; nothing was enqueued.")
    return HttpResponseRedirect(reverse("admin:configsync_sync_overview"))


admin.site.index_template = INDEX_TEMPLATE
