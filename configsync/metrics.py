"""Prometheus metrics at ``GET /metrics``, computed from the database at scrape time.

Why a collector over the database rather than counters incremented in code: syncs run in the
Celery worker while ``/metrics`` is served by the web process, and both may be several processes.
``SyncRun``/``Conflict``/``ReplicatedRecord`` already hold every figure, so one scrape reads a few
aggregate queries and every process reports the same numbers.

The endpoint is open like ``/api/v1/health``: it carries counts, timestamps and peer names only,
never a value, key name, URL or credential. Restrict it at the proxy if peer names are private.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, Max, Sum
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class ReplicationCollector(Collector):
    """Sync runs, changes applied and pushed, conflicts, lag and clock skew, per peer."""

    def collect(self) -> Iterator[Metric]:
        from configsync.models import Conflict, Peer, ReplicatedRecord, SyncRun
        from configsync.replication.selectors.status import peer_changes_behind, peer_clock_skew

        runs = CounterMetricFamily(
            "configsync_sync_runs",
            "Sync cycles with a peer, by outcome.",
            labels=["peer", "outcome"],
        )
        pulled = CounterMetricFamily(
            "configsync_changes_applied", "Changes pulled from a peer and applied.", labels=["peer"]
        )
        pushed = CounterMetricFamily(
            "configsync_changes_pushed", "Changes a peer accepted from us.", labels=["peer"]
        )
        detected = CounterMetricFamily(
            "configsync_conflicts_detected", "Conflicts detected while syncing.", labels=["peer"]
        )
        for outcome in (
            SyncRun.objects.values("peer__name", "ok").annotate(n=Count("id")).order_by()
        ):
            name = outcome["peer__name"]
            runs.add_metric([name, "ok" if outcome["ok"] else "error"], outcome["n"])
        for total in (
            SyncRun.objects.values("peer__name")
            .annotate(pulled=Sum("pulled"), pushed=Sum("pushed"), c=Sum("conflicts"))
            .order_by()
        ):
            name = total["peer__name"]
            pulled.add_metric([name], total["pulled"] or 0)
            pushed.add_metric([name], total["pushed"] or 0)
            detected.add_metric([name], total["c"] or 0)
        yield runs
        yield pulled
        yield pushed
        yield detected

        last_ok = GaugeMetricFamily(
            "configsync_sync_last_success_timestamp_seconds",
            "When the latest successful cycle with a peer finished.",
            labels=["peer"],
        )
        for latest in (
            SyncRun.objects.filter(ok=True)
            .values("peer__name")
            .annotate(at=Max("finished_at"))
            .order_by()
        ):
            if latest["at"] is not None:
                last_ok.add_metric([latest["peer__name"]], latest["at"].timestamp())
        yield last_ok

        lag = GaugeMetricFamily(
            "configsync_sync_lag_changes",
            "Our feed entries a peer has not acknowledged yet.",
            labels=["peer"],
        )
        skew = GaugeMetricFamily(
            "configsync_sync_clock_skew_milliseconds",
            "Peer clock minus ours, as last seen.",
            labels=["peer"],
        )
        for peer in Peer.objects.filter(enabled=True).order_by("name"):
            lag.add_metric([peer.name], peer_changes_behind(peer=peer))
            seen = peer_clock_skew(peer=peer)
            if seen is not None:
                skew.add_metric([peer.name], seen)
        yield lag
        yield skew

        open_conflicts = GaugeMetricFamily(
            "configsync_conflicts_open", "Conflicts waiting for an operator."
        )
        open_conflicts.add_metric([], Conflict.objects.filter(status=Conflict.Status.OPEN).count())
        yield open_conflicts

        feed = GaugeMetricFamily(
            "configsync_feed_last_seq", "Latest sequence number of this node's change feed."
        )
        last_seq = ReplicatedRecord.objects.aggregate(m=Max("seq"))["m"] or 0
        feed.add_metric([], last_seq)
        yield feed


registry = CollectorRegistry(auto_describe=False)
registry.register(ReplicationCollector())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus text exposition of ``registry``."""
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
