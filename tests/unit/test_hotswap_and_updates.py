"""Edge model updates: stream assembly, verification, the on-disk store, and hot swap between frames."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from edge_agent.hotswap import HotSwapDetector
from edge_agent.model_store import EdgeModelStore
from edge_agent.updates import LOADER_NICE, UpdateListener, assemble, yield_to_frame_loop
from edgesync import wire
from edgesync.config import RetryConfig
from edgesync.errors import IntegrityError
from edgesync.student import Prediction, StudentModel, fused_state
from edgesync.types import ModelManifest
from edgesync.v1 import edgesync_pb2 as pb
from edgesync.v1 import edgesync_pb2_grpc as pb_grpc

CLASSES = ["person", "car"]


@pytest.fixture(scope="module")
def student() -> StudentModel:
    torch.manual_seed(0)
    return StudentModel.fresh(CLASSES, 64, version=1)


@pytest.fixture(scope="module")
def update(student: StudentModel) -> tuple[ModelManifest, bytes]:
    """A valid update: version 5 of the student, its manifest and safetensors bytes."""
    data, _ = student.encode()
    return student.manifest(data, version=5, parent=4, trained_until=time.time() - 30), data


def versioned(model: StudentModel, version: int) -> StudentModel:
    """Another StudentModel object at another version (shares the weights; swapping cares about identity)."""
    other = copy.copy(model)
    other.version = version
    return other


def chunks(manifest: ModelManifest, data: bytes, size: int = 1000, last: bool = True) -> list[pb.ModelChunk]:
    """An update as the cloud streams it: the manifest, then data slices, the final one marked last."""
    out = [pb.ModelChunk(manifest=wire.manifest_to_pb(manifest))]
    out += [pb.ModelChunk(data=data[i : i + size]) for i in range(0, len(data), size)]
    out[-1].last = last
    return out


def small_manifest(version: int, data: bytes = b"") -> ModelManifest:
    return ModelManifest(
        version=version,
        parent=version - 1,
        sha256="0" * 64,
        size_bytes=len(data),
        arch="yolov8n.yaml",
        class_names=tuple(CLASSES),
        imgsz=64,
        created=1_700_000_000.0,
    )


# ---------------------------------------------------------------- hot swap


def test_offered_model_goes_live_only_at_swap_if_ready(student: StudentModel) -> None:
    old, new = versioned(student, 1), versioned(student, 2)
    detector = HotSwapDetector(old)
    detector.offer(new, size_bytes=123)
    assert detector.current is old and detector.version == 1  # frames keep using the old model
    event = detector.swap_if_ready()
    assert event is not None
    assert (event.version, event.previous_version, event.bytes) == (2, 1, 123)
    assert detector.current is new and detector.previous is old


def test_swap_if_ready_without_a_staged_model_does_nothing(student: StudentModel) -> None:
    detector = HotSwapDetector(versioned(student, 1))
    assert detector.swap_if_ready() is None
    detector.offer(versioned(student, 2))
    assert detector.swap_if_ready() is not None
    assert detector.swap_if_ready() is None  # the staged model is consumed once
    assert detector.version == 2


def test_update_delay_is_measured_from_the_training_data_arrival(student: StudentModel) -> None:
    detector = HotSwapDetector(versioned(student, 1))
    detector.offer(versioned(student, 2), trained_until=time.time() - 42.0)
    event = detector.swap_if_ready()
    assert event is not None and 42.0 <= event.update_delay_s < 50.0


def test_rollback_returns_to_the_previous_model_once(student: StudentModel) -> None:
    old, new = versioned(student, 1), versioned(student, 2)
    detector = HotSwapDetector(old)
    detector.offer(new)
    detector.swap_if_ready()
    assert detector.rollback() == 1
    assert detector.current is old and detector.previous is None
    assert detector.rollback() == 1  # nothing further back to go to


@pytest.mark.parametrize("version", [1, 2], ids=["older", "same"])
def test_staged_model_not_newer_than_the_running_one_is_ignored(student: StudentModel, version: int) -> None:
    running = versioned(student, 2)
    detector = HotSwapDetector(running)
    detector.offer(versioned(student, version))
    assert detector.swap_if_ready() is None
    assert detector.current is running and detector.previous is None
    assert detector.swap_if_ready() is None  # and it was dropped, not kept for later


def test_latest_offer_before_a_frame_boundary_wins(student: StudentModel) -> None:
    detector = HotSwapDetector(versioned(student, 1))
    detector.offer(versioned(student, 2))
    detector.offer(versioned(student, 3))
    event = detector.swap_if_ready()
    assert event is not None and event.version == 3 and event.previous_version == 1


def test_concurrent_offers_swap_in_increasing_versions_only(student: StudentModel) -> None:
    detector = HotSwapDetector(versioned(student, 1))
    models = [versioned(student, v) for v in range(2, 202)]

    def listener() -> None:
        for model in models:
            detector.offer(model)

    thread = threading.Thread(target=listener)
    thread.start()
    swapped = []
    while thread.is_alive():
        event = detector.swap_if_ready()  # the frame loop, between frames
        if event is not None:
            swapped.append(event.version)
    thread.join()
    if (event := detector.swap_if_ready()) is not None:  # the frame after the last offer
        swapped.append(event.version)
    assert swapped == sorted(swapped) and len(set(swapped)) == len(swapped)
    assert detector.version == 201


def test_predict_uses_the_current_model_on_a_frame(student: StudentModel) -> None:
    detector = HotSwapDetector(versioned(student, 1))
    frame = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    prediction = detector.predict(frame)
    assert isinstance(prediction, Prediction)
    assert all(0 <= d.class_id < len(CLASSES) for d in prediction.detections)


def test_models_no_frame_uses_again_become_spares(student: StudentModel) -> None:
    v1, v2, v3, v4 = (versioned(student, v) for v in (1, 2, 3, 4))
    detector = HotSwapDetector(v1)
    assert detector.take_spare() is None
    for model in (v2, v3):
        detector.offer(model)
        detector.swap_if_ready()
    assert detector.current is v3 and detector.previous is v2
    assert detector.take_spare() is v1  # two swaps back: no frame, no rollback reaches it
    assert detector.take_spare() is None  # a spare is handed out once
    detector.rollback()
    assert detector.take_spare() is v3  # rolled back: never served again
    overtaken, stale = versioned(student, 5), versioned(student, 1)
    detector.offer(overtaken)
    detector.offer(v4)
    assert detector.take_spare() is overtaken
    detector.swap_if_ready()
    detector.offer(stale)
    assert detector.swap_if_ready() is None and detector.take_spare() is stale


def test_stocked_spares_are_copies_of_the_current_model(student: StudentModel) -> None:
    detector = HotSwapDetector(student)
    detector.stock_spares(2)
    spares = [detector.take_spare(), detector.take_spare()]
    assert detector.take_spare() is None
    assert all(s is not None and s is not student and s.model is not student.model for s in spares)
    for spare in spares:
        assert spare is not None and spare.version == student.version
        mine, theirs = student.state_dict(), spare.state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)
        assert all(mine[k].data_ptr() != theirs[k].data_ptr() for k in mine)


def serving_output(model: StudentModel, x: torch.Tensor) -> torch.Tensor:
    """The predictor's raw network output (the fused copy predict() runs) for a batch x."""
    with torch.no_grad():
        out = model._predictor.model(x)
    return out[0] if isinstance(out, (list, tuple)) else out


def test_an_update_loaded_into_a_spare_predicts_as_one_built_afresh() -> None:
    torch.manual_seed(1)
    trained = StudentModel.fresh(CLASSES, 64, version=1)
    with torch.no_grad():  # batch norms that fold into something other than identity
        for m in trained.model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2), m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.2), m.bias.normal_(0, 0.2)
    data, _ = trained.encode()
    manifest = trained.manifest(data, version=9, preprocess="auto-levels")
    spare = StudentModel.fresh(CLASSES, 64, version=3)
    loaded = StudentModel.from_bytes(manifest, data, spare=spare)
    built = StudentModel.from_bytes(manifest, data)
    assert loaded is spare and (loaded.version, loaded.preprocess) == (9, "auto-levels")
    assert loaded.encode()[1] == manifest.sha256  # the trained copy: what the edge would ship back
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(serving_output(loaded, x), serving_output(built, x), rtol=1e-5, atol=1e-4)
    frame = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    assert loaded.predict([frame])[0].detections == built.predict([frame])[0].detections


def test_a_spare_that_does_not_fit_the_update_is_left_alone(update: tuple[ModelManifest, bytes]) -> None:
    manifest, data = update
    spare = StudentModel.fresh(["person", "car", "bus"], 64, version=3)
    model = StudentModel.from_bytes(manifest, data, spare=spare)
    assert model is not spare and model.version == 5 and spare.version == 3
    other_settings = StudentModel.fresh(CLASSES, 64, version=3, conf=0.4)
    assert StudentModel.from_bytes(manifest, data, spare=other_settings) is not other_settings


def test_a_model_fuse_would_rebuild_otherwise_is_built_afresh() -> None:
    """yolov10n's RepVGGDW blocks fuse by merging branches, not by folding a batch norm."""
    torch.manual_seed(2)
    v10 = StudentModel.fresh(CLASSES, 64, arch="yolov10n.yaml", version=1)
    data, _ = v10.encode()
    spare = StudentModel.fresh(CLASSES, 64, arch="yolov10n.yaml", version=2)
    assert fused_state(spare.model, spare._predictor.model.model.state_dict().keys()) is None
    model = StudentModel.from_bytes(v10.manifest(data, version=4), data, spare=spare)
    assert model is not spare and model.version == 4


# ---------------------------------------------------------------- assemble


def test_assemble_joins_the_data_after_the_manifest() -> None:
    data = bytes(range(256)) * 10
    manifest = small_manifest(3, data)
    result = assemble(iter(chunks(manifest, data, size=300)))
    assert result == (manifest, data)


def test_assemble_reads_consecutive_updates_then_none_at_stream_end() -> None:
    first, second = b"a" * 2500, b"b" * 10
    stream = iter(chunks(small_manifest(2, first), first) + chunks(small_manifest(3, second), second))
    assert assemble(stream) == (small_manifest(2, first), first)
    assert assemble(stream) == (small_manifest(3, second), second)
    assert assemble(stream) is None


def test_assemble_of_an_empty_stream_is_none() -> None:
    assert assemble(iter([])) is None


def test_truncated_stream_is_an_integrity_error() -> None:
    data = b"x" * 5000
    with pytest.raises(IntegrityError, match="v4.*truncated"):
        assemble(iter(chunks(small_manifest(4, data), data, last=False)))


def test_data_before_its_manifest_is_an_integrity_error() -> None:
    stream = [pb.ModelChunk(data=b"orphan"), *chunks(small_manifest(2, b"ok"), b"ok")]
    with pytest.raises(IntegrityError, match="before its manifest"):
        assemble(iter(stream))


def test_new_manifest_before_the_last_chunk_is_an_integrity_error() -> None:
    cut = chunks(small_manifest(2, b"x" * 3000), b"x" * 3000, last=False)[:2]
    stream = cut + chunks(small_manifest(3, b"y"), b"y")
    with pytest.raises(IntegrityError, match="v2.*cut short"):
        assemble(iter(stream))


# ---------------------------------------------------------------- update listener


@pytest.fixture
def stub() -> Iterator[pb_grpc.EdgeSyncStub]:
    """A real stub on a channel that is never used (handle() does not talk to the cloud)."""
    channel = grpc.insecure_channel("127.0.0.1:9")
    yield pb_grpc.EdgeSyncStub(channel)
    channel.close()


def listener(stub: pb_grpc.EdgeSyncStub, detector: HotSwapDetector | None, store: EdgeModelStore, **kw):
    return UpdateListener(
        stub=stub,
        edge_id="cam-1",
        detector_ref=lambda: detector,
        model_store=store,
        retry=RetryConfig(),
        model_kwargs={},
        have_version=lambda: detector.version if detector else 0,
        **kw,
    )


def corrupt(data: bytes) -> bytes:
    out = bytearray(data)
    out[len(out) // 3] ^= 0x01
    return bytes(out)


@pytest.mark.parametrize("damage", [corrupt, lambda d: d[:-1]], ids=["flipped-bit", "truncated"])
def test_damaged_update_is_refused_and_the_current_model_kept(
    tmp_path: Path, stub: pb_grpc.EdgeSyncStub, student: StudentModel, update: tuple[ModelManifest, bytes], damage
) -> None:
    manifest, data = update
    running = versioned(student, 1)
    detector = HotSwapDetector(running)
    store = EdgeModelStore(tmp_path / "models")
    updates = listener(stub, detector, store)

    assert updates.handle(manifest, damage(data)) is None
    assert updates.rejected == 1
    assert detector.swap_if_ready() is None  # nothing staged
    assert detector.current is running
    assert list((tmp_path / "models").iterdir()) == []  # nothing saved


def test_good_update_is_saved_and_staged_for_the_next_frame(
    tmp_path: Path, stub: pb_grpc.EdgeSyncStub, student: StudentModel, update: tuple[ModelManifest, bytes]
) -> None:
    manifest, data = update
    detector = HotSwapDetector(versioned(student, 1))
    store = EdgeModelStore(tmp_path / "models")
    updates = listener(stub, detector, store)

    model = updates.handle(manifest, data)
    assert model is not None and model.version == 5
    assert updates.rejected == 0 and updates.received_bytes == len(data)
    assert (tmp_path / "models" / "v000005.safetensors").read_bytes() == data
    assert json.loads((tmp_path / "models" / "v000005.json").read_text())["sha256"] == manifest.sha256
    assert detector.version == 1  # not live until the frame loop swaps
    event = detector.swap_if_ready()
    assert event is not None and event.version == 5 and event.bytes == len(data)
    assert event.update_delay_s >= 30.0
    assert detector.current is model


def test_an_update_is_loaded_into_the_detectors_spare(
    tmp_path: Path, stub: pb_grpc.EdgeSyncStub, student: StudentModel, update: tuple[ModelManifest, bytes]
) -> None:
    manifest, data = update
    detector = HotSwapDetector(student.copy())
    detector.stock_spares(1)
    (spare,) = detector._spares
    updates = listener(stub, detector, EdgeModelStore(tmp_path / "models"))
    model = updates.handle(manifest, data)
    assert model is spare and model.version == 5 and detector.take_spare() is None
    assert detector.swap_if_ready() is not None and detector.current is spare


def test_a_spare_an_update_did_not_use_stays_a_spare(
    tmp_path: Path, stub: pb_grpc.EdgeSyncStub, student: StudentModel, update: tuple[ModelManifest, bytes]
) -> None:
    """A refused update leaves the spares as they were; one for other classes is built afresh and
    the spare it could not use stays one (before, it was dropped until the next swap retired a model)."""
    manifest, data = update
    detector = HotSwapDetector(student.copy())
    detector.stock_spares(1)
    (spare,) = detector._spares
    updates = listener(stub, detector, EdgeModelStore(tmp_path / "models"))
    damaged = dataclasses.replace(manifest, sha256="f" * 64)
    assert updates.handle(damaged, data) is None
    assert detector._spares == [spare]
    other = StudentModel.fresh(["person", "car", "bike"], 64)
    other_data, _ = other.encode()
    built = updates.handle(other.manifest(other_data, version=6), other_data)
    assert built is not None and built is not spare and detector._spares == [spare]


def test_first_model_goes_to_the_callback_when_no_detector_runs_yet(
    tmp_path: Path, stub: pb_grpc.EdgeSyncStub, update: tuple[ModelManifest, bytes]
) -> None:
    manifest, data = update
    received: list[tuple[int, int, int]] = []
    updates = listener(
        stub,
        None,
        EdgeModelStore(tmp_path),
        on_first_model=lambda model, m, size: received.append((model.version, m.version, size)),
    )
    assert updates.handle(manifest, data) is not None
    assert received == [(5, 5, len(data))]


# ---------------------------------------------------------------- edge model store


def test_store_loads_the_newest_saved_model(tmp_path: Path, student: StudentModel) -> None:
    store = EdgeModelStore(tmp_path)
    assert store.load_newest() is None
    data, _ = student.encode()
    store.save(student.manifest(data, version=2), data)
    store.save(student.manifest(data, version=3), data)
    loaded = store.load_newest(conf=0.4)
    assert loaded is not None and loaded.version == 3 and loaded.conf == 0.4


def test_store_skips_a_corrupt_newest_model(tmp_path: Path, student: StudentModel) -> None:
    store = EdgeModelStore(tmp_path)
    data, _ = student.encode()
    store.save(student.manifest(data, version=2), data)
    newest = store.save(student.manifest(data, version=3), data)
    newest.write_bytes(corrupt(data))
    loaded = store.load_newest()
    assert loaded is not None and loaded.version == 2


def test_store_keeps_only_the_newest_few(tmp_path: Path) -> None:
    store = EdgeModelStore(tmp_path, keep=2)
    for version in range(1, 6):
        store.save(small_manifest(version, b"w"), b"w")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "v000004.json",
        "v000004.safetensors",
        "v000005.json",
        "v000005.safetensors",
    ]


def test_an_edge_with_a_verify_key_runs_signed_updates_and_refuses_forged_ones(
    tmp_path: Path, stub: pb_grpc.EdgeSyncStub, student: StudentModel, update: tuple[ModelManifest, bytes]
) -> None:
    from edgesync.signing import ManifestSigner, ManifestVerifier, generate_keypair

    private, public = generate_keypair(tmp_path / "keys")
    manifest, data = update
    signed = ManifestSigner(private).sign(manifest)
    running = versioned(student, 1)
    detector = HotSwapDetector(running)
    store = EdgeModelStore(tmp_path / "models")
    updates = listener(stub, detector, store, verifier=ManifestVerifier(public))

    forged = type(signed).from_json({**signed.to_json(), "metrics": {"map50": 0.99}})
    assert updates.handle(forged, data) is None  # a manifest altered after signing
    assert updates.handle(manifest, data) is None  # an unsigned one
    assert updates.rejected == 2 and "signed" in updates.last_error
    assert detector.swap_if_ready() is None and detector.current is running
    assert list((tmp_path / "models").iterdir()) == []  # nothing saved

    assert updates.handle(signed, data) is not None
    assert detector.swap_if_ready().version == 5
    # after a restart only stored models that verify are loaded
    assert store.load_newest(ManifestVerifier(public)).version == 5
    other_private, other_public = generate_keypair(tmp_path / "other")
    assert store.load_newest(ManifestVerifier(other_public)) is None


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux's")
def test_the_update_loader_thread_and_the_threads_it_starts_yield_to_the_frame_loop() -> None:
    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    own = nice()
    seen: dict[str, int] = {}

    def loader() -> None:
        yield_to_frame_loop()
        seen["loader"] = nice()
        worker = threading.Thread(target=lambda: seen.update(worker=nice()))
        worker.start()
        worker.join()

    thread = threading.Thread(target=loader)
    thread.start()
    thread.join()

    assert seen == {"loader": min(19, own + LOADER_NICE), "worker": min(19, own + LOADER_NICE)}
    assert nice() == own  # the frame loop's is untouched
