"""Teacher labelling in batches, off the ingest path."""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

import cv2
import numpy as np

from cloud_trainer.metrics import SAMPLES_LABELLED
from cloud_trainer.state import StateStore, StoreUnavailable
from edgesync.teachers import Teacher
from edgesync.types import Detection, StoredSample

log = logging.getLogger(__name__)


def map_to_edge_classes(labels: list[Detection], teacher_names: list[str], edge_names: list[str]) -> list[Detection]:
    """Re-index teacher boxes into the edge's class list by name; classes the edge lacks are dropped."""
    index = {name: i for i, name in enumerate(edge_names)}
    out = []
    for d in labels:
        target = index.get(teacher_names[d.class_id])
        if target is not None:
            out.append(Detection(d.x1, d.y1, d.x2, d.y2, target, d.score))
    return out


class LabelListener(Protocol):
    """Whoever decides what labelled samples lead to (the training manager, or a benchmark baseline)."""

    def on_labelled(self, samples: list[StoredSample]) -> Any: ...


class Labeller:
    """Takes unlabelled samples from the store in batches, labels them with the teacher, tells the manager."""

    def __init__(
        self,
        store: StateStore,
        teacher: Teacher,
        listener: LabelListener,
        batch_size: int,
        max_wait_s: float,
    ) -> None:
        self.store = store
        self.teacher = teacher
        self.listener = listener
        self.batch_size = batch_size
        self.max_wait_s = max_wait_s
        self.labelled = 0

    def label_batch(self, samples: list[StoredSample]) -> list[StoredSample]:
        """Label samples with the teacher and store the labels; returns the labelled ones."""
        frames, kept = [], []
        for s in samples:
            image = cv2.imdecode(np.frombuffer(self.store.get_jpeg(s.edge_id, s.sample_id), np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("sample %s of %s no longer decodes; skipped", s.sample_id, s.edge_id)
                continue
            frames.append(image)
            kept.append(s)
        if not kept:
            return []
        class_names = {e: self.store.get_edge(e).class_names for e in {s.edge_id for s in kept}}
        for s, boxes in zip(kept, self.teacher.label(frames), strict=True):
            s.labels = map_to_edge_classes(boxes, self.teacher.class_names, class_names[s.edge_id])
            self.store.set_labels(s.edge_id, s.sample_id, s.labels)
        self.labelled += len(kept)
        SAMPLES_LABELLED.inc(len(kept))
        self.listener.on_labelled(kept)
        return kept

    def run(self, stop: threading.Event) -> None:
        """Label until stop is set; a failing batch is logged and the loop goes on, and an
        unreachable store is waited for."""
        while not stop.is_set():
            try:
                batch = self.store.take_unlabelled(self.batch_size, timeout_s=self.max_wait_s or 0.5)
            except StoreUnavailable as exc:  # e.g. Redis restarting: wait for it rather than die
                log.warning("labeller waiting for the store: %s", exc)
                stop.wait(1.0)
                continue
            if not batch:
                continue
            try:
                self.label_batch(batch)
            except Exception:
                log.exception("labelling a batch of %d samples failed", len(batch))
