"""What the cloud does when an edge reports a scene change.

The edge's old model is stale for the new scene: the manager treats the edge's accuracy as
unknown (so its job ranks high) and queues the new scene's first job as soon as a few of its
frames are labelled; the zoo sends a stored specialist at once if the scene is one seen before.
The gRPC service and the benchmark both go through SceneChangeHandler.
"""

from __future__ import annotations

import logging

from cloud_trainer.manager import TrainingManager, pinned_version
from cloud_trainer.state import StateStore
from cloud_trainer.zoo import ModelZoo
from edgesync.types import EdgeEvent, SceneChange, check_edge_id

log = logging.getLogger(__name__)


class SceneChangeHandler:
    """Routes a reported scene change to the manager and (when enabled) the zoo."""

    def __init__(self, store: StateStore, manager: TrainingManager, zoo: ModelZoo | None) -> None:
        self.store = store
        self.manager = manager
        self.zoo = zoo

    def handle(self, change: SceneChange) -> int:
        """Returns the version of the specialist sent for the new scene, 0 if none."""
        check_edge_id(change.edge_id)
        self.store.get_edge(change.edge_id)  # unknown edges are refused
        self.manager.on_scene_change(change)
        pinned = pinned_version(self.store.get_meta(change.edge_id))  # an operator's pin outranks the zoo
        sent = self.zoo.on_scene_change(change) if self.zoo is not None and not pinned else None
        data = {"capture_time": change.time, "confidence": change.confidence, "specialist_version": 0.0}
        if sent is not None:
            data["specialist_version"] = float(sent.version)
        self.store.add_event(EdgeEvent(change.edge_id, "scene_change", self.manager.clock(), data))
        log.info(
            "edge %s: scene change at %.1f (confidence %.2f)%s",
            change.edge_id,
            change.time,
            change.confidence,
            f"; sent specialist v{sent.version}" if sent else "",
        )
        return sent.version if sent else 0
