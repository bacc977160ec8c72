"""The gRPC EdgeSync service: registration, heartbeats, sample upload, model subscription.

Handlers speak typed values through edgesync.wire and raise EdgeSyncError; the interceptor
maps errors to status codes. The service is stateless: everything lives in the store and
the registry, so several front ends can serve the same fleet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import grpc

from cloud_trainer.ingest import Ingest
from cloud_trainer.metrics import UPDATE_DELAY
from cloud_trainer.registry import ModelRegistry, model_origin
from cloud_trainer.scenes import SceneChangeHandler
from cloud_trainer.state import StateStore
from edgesync import wire
from edgesync.credentials import caller_of
from edgesync.errors import EdgeSyncError, NotFound, PermissionDenied, TryLater, UnknownEdge
from edgesync.types import EdgeEvent, EdgeInfo, check_edge_id
from edgesync.v1 import edgesync_pb2 as pb
from edgesync.v1 import edgesync_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
# uplink and downlink bytes are counted by the cloud itself (ingest, SubscribeModels)
HEARTBEAT_FIELDS = ("model_version", "frames", "queue_depth", "confidence_proxy")


def deployment(registry: ModelRegistry, edge_id: str, version: int, now: float) -> dict[str, float | str]:
    """What a model_deployed event records: the version, where it came from and its update delay.

    The update delay is how old the newest frame a model was trained on is when the model starts
    running on the edge (as its next heartbeat reports). A copy of an earlier model (zoo, rollback,
    pin) was trained on nothing new: its delay runs from when it was issued.
    """
    try:
        manifest = registry.manifest(edge_id, version)
    except NotFound:
        return {"version": float(version), "origin": "unknown"}
    origin, _ = model_origin(manifest)
    if origin == "base":  # the edge's first model: there was nothing to update
        return {"version": float(version), "origin": origin}
    since = manifest.trained_until if origin == "trained" and manifest.trained_until else manifest.created
    return {"version": float(version), "origin": origin, "delay_s": max(0.0, now - since)}


class EdgeSyncService(pb_grpc.EdgeSyncServicer):
    """Implements edgesync.v1.EdgeSync over a state store and a model registry."""

    def __init__(
        self,
        store: StateStore,
        registry: ModelRegistry,
        ingest: Ingest,
        heartbeat_s: float,
        scenes: SceneChangeHandler | None = None,
        edge_secret: str = "",
    ) -> None:
        self.edge_secret = edge_secret  # "": callers are not authenticated (a lab)
        self.store = store
        self.registry = registry
        self.ingest = ingest
        self.heartbeat_s = heartbeat_s
        self.scenes = scenes  # None: scene changes are acknowledged and otherwise ignored
        self.wait_slice_s = 1.0  # how often a subscription checks that its client is still there

    def _authorise(self, context: grpc.ServicerContext, edge_id: str) -> None:
        """Refuse the call unless its credentials prove edge_id and the edge is not revoked."""
        if self.edge_secret:
            self._allow(caller_of(context.invocation_metadata(), self.edge_secret), edge_id)

    def _allow(self, caller: str, edge_id: str) -> None:
        """Refuse an authenticated caller acting as another edge, or a revoked one."""
        if caller != edge_id:
            raise PermissionDenied(f"edge {caller!r} cannot act as edge {edge_id!r}")
        if self.store.get_meta(edge_id).get("revoked"):
            raise PermissionDenied(f"edge {edge_id!r} is revoked; an operator must reinstate it")

    def Register(self, request: pb.RegisterRequest, context: grpc.ServicerContext) -> pb.RegisterResponse:
        edge_id = check_edge_id(request.edge_id)
        self._authorise(context, edge_id)
        now = time.time()
        try:
            info = self.store.get_edge(edge_id)
            info.class_names = list(request.class_names) or info.class_names
            info.description = request.description or info.description
            info.model_version = int(request.model_version)
            info.last_heartbeat = now
        except UnknownEdge:
            info = EdgeInfo(
                edge_id=edge_id,
                class_names=list(request.class_names),
                description=request.description,
                registered=now,
                last_heartbeat=now,
                model_version=int(request.model_version),
            )
            self.store.set_meta(edge_id, first_seen=now, last_model_time=now)
        latest = self.registry.ensure_edge(edge_id)
        if not info.class_names and latest:  # an edge without a model yet predicts what its first model will
            info.class_names = list(self.registry.manifest(edge_id, latest).class_names)
        self.store.upsert_edge(info)
        log.info("edge %s registered (runs v%d, latest v%d)", edge_id, request.model_version, latest)
        return pb.RegisterResponse(latest_model_version=latest, heartbeat_interval_s=self.heartbeat_s)

    def Heartbeat(self, request: pb.HeartbeatRequest, context: grpc.ServicerContext) -> pb.HeartbeatResponse:
        edge_id = check_edge_id(request.edge_id)
        self._authorise(context, edge_id)
        fields = {name: getattr(request, name) for name in HEARTBEAT_FIELDS}
        now = time.time()
        before = self.store.get_edge(edge_id)
        self.store.update_edge(edge_id, last_heartbeat=now, **fields)
        self._record_heartbeat(edge_id, now, request, before)
        return pb.HeartbeatResponse(latest_model_version=self.registry.latest_version(edge_id))

    def _record_heartbeat(self, edge_id: str, now: float, request: pb.HeartbeatRequest, before: EdgeInfo) -> None:
        """History for the API: what the edge reported, and when it started running a new model."""
        data = {name: float(getattr(request, name)) for name in HEARTBEAT_FIELDS}
        data |= {"uplink_bytes": float(before.uplink_bytes), "downlink_bytes": float(before.downlink_bytes)}
        self.store.add_event(EdgeEvent(edge_id, "heartbeat", now, data))
        version = int(request.model_version)
        if version and version != before.model_version:
            deployed = deployment(self.registry, edge_id, version, now)
            if "delay_s" in deployed:
                UPDATE_DELAY.labels(deployed["origin"]).observe(deployed["delay_s"])
            self.store.add_event(EdgeEvent(edge_id, "model_deployed", now, deployed))

    def ReportSceneChange(self, request: pb.SceneChange, context: grpc.ServicerContext) -> pb.SceneChangeResponse:
        change = wire.scene_change_from_pb(request)
        check_edge_id(change.edge_id)
        self._authorise(context, change.edge_id)
        self.store.get_edge(change.edge_id)
        sent = self.scenes.handle(change) if self.scenes is not None else 0
        return pb.SceneChangeResponse(specialist_version=sent)

    def UploadSamples(self, request_iterator: Iterator[pb.Sample], context: grpc.ServicerContext):
        """Acknowledge each sample in order; a bad sample is refused in its ack, the stream goes on."""
        caller = caller_of(context.invocation_metadata(), self.edge_secret) if self.edge_secret else None
        for message in request_iterator:
            sample = wire.sample_from_pb(message)
            try:
                if caller is not None:  # each sample, so an edge revoked mid-stream is refused at once
                    self._allow(caller, sample.edge_id)
                self.ingest.accept(sample)
            except TryLater as exc:  # not now (back-pressure, the store down): the edge keeps it, sends it again
                log.info("held back: %s", exc)
                yield pb.SampleAck(sample_id=sample.sample_id, accepted=False, error=str(exc), retry=True)
                continue
            except EdgeSyncError as exc:
                log.warning("refused %s", exc)
                yield pb.SampleAck(sample_id=sample.sample_id, accepted=False, error=str(exc))
                continue
            yield pb.SampleAck(sample_id=sample.sample_id, accepted=True)

    def SubscribeModels(self, request: pb.SubscribeRequest, context: grpc.ServicerContext):
        """Stream every version newer than the client's, as a manifest then payload chunks.

        The payload is a delta against a model the edge holds where that is smaller (the
        registry decides); each version sent becomes a base the next one can be a delta against.
        """
        edge_id = check_edge_id(request.edge_id)
        self._authorise(context, edge_id)
        self.store.get_edge(edge_id)
        have = int(request.have_version)
        held = wire.held_from_pb(request)
        while context.is_active():
            manifest = self.registry.wait_for_newer(edge_id, have, timeout_s=self.wait_slice_s)
            if manifest is None:
                continue
            manifest, data = self.registry.delivery(edge_id, manifest.version, held)
            held[manifest.version] = manifest.sha256
            label = manifest.payload.label if manifest.payload else "full"
            log.info("sending %s v%d as %s (%d bytes)", edge_id, manifest.version, label, len(data))
            yield pb.ModelChunk(manifest=wire.manifest_to_pb(manifest), last=not data)
            for offset in range(0, len(data), CHUNK_BYTES):
                end = offset + CHUNK_BYTES
                yield pb.ModelChunk(data=data[offset:end], last=end >= len(data))
            self.store.incr_edge(edge_id, "downlink_bytes", len(data))
            have = manifest.version
