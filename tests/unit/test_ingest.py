"""Cloud ingest: bad uploads are refused with errors naming them and counted; good ones stored once."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cloud_trainer.ingest import Ingest
from cloud_trainer.state import MemoryStore
from edgesync.config import LimitsConfig
from edgesync.errors import InvalidInput, UnknownEdge
from edgesync.types import Detection, EdgeInfo, Sample

EDGE = "cam-1"


def jpeg(width: int = 64, height: int = 48, noise: bool = False) -> bytes:
    rng = np.random.default_rng(0)
    image = (
        rng.integers(0, 255, (height, width, 3), dtype=np.uint8) if noise else np.full((height, width, 3), 90, np.uint8)
    )
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def png() -> bytes:
    ok, buf = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    assert ok
    return buf.tobytes()


def sample(data: bytes, sample_id: str = "cam-1:000001", edge_id: str = EDGE) -> Sample:
    return Sample(
        sample_id=sample_id,
        edge_id=edge_id,
        capture_time=1_700_000_000.0,
        model_version=2,
        jpeg=data,
        detections=[Detection(1.0, 2.0, 30.0, 40.0, 0, 0.4)],
        score=0.7,
        frame_index=17,
        scene_start=1_699_999_990.0,
        audit=True,
    )


@pytest.fixture
def store() -> MemoryStore:
    store = MemoryStore()
    store.upsert_edge(EdgeInfo(EDGE, ["person", "car"]))
    return store


def ingest(store: MemoryStore, **limits: int) -> Ingest:
    return Ingest(store, LimitsConfig(**limits))


def rejected(store: MemoryStore) -> int:
    return store.get_edge(EDGE).samples_rejected


# ---------------------------------------------------------------- refused uploads


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xd8" + b"\x00" * 200, "corrupt JPEG"),
        (jpeg()[:300], "corrupt JPEG"),
        (png(), "not a JPEG"),
        (b"GIF89a not an image", "not a JPEG"),
        (b"", "empty image"),
    ],
    ids=["corrupt", "truncated", "png", "text", "empty"],
)
def test_bad_image_bytes_are_refused_naming_the_sample_and_counted(
    store: MemoryStore, data: bytes, reason: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        ingest(store).accept(sample(data, sample_id="cam-1:bad"))
    assert reason in str(err.value)
    assert "'cam-1:bad'" in str(err.value) and EDGE in str(err.value)
    assert rejected(store) == 1
    assert store.count_samples(EDGE) == 0


def test_image_with_too_many_pixels_is_refused_naming_its_size(store: MemoryStore) -> None:
    with pytest.raises(InvalidInput, match=r"64x48 exceeds 1000 pixels") as err:
        ingest(store, max_image_pixels=1000).accept(sample(jpeg(64, 48)))
    assert "'cam-1:000001'" in str(err.value)
    assert rejected(store) == 1
    assert store.count_samples(EDGE) == 0


def test_message_over_the_byte_limit_is_refused(store: MemoryStore) -> None:
    big = jpeg(256, 256, noise=True)
    assert len(big) > 2048
    with pytest.raises(InvalidInput, match=rf"{len(big)} bytes exceeds 2048"):
        ingest(store, max_message_bytes=2048).accept(sample(big))
    assert rejected(store) == 1


@pytest.mark.parametrize("bad_id", ["", "../../etc/passwd", "has space", "x" * 129, "semi;colon"])
def test_invalid_sample_id_is_refused_naming_it_and_counted(store: MemoryStore, bad_id: str) -> None:
    with pytest.raises(InvalidInput) as err:
        ingest(store).accept(sample(jpeg(), sample_id=bad_id))
    assert repr(bad_id) in str(err.value)
    assert rejected(store) == 1
    assert store.count_samples(EDGE) == 0


def test_sample_from_an_unregistered_edge_is_refused_naming_it(store: MemoryStore) -> None:
    with pytest.raises(UnknownEdge, match="cam-9"):
        ingest(store).accept(sample(jpeg(), edge_id="cam-9"))
    assert store.count_samples("cam-9") == 0
    assert rejected(store) == 0  # nothing is counted against another edge


def test_unsafe_edge_id_is_refused_naming_it(store: MemoryStore) -> None:
    with pytest.raises(InvalidInput, match=r"'\.\./x'"):
        ingest(store).accept(sample(jpeg(), edge_id="../x"))


def test_sample_claiming_another_edge_than_its_stream_is_refused(store: MemoryStore) -> None:
    store.upsert_edge(EdgeInfo("cam-2", ["person", "car"]))
    with pytest.raises(InvalidInput, match="cam-2"):
        ingest(store).accept(sample(jpeg()), authenticated_edge="cam-2")
    assert store.count_samples(EDGE) == 0


def test_every_refusal_adds_one_to_the_rejected_counter(store: MemoryStore) -> None:
    service = ingest(store)
    for i, data in enumerate([b"", png(), b"\xff\xd8junk"]):
        with pytest.raises(InvalidInput):
            service.accept(sample(data, sample_id=f"cam-1:{i}"))
    assert rejected(store) == 3
    assert store.get_edge(EDGE).samples_received == 0


# ---------------------------------------------------------------- accepted uploads


def test_valid_jpeg_is_stored_with_its_size_and_counted(store: MemoryStore) -> None:
    data = jpeg(64, 48)
    assert ingest(store).accept(sample(data)) is True
    (kept,) = store.list_samples(EDGE)
    assert (kept.sample_id, kept.width, kept.height) == ("cam-1:000001", 64, 48)
    assert kept.frame_index == 17 and kept.model_version == 2
    assert kept.scene_start == 1_699_999_990.0 and kept.audit  # validation data, kept apart by the worker
    assert kept.student == [Detection(1.0, 2.0, 30.0, 40.0, 0, 0.4)]
    assert kept.labels is None  # waits for the teacher
    assert store.get_jpeg(EDGE, "cam-1:000001") == data
    edge = store.get_edge(EDGE)
    assert (edge.samples_received, edge.uplink_bytes, edge.samples_rejected) == (1, len(data), 0)


def test_duplicate_upload_is_stored_once_and_returns_false(store: MemoryStore) -> None:
    service = ingest(store)
    data = jpeg()
    assert service.accept(sample(data)) is True
    assert service.accept(sample(data)) is False
    assert store.count_samples(EDGE) == 1
    edge = store.get_edge(EDGE)
    assert (edge.samples_received, edge.uplink_bytes) == (1, len(data))
    assert len(store.take_unlabelled(10, timeout_s=0)) == 1  # labelled once, not twice


def test_sample_from_the_stream_s_own_edge_is_accepted(store: MemoryStore) -> None:
    assert ingest(store).accept(sample(jpeg()), authenticated_edge=EDGE) is True
