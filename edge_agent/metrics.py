"""Prometheus metrics of one edge agent, served on `metrics_listen` (GET /metrics).

Counters the agent already keeps (frames, samples, spool, uplink bytes, model version) are read
when Prometheus scrapes, so the frame loop pays nothing for them; only the inference latency
and the update delay are observed as they happen, into histograms. Each agent has its own
registry, so several agents in one process (tests, the benchmark) do not collide.

    edgesync_edge_frames_total                    frames processed
    edgesync_edge_inference_latency_seconds       student prediction time per frame (histogram)
    edgesync_edge_samples_scored_total            frames the sampler scored
    edgesync_edge_samples_accepted_total          samples queued for upload
    edgesync_edge_samples_dropped_total           samples refused: the spool was full
    edgesync_edge_samples_spilled_total           samples kept on disk only (memory queue full)
    edgesync_edge_samples_uploaded_total          samples the cloud acknowledged
    edgesync_edge_upload_bytes_total              JPEG bytes sent to the cloud
    edgesync_edge_upload_queue_depth              samples waiting for upload
    edgesync_edge_model_version                   version of the model serving frames
    edgesync_edge_model_swaps_total               models swapped in
    edgesync_edge_model_rollbacks_total           models rolled back: they collapsed on this camera
    edgesync_edge_update_delay_seconds            swap time minus the arrival of the newest
                                                  frame the model was trained on (histogram)
    edgesync_edge_scene_changes_total             change points detected
    edgesync_edge_confidence_proxy                running mean detection confidence
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edgesync.config import split_host_port

if TYPE_CHECKING:
    from edge_agent.agent import EdgeAgent

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
DELAY_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class _AgentCollector(Collector):
    """The agent's own counters, read at scrape time."""

    def __init__(self, agent: EdgeAgent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        agent = self.agent
        stats, spool = agent.stats, agent.spool.stats
        edge = agent.cfg.edge_id
        counters = {
            "frames": ("frames processed", stats.frames),
            "samples_scored": ("frames the sampler scored", stats.frames),
            "samples_accepted": ("samples queued for upload", stats.samples_accepted),
            "samples_dropped": ("samples refused because the spool was full", spool.dropped),
            "samples_spilled": ("samples kept on disk only, the memory queue being full", spool.spilled),
            "samples_uploaded": ("samples the cloud acknowledged", agent.uploader.acked),
            "upload_bytes": ("JPEG bytes sent to the cloud", agent.uploader.sent_bytes),
            "model_swaps": ("models swapped in between two frames", stats.swaps),
            "model_rollbacks": ("models rolled back because they collapsed on this camera", stats.rollbacks),
            "scene_changes": ("change points the scene watcher detected", stats.scene_changes),
        }
        for name, (doc, value) in counters.items():
            family = CounterMetricFamily(f"edgesync_edge_{name}", doc, labels=["edge"])
            family.add_metric([edge], value)
            yield family
        version = agent.detector.version if agent.detector is not None else 0
        gauges = {
            "model_version": ("version of the model serving frames (0: none yet)", version),
            "upload_queue_depth": ("samples waiting for upload", agent.spool.depth),
            "confidence_proxy": ("running mean detection confidence of the student", stats.confidence_proxy),
        }
        for name, (doc, value) in gauges.items():
            family = GaugeMetricFamily(f"edgesync_edge_{name}", doc, labels=["edge"])
            family.add_metric([edge], value)
            yield family


class EdgeMetrics:
    """The agent's metrics registry, its two histograms and (once started) the HTTP server."""

    def __init__(self, agent: EdgeAgent) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_AgentCollector(agent))
        labels = ["edge"]
        self.inference = Histogram(
            "edgesync_edge_inference_latency_seconds",
            "student prediction time per frame",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        ).labels(agent.cfg.edge_id)
        self.update_delay = Histogram(
            "edgesync_edge_update_delay_seconds",
            "swap time minus the arrival at the cloud of the newest frame the model was trained on",
            labels,
            buckets=DELAY_BUCKETS,
            registry=self.registry,
        ).labels(agent.cfg.edge_id)
        self._server = None
        self.port = 0

    def serve(self, listen: str) -> int:
        """Serve GET /metrics on listen ("host:port", port 0 picks one); returns the port."""
        host, port = split_host_port(listen)
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        self.port = self._server.server_address[1]
        log.info("edge metrics on http://%s:%d/metrics", host, self.port)
        return self.port

    def close(self) -> None:
        server, self._server = self._server, None  # stop() may run on two threads at once
        if server is not None:
            server.shutdown()
            server.server_close()
