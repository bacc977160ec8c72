"""The model zoo: specialists remembered by the scene they were chosen for (RECL's reuse).

Scenes come back (every night is like last night). When a scene ends, the edge's change-point
report carries the ended scene's signature (the mean of the edge's frame embeddings over it);
the version the edge ran through that scene is remembered with that signature if the version
was chosen for that very scene (its manifest's scene_start); the first scene's specialist is
the edge's first model, bootstrapped on it.
When a later report leads into a scene that matches a remembered one, the specialist's weights
are registered again as the edge's newest version, so the edge receives it at once, with no
training, while the manager retrains for the new scene as usual. When the edge runs a
specialist and enters a scene that matches none, it gets its first, general model back: a
specialist is for its own scene (a night model did worse than the general one in fog on the
dev schedule).

Match rule, free of scale: the remembered scene nearest to the new one matches when it is at
most MATCH_RATIO times as far from the new scene as the scene the camera has just left. A
change-point means the new scene is far from the old one; a return means it is much nearer to
a known one.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np

from cloud_trainer.registry import ModelRegistry, write_atomic
from edgesync.errors import InvalidInput
from edgesync.types import ModelManifest, SceneChange, check_edge_id, check_preprocess, model_key

log = logging.getLogger(__name__)

MATCH_RATIO = 0.5  # "much nearer": at most half the distance of the change that just happened
MAX_SPECIALISTS = 16  # per edge; the oldest are forgotten first


class ModelZoo:
    """Per-edge specialists with scene signatures, kept beside the registry (zoo/<edge>.json)."""

    def __init__(self, registry: ModelRegistry, view: str | None = None) -> None:
        """view: how the general model sees frames when it goes out for an unknown scene (the
        first of training.preprocess, the view preferred when nothing says otherwise); None: as
        the specialist it replaces did."""
        self.registry = registry
        self.view = None if view is None else check_preprocess(view)
        self.root = registry.root / "zoo"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _path(self, edge_id: str) -> Path:
        return self.root / f"{check_edge_id(edge_id)}.json"

    def specialists(self, edge_id: str) -> dict[int, np.ndarray]:
        """Version -> signature of the scene it was chosen for."""
        path = self._path(edge_id)
        if not path.exists():
            return {}
        data = json.loads(path.read_text())
        return {int(v): np.asarray(sig, dtype=np.float64) for v, sig in data.items()}

    def remember(self, edge_id: str, version: int, signature: np.ndarray, replaces: int | None = None) -> None:
        """Keep version as the specialist for the scene with this signature, in place of `replaces`
        (the older specialist for the same scene, if any)."""
        with self._lock:
            known = self.specialists(edge_id)
            if replaces is not None and replaces != version:
                known.pop(replaces, None)
            known[version] = np.asarray(signature, dtype=np.float64)
            known = dict(sorted(known.items())[-MAX_SPECIALISTS:])
            payload = {str(v): [round(float(x), 6) for x in sig] for v, sig in sorted(known.items())}
            write_atomic(self._path(edge_id), json.dumps(payload).encode())
        log.info("zoo: %s v%d remembered as a specialist (%d in the zoo)", edge_id, version, len(known))

    def match(self, edge_id: str, new: np.ndarray, previous: np.ndarray, exclude: int = 0) -> int | None:
        """The specialist whose scene the new scene returns to, or None (see the module docstring)."""
        known = {v: s for v, s in self.specialists(edge_id).items() if v != exclude and s.shape == new.shape}
        if not known:
            return None
        change = float(np.linalg.norm(new - previous))
        version, distance = min(((v, float(np.linalg.norm(new - s))) for v, s in known.items()), key=lambda x: x[1])
        return version if distance <= MATCH_RATIO * change else None

    def on_scene_change(self, change: SceneChange) -> ModelManifest | None:
        """Remember the ended scene's specialist; send a stored one if the new scene matches.

        Returns the manifest of the newly registered copy of the specialist, or None.
        """
        new = np.asarray(change.signature, dtype=np.float64)
        previous = np.asarray(change.previous_signature, dtype=np.float64)
        if new.shape != previous.shape or not np.isfinite(new).all() or not np.isfinite(previous).all():
            raise InvalidInput(f"scene change from {change.edge_id}: signatures must be equal-length finite vectors")
        ran = change.model_version
        if not new.size:  # a detector without signatures: nothing to remember or match
            pass
        elif change.previous_scene_start == 0.0:
            # the stream's first scene is the bootstrap's: its specialist is the first model, trained
            # on the most frames of it (a fine-tune on a few dozen of them forgets more than it adds)
            if self.registry.latest_version(change.edge_id) >= 1 and 1 not in self.specialists(change.edge_id):
                self.remember(change.edge_id, 1, previous)
        elif ran > 0 and self.registry.latest_version(change.edge_id) >= ran:
            manifest = self.registry.manifest(change.edge_id, ran)
            if manifest.metrics.get("scene_start", 0.0) == change.previous_scene_start:
                # the newest model chosen for a recurrence of a scene supersedes the specialist sent for it
                self.remember(change.edge_id, ran, previous, replaces=self._sent_for(change))
        version = self.match(change.edge_id, new, previous, exclude=ran) if new.size else None
        if version is not None:
            log.info("zoo: %s returned to the scene of v%d", change.edge_id, version)
            # the copy is chosen for the new scene, and remembered in turn when that scene ends
            return self._send(change, version, scene_start=change.time)
        general = self._generalist(change.edge_id)
        if general is not None and self._is_specialist(change.edge_id, ran):
            # a specialist is for its own scene; in an unknown one a general model is the safer bet,
            # seeing frames the preferred way: the first model as it came saw holdout's colour cast
            # at 0.15 where auto levels gave 0.73-0.83 (BENCHMARKS.md, session 34), and the view a
            # specialist's frames chose says nothing of the next scene's (night and rain chose frames
            # as they come; the blur after it did not; session 35)
            log.info("zoo: %s left the scene of its specialist v%d for an unknown one", change.edge_id, ran)
            view = self.view or self.registry.manifest(change.edge_id, ran).preprocess
            return self._send(change, general, scene_start=0.0, preprocess=view)
        return None

    def _sent_for(self, change: SceneChange) -> int | None:
        """The specialist the zoo sent at the start of the scene that just ended, if any."""
        for manifest in reversed(self.registry.versions(change.edge_id)):
            if manifest.metrics.get("scene_start") == change.previous_scene_start and manifest.metrics.get("zoo_of"):
                return int(manifest.metrics["zoo_of"])
        return None

    def _is_specialist(self, edge_id: str, version: int) -> bool:
        """Whether version was chosen for a scene after the first one."""
        if not 0 < version <= self.registry.latest_version(edge_id):
            return False
        return self.registry.manifest(edge_id, version).metrics.get("scene_start", 0.0) > 0.0

    def _generalist(self, edge_id: str) -> int | None:
        """The edge's first version (the bootstrap's, trained on the most frames): the general model.

        Fine-tunes on the first scene are not general: on dev, one tuned on 24 clean frames scored
        0.6 on the returning clean scene against 0.82 for the first model.
        """
        return 1 if self.registry.latest_version(edge_id) >= 1 else None

    def _send(
        self, change: SceneChange, version: int, scene_start: float, preprocess: str | None = None
    ) -> ModelManifest | None:
        """Register version's weights again as the edge's newest version, seeing frames as
        `preprocess` says (None: as version does); None if the edge's newest version already is
        that model (a fine-tune that kept its starting point, or an earlier copy): there is
        nothing to send."""
        newest = self.registry.manifest(change.edge_id, self.registry.latest_version(change.edge_id))
        wanted = self.registry.manifest(change.edge_id, version)
        if newest.model_key == model_key(wanted.sha256, preprocess or wanted.preprocess):
            log.info("zoo: %s already holds v%d's weights as v%d", change.edge_id, version, newest.version)
            return None
        stored = self.registry.reissue(
            change.edge_id, version, preprocess=preprocess, scene_start=scene_start, zoo_of=float(version)
        )
        log.info("zoo: %s gets v%d's weights as v%d", change.edge_id, version, stored.version)
        return stored
