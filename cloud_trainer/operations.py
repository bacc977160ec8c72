"""What an operator can do to one edge: pin it to a version, roll it back, pause or trigger retraining.

Every action goes through the same paths as the system's own decisions, so nothing new has to be
trusted: a version an edge should run is registered again as its newest version (the registry's
reissue, as the model zoo does), which the edge receives over its model subscription as a tiny
delta against the copy it holds; pausing and pinning are flags in the edge's manager metadata
that the training manager, the workers and the zoo respect. Each action is recorded as an
`operator` event in the edge's history, so the dashboard shows who changed what, and when.

Metadata flags (floats, like all manager metadata): `paused` 1.0 stops new training jobs;
`pinned_version` > 0 also keeps any model but that version from being registered for the edge.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from cloud_trainer.manager import TrainingManager, pinned_version
from cloud_trainer.registry import ModelRegistry
from cloud_trainer.state import StateStore
from edgesync.errors import InvalidInput, NotFound
from edgesync.types import EdgeEvent, ModelManifest, TrainingJob

log = logging.getLogger(__name__)


class FleetOperations:
    """Operator actions on edges; the REST API's action routes call them, and tests and tools may too."""

    def __init__(
        self,
        store: StateStore,
        registry: ModelRegistry,
        manager: TrainingManager,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.registry = registry
        self.manager = manager
        self.clock = clock

    def pin(self, edge_id: str, version: int, actor: str = "operator") -> ModelManifest:
        """Make the edge run version and stay on it: no training for it until unpinned."""
        self.store.get_edge(edge_id)
        self._check_version(edge_id, version)
        self.store.set_meta(edge_id, pinned_version=float(version))
        sent = self._run(edge_id, version)
        self._record(edge_id, "pin", actor, version=version, issued=sent.version)
        return sent

    def unpin(self, edge_id: str, actor: str = "operator") -> None:
        """Let training and the zoo update the edge again (and lift a pause)."""
        self.store.get_edge(edge_id)
        self.store.set_meta(edge_id, pinned_version=0.0, paused=0.0)
        self._record(edge_id, "unpin", actor)

    def rollback(self, edge_id: str, actor: str = "operator") -> ModelManifest:
        """Send the edge the version its newest one replaced; training goes on from there."""
        self.store.get_edge(edge_id)
        latest = self.registry.latest(edge_id)
        if latest is None or latest.parent == 0:
            raise InvalidInput(f"edge {edge_id!r} runs its first model (v{latest.version if latest else 0}): "
                               "there is nothing to roll back to")  # fmt: skip
        sent = self._run(edge_id, latest.parent)
        self._record(edge_id, "rollback", actor, version=latest.parent, replaced=latest.version, issued=sent.version)
        return sent

    def pause(self, edge_id: str, actor: str = "operator") -> None:
        """Queue no training jobs for the edge until resumed (a job already running finishes)."""
        self.store.get_edge(edge_id)
        self.store.set_meta(edge_id, paused=1.0)
        self._record(edge_id, "pause", actor)

    def resume(self, edge_id: str, actor: str = "operator") -> None:
        """Undo pause (a pin stays until unpinned)."""
        self.store.get_edge(edge_id)
        self.store.set_meta(edge_id, paused=0.0)
        self._record(edge_id, "resume", actor)

    def revoke(self, edge_id: str, actor: str = "operator") -> None:
        """Refuse the edge's every call from now on (with security.edge_secret set), until reinstated."""
        self.store.get_edge(edge_id)
        self.store.set_meta(edge_id, revoked=1.0)
        self._record(edge_id, "revoke", actor)

    def reinstate(self, edge_id: str, actor: str = "operator") -> None:
        """Undo revoke."""
        self.store.get_edge(edge_id)
        self.store.set_meta(edge_id, revoked=0.0)
        self._record(edge_id, "reinstate", actor)

    def retrain(self, edge_id: str, actor: str = "operator") -> TrainingJob:
        """Queue a training job for the edge now, ahead of the manager's own, whatever its thresholds."""
        self.store.get_edge(edge_id)
        meta = self.store.get_meta(edge_id)
        if pinned_version(meta):
            raise InvalidInput(f"edge {edge_id!r} is pinned to v{pinned_version(meta)}: unpin it before retraining")
        job = self.manager.queue_now(edge_id, reason=f"requested by {actor}")
        self._record(edge_id, "retrain", actor, job=job.job_id)
        return job

    # ------------------------------------------------------------ helpers

    def _check_version(self, edge_id: str, version: int) -> None:
        latest = self.registry.latest_version(edge_id)
        if not 1 <= version <= latest:
            raise NotFound(f"edge {edge_id!r} has no model v{version} (versions 1-{latest})")

    def _run(self, edge_id: str, version: int) -> ModelManifest:
        """The manifest the edge will run: version itself if it is already the newest, else a reissue."""
        latest = self.registry.latest(edge_id)
        wanted = self.registry.manifest(edge_id, version)
        if latest is not None and latest.sha256 == wanted.sha256:
            return latest
        return self.registry.reissue(edge_id, version, reissue_of=float(version))

    def _record(self, edge_id: str, action: str, actor: str, **data: float | str) -> None:
        log.info("operator %s: %s on edge %s %s", actor, action, edge_id, data or "")
        self.store.add_event(EdgeEvent(edge_id, "operator", self.clock(), {"action": action, "actor": actor, **data}))
