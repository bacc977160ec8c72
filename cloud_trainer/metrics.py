"""Prometheus metrics of the cloud trainer, served by the REST API at GET /metrics.

Two sources. The fleet's state (per edge: model version, accuracy, bytes, samples; jobs by
status) is read from the shared store at scrape time, so every front end on one Redis reports
the same fleet. What happens inside this process (jobs its workers ran, teacher labelling,
update delays it saw in heartbeats) is observed as it happens into the process's own
instruments, the usual prometheus_client way.

    edgesync_edge_up                              1 if the edge sent a heartbeat recently
    edgesync_edge_model_version                   version the edge reports running
    edgesync_edge_latest_model_version            newest version registered for it
    edgesync_edge_live_map50                      student mAP50 against the teacher on uploads
    edgesync_edge_confidence_proxy                the edge's running mean detection confidence
    edgesync_edge_frames_total                    frames the edge processed
    edgesync_edge_upload_queue_depth              samples waiting on the edge
    edgesync_edge_uplink_bytes_total              sample bytes received from the edge
    edgesync_edge_downlink_bytes_total            model bytes sent to the edge
    edgesync_edge_samples_received_total          samples stored
    edgesync_edge_samples_rejected_total          samples refused
    edgesync_edge_scene_changes_total             change points the edge reported (kept history)
    edgesync_training_jobs                        jobs by status
    edgesync_training_job_duration_seconds        wall time of jobs this process ran (histogram)
    edgesync_samples_labelled_total               samples this process labelled with the teacher
    edgesync_update_delay_seconds                 newest training frame to running on the edge
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cloud_trainer.registry import ModelRegistry
from cloud_trainer.state import StateStore
from edgesync.types import JOB_STATUSES

JOB_DURATION = Histogram(
    "edgesync_training_job_duration_seconds",
    "wall time of training jobs run by this process's workers",
    ["status"],
    buckets=(5, 10, 30, 60, 120, 300, 600, 1200, 3600),
)
SAMPLES_LABELLED = Counter("edgesync_samples_labelled_total", "samples labelled by the teacher in this process")
UPDATE_DELAY = Histogram(
    "edgesync_update_delay_seconds",
    "from the newest frame a model was trained on reaching the cloud to the model running on the edge",
    ["origin"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)


class FleetCollector(Collector):
    """Per-edge and per-status series read from the store when Prometheus scrapes."""

    def __init__(self, store: StateStore, registry: ModelRegistry, offline_after_s: float) -> None:
        self.store = store
        self.registry = registry
        self.offline_after_s = offline_after_s

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        edges = self.store.list_edges()
        gauges = {
            "up": "1 if the edge sent a heartbeat recently",
            "model_version": "version the edge reports running",
            "latest_model_version": "newest version registered for the edge",
            "live_map50": "student mAP50 against the teacher on the edge's recent uploads",
            "confidence_proxy": "the edge's running mean detection confidence",
            "upload_queue_depth": "samples waiting for upload on the edge",
        }
        counters = {
            "frames": "frames the edge processed",
            "uplink_bytes": "sample bytes received from the edge",
            "downlink_bytes": "model bytes sent to the edge",
            "samples_received": "samples stored for the edge",
            "samples_rejected": "samples refused from the edge",
            "scene_changes": "change points the edge reported (within the kept history)",
        }
        g = {k: GaugeMetricFamily(f"edgesync_edge_{k}", doc, labels=["edge"]) for k, doc in gauges.items()}
        c = {k: CounterMetricFamily(f"edgesync_edge_{k}", doc, labels=["edge"]) for k, doc in counters.items()}
        for e in edges:
            meta = self.store.get_meta(e.edge_id)
            label = [e.edge_id]
            g["up"].add_metric(label, float(now - e.last_heartbeat <= self.offline_after_s))
            g["model_version"].add_metric(label, e.model_version)
            g["latest_model_version"].add_metric(label, self.registry.latest_version(e.edge_id))
            if "live_map50" in meta:
                g["live_map50"].add_metric(label, meta["live_map50"])
            g["confidence_proxy"].add_metric(label, e.confidence_proxy)
            g["upload_queue_depth"].add_metric(label, e.queue_depth)
            c["frames"].add_metric(label, e.frames)
            c["uplink_bytes"].add_metric(label, e.uplink_bytes)
            c["downlink_bytes"].add_metric(label, e.downlink_bytes)
            c["samples_received"].add_metric(label, e.samples_received)
            c["samples_rejected"].add_metric(label, e.samples_rejected)
            c["scene_changes"].add_metric(label, len(self.store.list_events(e.edge_id, "scene_change", limit=10_000)))
        yield from g.values()
        yield from c.values()
        jobs = GaugeMetricFamily("edgesync_training_jobs", "training jobs by status", labels=["status"])
        for status in JOB_STATUSES:
            jobs.add_metric([status], len(self.store.list_jobs(status=status, limit=10_000)))
        yield jobs


class CloudMetrics:
    """The text /metrics serves: this process's instruments plus the fleet read from the store."""

    def __init__(self, store: StateStore, registry: ModelRegistry, offline_after_s: float) -> None:
        self.fleet = CollectorRegistry()
        self.fleet.register(FleetCollector(store, registry, offline_after_s))

    def exposition(self) -> bytes:
        return generate_latest(REGISTRY) + generate_latest(self.fleet)
