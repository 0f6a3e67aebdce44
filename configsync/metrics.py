"""Prometheus metrics at ``GET /metrics``, computed from the database at scrape time.

Why a collector over the database rather than counters incremented in code: syncs run in the
Celery worker while ``/metrics`` is served by the web process, and both may be several processes.
``SyncRun``/``Conflict``/``ReplicatedRecord``/``AuditEvent`` already hold every figure, so one
scrape reads a few aggregate queries and every process reports the same numbers:

* sync runs, failures and duration per peer and transport (``SyncRun``; the duration histogram
  is bucketed by the database, ``finished_at - started_at`` in seconds);
* changes behind, last success (timestamp and age in seconds), clock skew, open conflicts;
* reveals (``AuditEvent`` with action ``reveal``, by entry point);
* the ``.env`` bridge: the records it wrote (``AuditEvent`` with via ``envbridge``, by action);
* the NATS transport, when ``CONFIGSYNC_NATS_URL`` is set: ``configsync_nats_up`` and this node's
  durable consumer against the stream (``configsync_nats_consumer_lag``, ``…_pending``,
  ``…_ack_pending``, ``configsync_nats_stream_first_seq``, ``…_last_seq``), asked of the server
  at scrape time (``natsfollow.service.nats_status``: one round trip, a two-second timeout).
  A bridge run that changed nothing leaves no row anywhere (only its log line), so runs as such
  are not countable across processes; the changes they made are.

The exceptions are the lookup counters (``configsync_lookups_total``, and the hit ratio derived
from them): lookups happen in every process, at the cost of a dictionary read, so they are
process-local prometheus-client counters (``configsync.lookup``) and ``/metrics`` shows those of
the web process that serves the scrape (each gunicorn worker its own; Prometheus sums them).

The endpoint is open like ``/api/v1/health``: it carries counts, timestamps, peer names,
transports and the release version only, never a value, key name, URL or credential. Restrict it
at the proxy if peer names or the version are private.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from importlib import metadata
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from configsync.lookup import LOOKUPS

DURATION_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
"""Upper bounds (seconds) of the sync-duration histogram's buckets (``+Inf`` is added)."""

_PEER_LABELS = ["peer", "transport"]


def _version() -> str:
    try:
        return metadata.version("configsync")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _seconds(value: timedelta | None) -> float:
    return value.total_seconds() if value is not None else 0.0


class ReplicationCollector(Collector):
    """Sync runs, durations, changes applied and pushed, conflicts, lag and clock skew, per peer
    and transport; reveals and ``.env`` bridge changes; the build."""

    def collect(self) -> Iterator[Metric]:
        yield from self._runs()
        yield from self._durations()
        yield from self._peers()
        yield from self._node()
        yield from self._audit()
        yield from self._lookups()
        yield from self._nats()
        build = GaugeMetricFamily(
            "configsync_build_info", "The running release (always 1).", labels=["version"]
        )
        build.add_metric([_version()], 1)
        yield build

    def _runs(self) -> Iterator[Metric]:
        from configsync.models import SyncRun

        runs = CounterMetricFamily(
            "configsync_sync_runs",
            "Finished sync cycles with a peer, by outcome.",
            labels=[*_PEER_LABELS, "outcome"],
        )
        failures = CounterMetricFamily(
            "configsync_sync_failures", "Failed sync cycles with a peer.", labels=_PEER_LABELS
        )
        pulled = CounterMetricFamily(
            "configsync_changes_applied",
            "Changes pulled from a peer and applied.",
            labels=_PEER_LABELS,
        )
        pushed = CounterMetricFamily(
            "configsync_changes_pushed", "Changes a peer accepted from us.", labels=_PEER_LABELS
        )
        detected = CounterMetricFamily(
            "configsync_conflicts_detected",
            "Conflicts detected while syncing.",
            labels=_PEER_LABELS,
        )
        totals: dict[tuple[str, str], list[int]] = {}
        for row in (
            SyncRun.objects.filter(finished_at__isnull=False)
            .values("peer__name", "peer__transport", "ok")
            .annotate(n=Count("id"), pulled=Sum("pulled"), pushed=Sum("pushed"), c=Sum("conflicts"))
            .order_by()
        ):
            labels = (row["peer__name"], row["peer__transport"])
            runs.add_metric([*labels, "ok" if row["ok"] else "error"], row["n"])
            if not row["ok"]:
                failures.add_metric(list(labels), row["n"])
            # A failed cycle may have applied pages before failing: its counts are real.
            sums = totals.setdefault(labels, [0, 0, 0])
            sums[0] += row["pulled"] or 0
            sums[1] += row["pushed"] or 0
            sums[2] += row["c"] or 0
        for labels, (applied, accepted, conflicts) in sorted(totals.items()):
            pulled.add_metric(list(labels), applied)
            pushed.add_metric(list(labels), accepted)
            detected.add_metric(list(labels), conflicts)
        yield from (runs, failures, pulled, pushed, detected)

    def _durations(self) -> Iterator[Metric]:
        from configsync.models import SyncRun

        took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        buckets = {
            f"le{i}": Count("id", filter=Q(took__lte=timedelta(seconds=bound)))
            for i, bound in enumerate(DURATION_BUCKETS)
        }
        family = HistogramMetricFamily(
            "configsync_sync_duration_seconds",
            "How long finished sync cycles took (started to finished).",
            labels=_PEER_LABELS,
        )
        rows = (
            # A run whose clock was set back while it ran has no duration to tell.
            SyncRun.objects.filter(finished_at__isnull=False, finished_at__gte=F("started_at"))
            .annotate(took=took)
            .values("peer__name", "peer__transport")
            .annotate(n=Count("id"), total=Sum("took"), **buckets)
            .order_by()
        )
        for row in rows:
            counts: dict[str, Any] = dict(row)
            cumulative = [
                (_bound(bound), counts[f"le{i}"]) for i, bound in enumerate(DURATION_BUCKETS)
            ]
            cumulative.append(("+Inf", row["n"]))
            family.add_metric(
                [row["peer__name"], row["peer__transport"]],
                buckets=cumulative,
                sum_value=_seconds(row["total"]),
            )
        yield family

    def _peers(self) -> Iterator[Metric]:
        from configsync.models import Peer, SyncRun
        from configsync.replication.selectors.status import peers_changes_behind, peers_clock_skew

        last_ok = GaugeMetricFamily(
            "configsync_sync_last_success_timestamp_seconds",
            "When the latest successful cycle with a peer finished (Unix time).",
            labels=["peer"],
        )
        age = GaugeMetricFamily(
            "configsync_sync_last_success_age_seconds",
            "Seconds since the latest successful cycle with a peer finished.",
            labels=_PEER_LABELS,
        )
        now = timezone.now()
        for latest in (
            SyncRun.objects.filter(ok=True, finished_at__isnull=False)
            .values("peer__name", "peer__transport")
            .annotate(at=Max("finished_at"))
            .order_by()
        ):
            last_ok.add_metric([latest["peer__name"]], latest["at"].timestamp())
            age.add_metric(
                [latest["peer__name"], latest["peer__transport"]],
                max((now - latest["at"]).total_seconds(), 0.0),
            )
        yield last_ok
        yield age

        lag = GaugeMetricFamily(
            "configsync_sync_lag_changes",
            "Changes behind: our feed entries a peer has not acknowledged yet.",
            labels=_PEER_LABELS,
        )
        skew_ms = GaugeMetricFamily(
            "configsync_sync_clock_skew_milliseconds",
            "Peer clock minus ours, as last seen (milliseconds; see the _seconds gauge).",
            labels=["peer"],
        )
        skew = GaugeMetricFamily(
            "configsync_sync_clock_skew_seconds",
            "Peer clock minus ours, as last seen.",
            labels=_PEER_LABELS,
        )
        enabled = GaugeMetricFamily(
            "configsync_peer_enabled",
            "1 when syncing with the peer is enabled.",
            labels=_PEER_LABELS,
        )
        peers = list(Peer.objects.order_by("name"))
        active = [peer for peer in peers if peer.enabled]
        behind = peers_changes_behind(active)  # a few queries for every peer, not per peer
        skews = peers_clock_skew(active)
        for peer in peers:
            labels = [peer.name, peer.transport]
            enabled.add_metric(labels, 1 if peer.enabled else 0)
            if not peer.enabled:
                continue
            lag.add_metric(labels, behind[peer.pk])
            seen = skews[peer.pk]
            if seen is not None:
                skew_ms.add_metric([peer.name], seen)
                skew.add_metric(labels, seen / 1000)
        yield enabled
        yield lag
        yield skew_ms
        yield skew

    def _node(self) -> Iterator[Metric]:
        from configsync.models import Conflict, ReplicatedRecord

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

    def _audit(self) -> Iterator[Metric]:
        from configsync.actor import ENVBRIDGE
        from configsync.models import AuditEvent

        reveals = CounterMetricFamily(
            "configsync_reveals",
            "Secrets revealed to a caller on this node (audit trail), by entry point.",
            labels=["via"],
        )
        for row in (
            AuditEvent.objects.filter(action=AuditEvent.Action.REVEAL)
            .values("via")
            .annotate(n=Count("id"))
            .order_by("via")
        ):
            reveals.add_metric([row["via"]], row["n"])
        yield reveals

        bridge = CounterMetricFamily(
            "configsync_envbridge_changes",
            "Records the .env bridge wrote on this node (audit trail), by action.",
            labels=["action"],
        )
        for written in (
            AuditEvent.objects.filter(via=ENVBRIDGE)
            .values("action")
            .annotate(n=Count("id"))
            .order_by("action")
        ):
            bridge.add_metric([written["action"]], written["n"])
        yield bridge

    def _lookups(self) -> Iterator[Metric]:
        counts = {"hit": 0.0, "miss": 0.0}
        for family in LOOKUPS.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["result"]] = sample.value
        total = counts["hit"] + counts["miss"]
        ratio = GaugeMetricFamily(
            "configsync_lookup_cache_hit_ratio",
            "Share of lookups served from this process's cache since it started (0 to 1).",
        )
        ratio.add_metric([], counts["hit"] / total if total else 0.0)
        yield ratio

    def _nats(self) -> Iterator[Metric]:
        from configsync.conf import app_settings

        if not app_settings.nats_configured:
            return
        from configsync.replication.natsfollow.service import nats_status

        report = nats_status()
        yield GaugeMetricFamily(
            "configsync_nats_up",
            "1 when the NATS server answered this scrape (JetStream stream of the group).",
            value=1 if report.reachable else 0,
        )
        if not report.reachable:
            return
        for name, text, value in (
            ("consumer_lag", "Stream messages after this node's acknowledged floor.", report.lag),
            ("consumer_pending", "Messages not yet delivered to this node.", report.pending),
            (
                "consumer_ack_pending",
                "Messages delivered to this node and not acknowledged (not committed yet).",
                report.ack_pending,
            ),
            ("stream_first_seq", "The oldest sequence the stream holds.", report.stream_first_seq),
            ("stream_last_seq", "The newest sequence of the stream.", report.stream_last_seq),
        ):
            yield GaugeMetricFamily(f"configsync_nats_{name}", text, value=value or 0)


def _bound(value: float) -> str:
    return str(float(value))


registry = CollectorRegistry(auto_describe=False)
registry.register(ReplicationCollector())
registry.register(LOOKUPS)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus text exposition of ``registry``."""
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
