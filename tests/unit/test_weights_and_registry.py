"""Weights codec, student (de)serialisation, and the versioned model registry."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest
import torch

from cloud_trainer.registry import MANIFEST, WEIGHTS, ModelRegistry
from edgesync.errors import IntegrityError, InvalidInput, NotFound
from edgesync.student import StudentModel, check_arch
from edgesync.types import ModelManifest
from edgesync.weights import decode_state_dict, encode_state_dict, sha256_hex

CLASSES = ["person", "car"]


@pytest.fixture(scope="module")
def student() -> StudentModel:
    torch.manual_seed(0)
    return StudentModel.fresh(CLASSES, 64, version=3)


@pytest.fixture(scope="module")
def encoded(student: StudentModel) -> tuple[bytes, ModelManifest]:
    data, _ = student.encode()
    return data, student.manifest(data, parent=2)


def manifest_for(data: bytes, version: int = 1, parent: int = 0, **fields: object) -> ModelManifest:
    return ModelManifest(
        version=version,
        parent=parent,
        sha256=sha256_hex(data),
        size_bytes=len(data),
        arch="yolov8n.yaml",
        class_names=tuple(CLASSES),
        imgsz=64,
        **fields,
    )


# ---------------------------------------------------------------- weights codec


def test_state_dict_round_trips_through_safetensors_bytes() -> None:
    state = {
        "conv.weight": torch.tensor([[0.5, -1.25], [2.0, 0.0]]),  # exact in fp16
        "bn.num_batches_tracked": torch.tensor(17, dtype=torch.int64),
    }
    decoded = decode_state_dict(encode_state_dict(state), sha256_hex(encode_state_dict(state)))
    assert set(decoded) == set(state)
    assert decoded["conv.weight"].dtype == torch.float32
    assert torch.equal(decoded["conv.weight"], state["conv.weight"])
    assert decoded["bn.num_batches_tracked"].dtype == torch.int64
    assert int(decoded["bn.num_batches_tracked"]) == 17


def test_floating_weights_travel_as_fp16() -> None:
    state = {"w": torch.full((1000,), 0.1, dtype=torch.float32)}
    data = encode_state_dict(state)
    assert len(data) < 1000 * 4  # fp32 would need 4000 bytes for the values alone
    assert torch.equal(decode_state_dict(data)["w"], state["w"].half().float())


def test_sha256_mismatch_is_an_integrity_error_naming_the_source() -> None:
    data = encode_state_dict({"w": torch.ones(4)})
    with pytest.raises(IntegrityError, match="update v7.*sha256"):
        decode_state_dict(data, "0" * 64, source="update v7")


def test_truncated_bytes_with_a_hash_are_an_integrity_error() -> None:
    data = encode_state_dict({"w": torch.ones(64)})
    with pytest.raises(IntegrityError):
        decode_state_dict(data[: len(data) // 2], sha256_hex(data))


@pytest.mark.parametrize("garbage", [b"", b"garbage", b"\x08\x00\x00\x00\x00\x00\x00\x00{not json"])
def test_garbage_bytes_are_invalid_input_naming_the_source(garbage: bytes) -> None:
    with pytest.raises(InvalidInput, match="upload.bin"):
        decode_state_dict(garbage, source="upload.bin")


# ---------------------------------------------------------------- student bytes


def test_student_round_trips_through_bytes_and_manifest(
    student: StudentModel, encoded: tuple[bytes, ModelManifest]
) -> None:
    data, manifest = encoded
    assert manifest.version == 3 and manifest.parent == 2
    assert manifest.sha256 == sha256_hex(data) and manifest.size_bytes == len(data)
    loaded = StudentModel.from_bytes(manifest, data)
    assert loaded.version == 3
    assert loaded.class_names == CLASSES
    assert loaded.imgsz == 64
    assert loaded.arch == student.arch
    original = student.state_dict()
    for name, tensor in loaded.state_dict().items():
        expected = original[name]
        if expected.is_floating_point():
            expected = expected.half().float()
        assert torch.equal(tensor, expected), name


def test_student_from_truncated_bytes_is_an_integrity_error(encoded: tuple[bytes, ModelManifest]) -> None:
    data, manifest = encoded
    with pytest.raises(IntegrityError, match="truncated"):
        StudentModel.from_bytes(manifest, data[:-100])


def test_student_from_altered_bytes_is_an_integrity_error(encoded: tuple[bytes, ModelManifest]) -> None:
    data, manifest = encoded
    altered = bytearray(data)
    altered[len(altered) // 2] ^= 0xFF
    with pytest.raises(IntegrityError, match="sha256"):
        StudentModel.from_bytes(manifest, bytes(altered))


def test_student_from_weights_for_another_class_count_is_invalid_input(
    encoded: tuple[bytes, ModelManifest],
) -> None:
    data, manifest = encoded
    three_classes = dataclasses.replace(manifest, class_names=("person", "car", "bus"))
    with pytest.raises(InvalidInput, match="3 classes"):
        StudentModel.from_bytes(three_classes, data)


def test_student_from_garbage_with_a_matching_manifest_is_invalid_input() -> None:
    garbage = b"this is not a safetensors file at all"
    with pytest.raises(InvalidInput, match="not a valid safetensors"):
        StudentModel.from_bytes(manifest_for(garbage), garbage)


@pytest.mark.parametrize("arch", ["../../evil.yaml", "resnet50.yaml", "yolov8n.pt", "yolov8n.yaml; rm -rf /"])
def test_unknown_architecture_names_are_refused(arch: str) -> None:
    with pytest.raises(InvalidInput, match="architecture"):
        check_arch(arch)


# ---------------------------------------------------------------- registry


def test_registered_versions_increase_from_one_and_latest_follows(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    assert registry.latest_version("cam-1") == 0
    assert registry.latest("cam-1") is None
    stored = [registry.register("cam-1", bytes([i]) * 100, manifest_for(b"x", version=99)) for i in range(3)]
    assert [m.version for m in stored] == [1, 2, 3]
    assert registry.latest_version("cam-1") == 3
    assert (tmp_path / "registry" / "edges" / "cam-1" / "LATEST").read_text().strip() == "3"
    assert registry.latest("cam-1") == stored[-1]
    assert [m.version for m in registry.versions("cam-1")] == [1, 2, 3]


def test_register_records_the_real_hash_and_size_of_the_bytes(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    data = b"model bytes" * 10
    stored = registry.register(None, data, manifest_for(b"something else", parent=0))
    assert stored.sha256 == sha256_hex(data)
    assert stored.size_bytes == len(data)
    manifest, loaded = registry.load(None, stored.version)
    assert loaded == data
    assert manifest == stored


def test_lineages_of_edges_and_base_are_independent(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.register(None, b"base", manifest_for(b"base"))
    registry.register("cam-1", b"a1", manifest_for(b"a1"))
    registry.register("cam-1", b"a2", manifest_for(b"a2"))
    assert registry.latest_version(None) == 1
    assert registry.latest_version("cam-1") == 2
    assert registry.latest_version("cam-2") == 0


def test_missing_version_is_not_found(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.register("cam-1", b"a1", manifest_for(b"a1"))
    with pytest.raises(NotFound, match="cam-1"):
        registry.load("cam-1", 2)


def test_register_leaves_no_staging_folder_behind(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    for i in range(3):
        registry.register("cam-1", bytes([i]) * 10, manifest_for(b"x"))
    lineage = tmp_path / "edges" / "cam-1"
    assert sorted(p.name for p in lineage.iterdir() if p.is_dir()) == ["v000001", "v000002", "v000003"]


def test_leftover_staging_folder_of_a_crashed_writer_is_not_a_version(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.register("cam-1", b"good", manifest_for(b"good"))
    crashed = tmp_path / "edges" / "cam-1" / ".staging-crashed"
    crashed.mkdir()
    (crashed / WEIGHTS).write_bytes(b"half")
    (crashed / MANIFEST).write_text((tmp_path / "edges" / "cam-1" / "v000001" / MANIFEST).read_text())
    assert [m.version for m in registry.versions("cam-1")] == [1]
    assert registry.register("cam-1", b"next", manifest_for(b"next")).version == 2
    assert [m.version for m in registry.versions("cam-1")] == [1, 2]


def test_reader_never_sees_a_half_written_version(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    reader = ModelRegistry(tmp_path)  # another process sharing the folder
    stop = threading.Event()
    errors: list[Exception] = []
    seen: set[int] = set()

    def read_loop() -> None:
        while not stop.is_set():
            try:
                manifest = reader.latest("cam-1")
                if manifest is not None:
                    loaded, data = reader.load("cam-1", manifest.version)
                    assert len(data) == loaded.size_bytes == 256 * 1024
                    seen.add(manifest.version)
            except Exception as exc:  # any NotFound/IntegrityError/parse error is a failure
                errors.append(exc)
                return

    thread = threading.Thread(target=read_loop)
    thread.start()
    try:
        for i in range(25):
            registry.register("cam-1", bytes([i]) * (256 * 1024), manifest_for(b"x"))
    finally:
        stop.set()
        thread.join(timeout=10)
    assert errors == []
    assert seen  # the reader did read while versions were being written


def test_ensure_edge_copies_the_newest_base_as_version_one_with_parent_zero(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.register(None, b"base v1", manifest_for(b"base v1"))
    registry.register(None, b"base v2", manifest_for(b"base v2", parent=1))
    assert registry.ensure_edge("cam-1") == 1
    manifest, data = registry.load("cam-1", 1)
    assert data == b"base v2"
    assert manifest.parent == 0
    assert manifest.version == 1


def test_ensure_edge_keeps_an_existing_lineage(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.register(None, b"base", manifest_for(b"base"))
    registry.ensure_edge("cam-1")
    registry.register("cam-1", b"trained", manifest_for(b"trained", parent=1))
    assert registry.ensure_edge("cam-1") == 2
    assert registry.latest_version("cam-1") == 2


def test_ensure_edge_without_a_base_model_gives_nothing(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    assert registry.ensure_edge("cam-1") == 0
    assert registry.versions("cam-1") == []


def test_load_detects_a_corrupted_weights_file(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.register("cam-1", b"\x00" * 1000, manifest_for(b"x"))
    weights = tmp_path / "edges" / "cam-1" / "v000001" / WEIGHTS
    corrupted = bytearray(weights.read_bytes())
    corrupted[500] = 0xFF
    weights.write_bytes(bytes(corrupted))
    with pytest.raises(IntegrityError, match="cam-1 v1"):
        registry.load("cam-1", 1)


def test_wait_for_newer_returns_when_another_thread_registers(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path, poll_s=5.0)  # the condition variable, not polling, wakes it
    registry.register("cam-1", b"v1", manifest_for(b"v1"))
    timer = threading.Timer(0.2, lambda: registry.register("cam-1", b"v2", manifest_for(b"v2")))
    started = time.monotonic()
    timer.start()
    try:
        newer = registry.wait_for_newer("cam-1", have_version=1, timeout_s=10.0)
    finally:
        timer.join()
    assert newer is not None and newer.version == 2
    assert time.monotonic() - started < 3.0


def test_wait_for_newer_sees_a_version_registered_by_another_process(tmp_path: Path) -> None:
    waiter = ModelRegistry(tmp_path, poll_s=0.05)
    writer = ModelRegistry(tmp_path)
    timer = threading.Timer(0.2, lambda: writer.register("cam-1", b"v1", manifest_for(b"v1")))
    timer.start()
    try:
        newer = waiter.wait_for_newer("cam-1", have_version=0, timeout_s=10.0)
    finally:
        timer.join()
    assert newer is not None and newer.version == 1


def test_wait_for_newer_returns_at_once_when_already_behind(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.register("cam-1", b"v1", manifest_for(b"v1"))
    started = time.monotonic()
    assert registry.wait_for_newer("cam-1", have_version=0, timeout_s=10.0).version == 1
    assert time.monotonic() - started < 1.0


def test_wait_for_newer_times_out_with_none(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path, poll_s=0.05)
    registry.register("cam-1", b"v1", manifest_for(b"v1"))
    started = time.monotonic()
    assert registry.wait_for_newer("cam-1", have_version=1, timeout_s=0.3) is None
    assert 0.25 <= time.monotonic() - started < 2.0


@pytest.mark.parametrize("edge_id", ["../x", "..", "a/b", "", "/abs"])
def test_path_traversal_edge_ids_are_refused(tmp_path: Path, edge_id: str) -> None:
    root = tmp_path / "registry"
    registry = ModelRegistry(root)
    with pytest.raises(InvalidInput):
        registry.register(edge_id, b"x", manifest_for(b"x"))
    with pytest.raises(InvalidInput):
        registry.latest_version(edge_id)
    with pytest.raises(InvalidInput):
        registry.ensure_edge(edge_id)
    with pytest.raises(InvalidInput):
        registry.wait_for_newer(edge_id, 0, timeout_s=0.01)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry"]
    assert list(root.rglob("*")) == []
