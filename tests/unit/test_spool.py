"""Upload spool: FIFO over a disk journal that survives restarts and never blocks the frame loop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from edge_agent.spool import CORRUPT_DIR, SUFFIX, SampleSpool
from edgesync.config import QueueConfig
from edgesync.errors import InvalidInput, NotFound
from edgesync.types import Detection, Sample


def sample(i: int) -> Sample:
    # Values exactly representable as float32, so the wire round trip is exact.
    return Sample(
        sample_id=f"s{i:04d}",
        edge_id="edge-1",
        capture_time=1000.0 + i,
        model_version=3,
        jpeg=bytes([i % 256]) * (100 + i),
        detections=[Detection(1.0, 2.0, 30.5, 40.0, 0, 0.75)],
        score=0.5,
        frame_index=i,
    )


def spool(path: Path, max_items: int = 4, max_spill_items: int = 100) -> SampleSpool:
    return SampleSpool(path, max_items=max_items, max_spill_items=max_spill_items)


def files(path: Path) -> list[str]:
    return sorted(p.name for p in path.glob(f"*{SUFFIX}"))


def drain(sp: SampleSpool) -> list[Sample]:
    out = []
    while (s := sp.get(timeout_s=0)) is not None:
        sp.ack(s.sample_id)
        out.append(s)
    return out


def test_get_returns_samples_in_fifo_order(tmp_path: Path) -> None:
    sp = spool(tmp_path)
    for i in range(3):
        assert sp.put(sample(i))
    assert [s.sample_id for s in drain(sp)] == ["s0000", "s0001", "s0002"]
    assert sp.get(timeout_s=0) is None


def test_full_upload_queue_spills_to_disk_and_loses_nothing(tmp_path: Path) -> None:
    sp = spool(tmp_path, max_items=4)
    originals = [sample(i) for i in range(20)]
    assert all(sp.put(s) for s in originals)
    assert sp.in_memory == 4
    assert sp.depth == 20
    assert len(files(tmp_path)) == 20
    stats = sp.stats
    assert (stats.accepted, stats.spilled, stats.dropped) == (20, 16, 0)
    assert drain(sp) == originals
    assert files(tmp_path) == []


def test_restart_reloads_unacked_samples_in_order(tmp_path: Path) -> None:
    first = spool(tmp_path, max_items=2)
    for i in range(6):
        first.put(sample(i))
    first.ack(first.get().sample_id)  # s0000 uploaded
    leased = first.get()  # s0001 in flight when the process dies
    assert leased is not None and leased.sample_id == "s0001"
    del first

    second = spool(tmp_path, max_items=2)
    assert second.depth == 5
    assert second.stats.recovered == 5
    assert second.put(sample(6))  # numbered after the recovered ones
    assert [s.frame_index for s in drain(second)] == [1, 2, 3, 4, 5, 6]


def test_ack_deletes_the_samples_file(tmp_path: Path) -> None:
    sp = spool(tmp_path)
    sp.put(sample(0))
    sp.put(sample(1))
    got = sp.get()
    assert got is not None and len(files(tmp_path)) == 2
    sp.ack(got.sample_id)
    assert len(files(tmp_path)) == 1
    assert sp.depth == 1 and sp.stats.acked == 1
    with pytest.raises(NotFound, match="s0000"):
        sp.ack("s0000")


def test_nack_puts_the_sample_back_first(tmp_path: Path) -> None:
    sp = spool(tmp_path)
    for i in range(3):
        sp.put(sample(i))
    a, b = sp.get(), sp.get()
    assert a is not None and b is not None
    sp.nack(b.sample_id)  # the uploader hands back newest first, which keeps the order
    sp.nack(a.sample_id)
    assert sp.depth == 3
    assert [s.sample_id for s in drain(sp)] == ["s0000", "s0001", "s0002"]


def test_put_refused_and_counted_when_the_disk_cap_is_reached(tmp_path: Path) -> None:
    sp = spool(tmp_path, max_items=1, max_spill_items=3)
    assert [sp.put(sample(i)) for i in range(4)] == [True, True, True, False]
    assert sp.stats.dropped == 1 and len(files(tmp_path)) == 3
    leased = sp.get()
    assert leased is not None
    assert not sp.put(sample(4))  # a leased sample still occupies the journal
    sp.ack(leased.sample_id)
    assert sp.put(sample(5))
    assert [s.frame_index for s in drain(sp)] == [1, 2, 5]


def test_corrupt_and_truncated_files_are_quarantined_on_restart(tmp_path: Path) -> None:
    first = spool(tmp_path)
    for i in range(4):
        first.put(sample(i))
    names = files(tmp_path)
    truncated = tmp_path / names[1]
    truncated.write_bytes(truncated.read_bytes()[:-10])
    garbled = tmp_path / names[2]
    data = bytearray(garbled.read_bytes())
    data[-1] ^= 0xFF
    garbled.write_bytes(bytes(data))
    (tmp_path / f"{99:012d}.tmp").write_bytes(b"half a write")  # never accepted
    del first

    second = spool(tmp_path)
    assert second.stats.corrupt == 2
    assert sorted(p.name for p in (tmp_path / CORRUPT_DIR).iterdir()) == [names[1], names[2]]
    assert not list(tmp_path.glob("*.tmp"))
    assert [s.frame_index for s in drain(second)] == [0, 3]
    assert second.put(sample(9))
    assert files(tmp_path)[0] > names[3]  # quarantined numbers are never reused


def test_a_file_damaged_after_start_up_is_skipped_not_fatal(tmp_path: Path) -> None:
    sp = spool(tmp_path, max_items=1)
    for i in range(3):
        sp.put(sample(i))
    (tmp_path / files(tmp_path)[1]).write_bytes(b"\x00\x01")  # only on disk, damaged
    assert [s.frame_index for s in drain(sp)] == [0, 2]
    assert sp.stats.corrupt == 1 and sp.depth == 0


def test_put_never_blocks_while_another_thread_holds_a_lease(tmp_path: Path) -> None:
    sp = spool(tmp_path, max_items=2, max_spill_items=1000)
    sp.put(sample(0))
    leased = threading.Event()
    release = threading.Event()

    def uploader() -> None:
        got = sp.get(timeout_s=5)
        assert got is not None
        leased.set()
        release.wait(5)  # a slow upload: the lease is held, not acked
        sp.ack(got.sample_id)

    thread = threading.Thread(target=uploader)
    thread.start()
    assert leased.wait(5)
    durations = []
    for i in range(1, 200):
        start = time.perf_counter()
        assert sp.put(sample(i))
        durations.append(time.perf_counter() - start)
    release.set()
    thread.join(5)
    assert max(durations) < 0.25, f"slowest put took {max(durations):.3f}s"
    assert sum(durations) < 2.0
    assert sp.stats.spilled > 0 and sp.depth == 199


def test_concurrent_producer_and_consumer_deliver_everything_in_order(tmp_path: Path) -> None:
    sp = spool(tmp_path, max_items=8, max_spill_items=10_000)
    n = 300
    received: list[int] = []

    def consumer() -> None:
        while len(received) < n:
            s = sp.get(timeout_s=5)
            assert s is not None
            if s.frame_index % 7 == 0 and s.sample_id not in retried:
                retried.add(s.sample_id)
                sp.nack(s.sample_id)  # a failed upload is retried first
                continue
            received.append(s.frame_index)
            sp.ack(s.sample_id)

    retried: set[str] = set()
    thread = threading.Thread(target=consumer)
    thread.start()
    for i in range(n):
        assert sp.put(sample(i))
    thread.join(10)
    assert not thread.is_alive()
    assert received == list(range(n))
    assert files(tmp_path) == [] and sp.depth == 0


def test_close_wakes_a_blocked_get(tmp_path: Path) -> None:
    sp = spool(tmp_path)
    threading.Timer(0.1, sp.close).start()
    start = time.perf_counter()
    assert sp.get(timeout_s=5) is None
    assert time.perf_counter() - start < 2


def test_duplicate_sample_id_is_refused(tmp_path: Path) -> None:
    sp = spool(tmp_path)
    sp.put(sample(0))
    with pytest.raises(InvalidInput, match="s0000"):
        sp.put(sample(0))


def test_from_config_uses_the_queue_settings(tmp_path: Path) -> None:
    sp = SampleSpool.from_config(QueueConfig(max_items=3, spill_dir=tmp_path / "spill", max_spill_items=7))
    assert (sp.max_items, sp.max_spill_items) == (3, 7)
    assert (tmp_path / "spill").is_dir()
