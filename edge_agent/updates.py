"""Receives model updates from the cloud, verifies them and stages them for hot swap, off the frame loop.

An update is full weights or a delta against a model the edge keeps in its model store (the
subscription tells the cloud which ones it holds). The edge rebuilds the weights and takes
them only if their sha256 is the manifest's; otherwise it keeps its current model, and after a
refused delta it subscribes again without that base so the cloud sends something it can use.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable

import grpc

from edge_agent.hotswap import HotSwapDetector
from edge_agent.model_store import EdgeModelStore
from edgesync import wire
from edgesync.config import RetryConfig
from edgesync.delta import decode_update
from edgesync.errors import EdgeSyncError, IntegrityError
from edgesync.retry import Backoff
from edgesync.signing import ManifestVerifier
from edgesync.student import StudentModel
from edgesync.types import ModelManifest
from edgesync.v1 import edgesync_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


def assemble(chunks) -> tuple[ModelManifest, bytes] | None:
    """Read one update (manifest, then data chunks until last) from a chunk iterator; None at stream end."""
    manifest: ModelManifest | None = None
    parts: list[bytes] = []
    for chunk in chunks:
        if chunk.HasField("manifest"):
            if manifest is not None:
                raise IntegrityError(f"update v{manifest.version} was cut short by a new manifest")
            manifest = wire.manifest_from_pb(chunk.manifest)
        elif manifest is None:
            raise IntegrityError("model data arrived before its manifest")
        else:
            parts.append(chunk.data)
        if chunk.last:
            return manifest, b"".join(parts)
    if manifest is not None:
        raise IntegrityError(f"update v{manifest.version} ended after {sum(map(len, parts))} bytes; truncated")
    return None


# how much lower the CPU priority of the thread that loads and warms updates is than the frame
# loop's (Linux nice: 0 normal, 19 lowest)
LOADER_NICE = 10


def yield_to_frame_loop() -> None:
    """Lower the calling thread's CPU priority, and that of the torch worker threads it starts.

    Loading and warming an update runs the model on the same cores as the frame loop; at equal
    priority the frames around a swap wait for it. Linux nice is per thread and threads inherit
    it from the one that starts them, so call this first thing in a thread that does nothing
    else: it cannot be raised back without privileges. Elsewhere it does nothing.
    """
    if sys.platform != "linux":
        return
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + LOADER_NICE))
    except OSError as exc:  # a container may forbid it; loading then competes at equal priority
        log.warning("could not lower the update loader's CPU priority: %s", exc)


class UpdateListener:
    """Subscribes to this edge's models; each verified model is saved, warmed and staged.

    A model is loaded into one of the detector's spares when it has one (HotSwapDetector), else
    built afresh and warmed.
    """

    def __init__(
        self,
        stub: pb_grpc.EdgeSyncStub,
        edge_id: str,
        detector_ref: Callable[[], HotSwapDetector | None],
        model_store: EdgeModelStore,
        retry: RetryConfig,
        model_kwargs: dict,
        have_version: Callable[[], int],
        on_first_model: Callable[[StudentModel, ModelManifest, int], None] | None = None,
        verifier: ManifestVerifier | None = None,
    ) -> None:
        self.stub = stub
        self.verifier = verifier  # None: manifests need no signature
        self.edge_id = edge_id
        self.detector_ref = detector_ref
        self.model_store = model_store
        self.backoff = Backoff(retry)
        self.model_kwargs = model_kwargs
        self.have_version = have_version
        self.on_first_model = on_first_model
        self.received_bytes = 0
        self.rejected = 0
        self.last_error = ""
        self._avoid_bases: set[int] = set()  # bases of refused deltas, left out of the next subscription
        self._resubscribe = False
        self._stream = None

    def held(self) -> dict[int, str]:
        """Models (version -> sha256) this edge can apply a delta to."""
        return {v: sha for v, sha in self.model_store.held().items() if v not in self._avoid_bases}

    def handle(self, manifest: ModelManifest, data: bytes) -> StudentModel | None:
        """Rebuild, verify, persist, warm and stage one update; a bad one is refused and the current model kept.

        data is the update's payload: full weights, or a delta against a model in the store.
        """
        self.received_bytes += len(data)
        source = f"update v{manifest.version}"
        detector = self.detector_ref()
        spare = model = None
        try:
            if self.verifier is not None:  # before anything is decoded, saved or loaded
                self.verifier.verify(manifest, source)
            manifest, weights = decode_update(manifest, data, self.model_store.weights, source)
            spare = detector.take_spare() if detector is not None else None
            model = StudentModel.from_bytes(manifest, weights, source=source, spare=spare, **self.model_kwargs)
        except EdgeSyncError as exc:
            self.rejected += 1
            self.last_error = str(exc)
            payload = manifest.payload
            if payload is not None and payload.encoding != "full":
                self._avoid_bases.add(payload.base_version)
                self._resubscribe = True  # the cloud would build on the same base again
            log.error("refused model update v%d: %s; keeping the current model", manifest.version, exc)
            return None
        finally:  # refused (before or while loading into it), or built afresh (it did not fit): it stays a spare
            if spare is not None and model is not spare:
                detector.keep_spare(spare)
        self._avoid_bases.clear()
        self.model_store.save(manifest, weights)
        if model is not spare:  # a spare has predicted before: its first frame is not slow
            model.warmup()
        if detector is None and self.on_first_model is not None:
            self.on_first_model(model, manifest, len(data))
        elif detector is not None:
            detector.offer(model, manifest.trained_until, len(data), manifest.metrics.get("scene_start", 0.0))
        return model

    def _listen_once(self, stop: threading.Event) -> None:
        request = wire.subscribe_request(self.edge_id, self.have_version(), self.held())
        self._stream = stream = self.stub.SubscribeModels(request)
        while not stop.is_set():
            update = assemble(stream)
            if update is None:
                return
            self.backoff.reset()
            self.handle(*update)
            if self._resubscribe:
                self._resubscribe = False
                stream.cancel()
                return

    def close(self) -> None:
        """Cancel the open subscription so run() returns promptly once stop is set."""
        if self._stream is not None:
            self._stream.cancel()

    def run(self, stop: threading.Event) -> None:
        """Subscribe until stop is set, resubscribing after errors; run on a thread of its own."""
        yield_to_frame_loop()
        while not stop.is_set():
            try:
                self._listen_once(stop)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.CANCELLED:
                    log.warning("model subscription failed (%s); retrying", exc.code())
            except IntegrityError as exc:
                self.rejected += 1
                log.error("model update stream broken: %s; resubscribing", exc)
            if not stop.is_set():
                self.backoff.wait(stop)
