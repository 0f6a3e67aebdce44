"""Template tags of the admin pages: ``{% sync_health_summary %}`` on the admin index."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

register = template.Library()


@register.inclusion_tag("admin/configsync/health_summary.html", takes_context=True)
def sync_health_summary(context: template.Context) -> dict[str, Any]:
    """This node's id, deployment mode and overall sync state, with a link to the overview.
    Shown to staff who may view (or change) peers; nothing for others (and no query then)."""
    from configsync.replication.admin.display import state_badge
    from configsync.replication.selectors.health import sync_health
    from configsync.selectors.node import NodeIdentityMissing, node_id

    request = context.get("request")
    user = getattr(request, "user", None)
    # The overview's own rule: who may view or change peers sees the node's state.
    if user is None or not (
        user.has_perm("configsync.view_peer") or user.has_perm("configsync.change_peer")
    ):
        return {"shown": False}
    try:
        this_node = node_id()
    except NodeIdentityMissing:
        return {"shown": True, "node_id": "(not set: run migrate)", "mode": "-", "badge": ""}
    health = sync_health(node=this_node)
    return {
        "shown": True,
        "node_id": this_node,
        "mode": health.node.deployment_mode,
        "state": health.state,
        "badge": state_badge(health.state, "; ".join(health.reasons)),
        "reasons": health.reasons,
        "overview_url": reverse("admin:configsync_sync_overview"),
        "mode_url": reverse("admin:configsync_nodeidentity_changelist"),
    }
