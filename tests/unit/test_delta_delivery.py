"""Deltas end to end without a network: the registry's choice, the worker's validation, the edge's refusals."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import cloud_trainer.worker as worker_module
from cloud_trainer.registry import PAYLOADS, ModelRegistry
from cloud_trainer.state import MemoryStore
from cloud_trainer.training import FineTuneResult
from cloud_trainer.worker import TrainingWorker
from edge_agent.hotswap import HotSwapDetector
from edge_agent.model_store import EdgeModelStore
from edge_agent.updates import UpdateListener
from edgesync.config import DownlinkConfig, RetryConfig, TrainingConfig
from edgesync.delta import decode_update, encode_delta, prepare
from edgesync.student import StudentModel
from edgesync.types import Detection, EdgeInfo, ModelManifest, StoredSample, TrainingJob
from edgesync.weights import decode_state_dict, encode_state_dict, sha256_hex

EDGE = "cam-1"
CLASSES = ["person", "car"]


def _manifest(weights: bytes, version: int = 1, parent: int = 0) -> ModelManifest:
    return ModelManifest(version, parent, sha256_hex(weights), len(weights), "yolov8n.yaml", tuple(CLASSES), 64)


def _synthetic(seed: int, scale: float = 1.0) -> bytes:
    gen = torch.Generator().manual_seed(seed)
    return encode_state_dict({"w": torch.randn(2000, generator=gen) * scale, "b": torch.ones(50)})


def _nudged(weights: bytes, seed: int, step: float = 0.002) -> bytes:
    """weights after a small fine-tune-like step on every float tensor."""
    gen = torch.Generator().manual_seed(seed)
    state = decode_state_dict(weights)
    return encode_state_dict(
        {k: v + torch.randn(v.shape, generator=gen) * step if v.is_floating_point() else v for k, v in state.items()}
    )


# ---------------------------------------------------------------- the registry's choice


def _registry(tmp_path: Path, **downlink) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry", downlink=DownlinkConfig(**downlink))


def test_full_weights_when_the_edge_holds_no_version_the_registry_knows(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    v1, v2 = _synthetic(0), _nudged(_synthetic(0), 1)
    registry.register(EDGE, v1, _manifest(v1))
    registry.register(EDGE, v2, _manifest(v2, 2, 1))
    for held in ({}, {1: "0" * 64}, {7: sha256_hex(v1)}):  # nothing, other weights under v1, an unknown version
        manifest, payload = registry.delivery(EDGE, 2, held)
        assert (manifest.payload.encoding, manifest.payload.compression) == ("full", "zstd")
        assert decode_update(manifest, payload, {}.get)[1] == v2


def test_a_delta_against_the_held_version_when_it_is_smaller_and_it_is_cached(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    v1, v2 = _synthetic(0), _nudged(_synthetic(0), 1)
    registry.register(EDGE, v1, _manifest(v1))
    registry.register(EDGE, v2, _manifest(v2, 2, 1))
    manifest, payload = registry.delivery(EDGE, 2, {1: sha256_hex(v1)})
    assert manifest.payload.label == "fp16-delta from v1 (zstd)"
    assert len(payload) < registry.delivery(EDGE, 2, {})[0].payload.size_bytes
    assert decode_update(manifest, payload, {1: v1}.get)[1] == v2
    cached = sorted(p.name for p in (tmp_path / "registry/edges" / EDGE / "v000002" / PAYLOADS).iterdir())
    assert cached == ["fp16-delta-zstd-from-v000001.bin", "fp16-delta-zstd-from-v000001.json"]


def test_full_weights_when_a_delta_would_not_be_smaller(tmp_path: Path) -> None:
    registry = _registry(tmp_path, compress=False)
    v1 = encode_state_dict({"w": torch.zeros(2000), "b": torch.zeros(50)})
    v2 = _synthetic(3)  # every value changed, nothing to gain over sending it whole
    registry.register(EDGE, v1, _manifest(v1))
    registry.register(EDGE, v2, _manifest(v2, 2, 1))
    delta = encode_delta(v2, v1, 1, "fp16-delta", compression="")
    assert delta is not None and delta[0].size_bytes >= len(v2)
    manifest, payload = registry.delivery(EDGE, 2, {1: sha256_hex(v1)})
    assert manifest.payload.encoding == "full" and payload == v2


def test_full_weights_when_the_downlink_config_says_so(tmp_path: Path) -> None:
    registry = _registry(tmp_path, encoding="full", compress=False)
    v1, v2 = _synthetic(0), _nudged(_synthetic(0), 1)
    registry.register(EDGE, v1, _manifest(v1))
    registry.register(EDGE, v2, _manifest(v2, 2, 1))
    manifest, payload = registry.delivery(EDGE, 2, {1: sha256_hex(v1)})
    assert manifest.payload.encoding == "full" and payload == v2


def test_a_lossy_delta_goes_to_its_validated_base_and_an_exact_one_elsewhere(tmp_path: Path) -> None:
    cfg = DownlinkConfig(encoding="int8-delta", sparse_fraction=0.2)
    registry = ModelRegistry(tmp_path / "registry", downlink=cfg)
    v1 = _synthetic(0)
    v2 = _nudged(v1, 1)
    registry.register(EDGE, v1, _manifest(v1))
    registry.register(EDGE, v2, _manifest(v2, 2, 1))
    update = prepare(_nudged(v2, 2), v2, 2, cfg)  # what the worker does for v3, against v2
    assert update.lossy
    registry.register(EDGE, update.weights, _manifest(update.weights, 3, 2), payloads=[update.payload])

    to_parent, payload = registry.delivery(EDGE, 3, {1: sha256_hex(v1), 2: sha256_hex(v2)})
    assert to_parent.payload.label == "int8-delta@0.2 from v2 (zstd)" and payload == update.payload[1]
    assert decode_update(to_parent, payload, {2: v2}.get)[1] == update.weights

    to_older, payload = registry.delivery(EDGE, 3, {1: sha256_hex(v1)})
    assert to_older.payload.label == "fp16-delta from v1 (zstd)"
    assert decode_update(to_older, payload, {1: v1}.get)[1] == update.weights


# ---------------------------------------------------------------- the worker validates the rebuilt model


@pytest.fixture(scope="module")
def student() -> StudentModel:
    torch.manual_seed(0)
    return StudentModel.fresh(CLASSES, 64, version=1)


@pytest.fixture(scope="module")
def trained(student: StudentModel) -> StudentModel:
    """The student after a small fine-tune step."""
    gen = torch.Generator().manual_seed(1)
    state = {
        k: v + torch.randn(v.shape, generator=gen) * 0.01 if v.is_floating_point() else v
        for k, v in student.state_dict().items()
    }
    return StudentModel.from_state(state, CLASSES, 64, "yolov8n.yaml")


def _worker_setup(tmp_path: Path, student: StudentModel, downlink: DownlinkConfig):
    store = MemoryStore()
    registry = ModelRegistry(tmp_path / "registry", downlink=downlink)
    data, _ = student.encode()
    registry.register(EDGE, data, student.manifest(data))
    store.upsert_edge(EdgeInfo(edge_id=EDGE, class_names=CLASSES))
    jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))[1].tobytes()
    for i in range(10):
        store.add_sample(StoredSample(f"s{i}", EDGE, float(i), float(i), 1, 0.5, i, [], 64, 64), jpeg)
        store.set_labels(EDGE, f"s{i}", [Detection(5, 5, 30, 30, 0, 0.9)])
    worker = TrainingWorker(store, registry, TrainingConfig(min_heldout=2, min_fresh=4), "w", workdir=tmp_path)
    return registry, worker


@pytest.mark.parametrize(("rebuilt_score", "registered"), [(0.6, True), (0.4, False)])
def test_the_worker_judges_and_registers_the_model_the_edge_will_rebuild(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    student: StudentModel,
    trained: StudentModel,
    rebuilt_score: float,
    registered: bool,
) -> None:
    downlink = DownlinkConfig(encoding="int8-delta", sparse_fraction=0.1)
    registry, worker = _worker_setup(tmp_path, student, downlink)
    base, _ = student.encode()
    rebuilt = prepare(trained.encode()[0], base, 1, downlink).weights
    scores = {student.encode()[1]: 0.5, trained.encode()[1]: 0.7, sha256_hex(rebuilt): rebuilt_score}
    monkeypatch.setattr(worker_module, "evaluate", lambda model, frames: scores[model.encode()[1]])
    monkeypatch.setattr(worker_module, "fine_tune", lambda *a, **kw: FineTuneResult(trained, 1, 8))

    job = worker.run_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 1))

    assert (job.metrics["map50_trained"], job.metrics["map50_after"]) == (0.7, rebuilt_score)
    assert bool(job.result_version) == registered  # 0.7 trained, but the edge would get 0.4: refused
    if registered:
        manifest, weights = registry.load(EDGE, job.result_version)
        assert weights == rebuilt  # cloud and edge hold the same tensors
        sent, payload = registry.delivery(EDGE, job.result_version, {1: sha256_hex(base)})
        assert sent.payload.label == "int8-delta@0.1 from v1 (zstd)"
        assert decode_update(sent, payload, {1: base}.get)[1] == rebuilt


# ---------------------------------------------------------------- the edge refuses a bad delta and keeps its model


@pytest.fixture
def edge(tmp_path: Path, student: StudentModel):
    store = EdgeModelStore(tmp_path / "models")
    data, _ = student.encode()
    store.save(student.manifest(data), data)
    detector = HotSwapDetector(student)
    listener = UpdateListener(None, EDGE, lambda: detector, store, RetryConfig(), {}, lambda: detector.version)
    return listener, detector, store


def _delta(student: StudentModel, trained: StudentModel) -> tuple[ModelManifest, bytes]:
    base, _ = student.encode()
    update = prepare(trained.encode()[0], base, 1, DownlinkConfig(encoding="int8-delta"))
    manifest = trained.manifest(update.weights, version=2, parent=1)
    return dataclasses.replace(manifest, payload=update.payload[0]), update.payload[1]


def test_the_edge_rebuilds_a_delta_stores_it_and_stages_it(edge, student: StudentModel, trained: StudentModel) -> None:
    listener, detector, store = edge
    manifest, payload = _delta(student, trained)
    assert listener.handle(manifest, payload) is not None
    assert store.held()[2] == manifest.sha256  # a base for the next delta
    assert listener.received_bytes == len(payload)
    event = detector.swap_if_ready()
    assert event is not None and event.version == 2 and event.bytes == len(payload)


def _wrong_base(store: EdgeModelStore, manifest: ModelManifest, payload: bytes, other: StudentModel):
    data, _ = other.encode()
    store.save(dataclasses.replace(other.manifest(data), version=1), data)  # another v1 than the cloud's
    return manifest, payload


def _truncated(store: EdgeModelStore, manifest: ModelManifest, payload: bytes, other: StudentModel):
    return manifest, payload[: len(payload) * 3 // 4]


def _sha_mismatch(store: EdgeModelStore, manifest: ModelManifest, payload: bytes, other: StudentModel):
    return dataclasses.replace(manifest, sha256=other.encode()[1]), payload


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (_wrong_base, "wrong base: it is a delta against v1 with sha256"),
        (_truncated, "truncated int8-delta from v1"),
        (_sha_mismatch, "rebuilt weights do not match the manifest"),
    ],
    ids=["wrong-base", "truncated", "sha-mismatch"],
)
def test_a_bad_delta_is_refused_with_its_reason_and_the_current_model_kept(
    edge, student: StudentModel, trained: StudentModel, spoil, problem: str
) -> None:
    listener, detector, store = edge
    manifest, payload = spoil(store, *_delta(student, trained), trained)
    held_before = store.held()

    assert listener.handle(manifest, payload) is None

    assert listener.rejected == 1 and problem in listener.last_error
    assert detector.swap_if_ready() is None and detector.current is student
    assert store.held() == held_before  # nothing stored
    assert 1 not in listener.held()  # the next subscription asks for something other than this delta
