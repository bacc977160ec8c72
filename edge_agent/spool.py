"""The upload queue between the frame loop and the uploader: bounded memory over a disk journal.

Every accepted sample is written to the spill directory before put() returns (one file per
sample, temp name then os.replace, so a crash leaves either the whole file or none). Up to
max_items samples are also kept in memory; beyond that they live on disk only. A sample's file
is deleted only when the uploader acks it, so a crash or restart loses nothing that was
accepted. put() never waits on the network or on the uploader: when the journal is full it
refuses the sample and counts it as dropped.

File layout: ``<spill_dir>/<seq:012d>.sample`` where seq is a monotonic accept counter that
survives restarts (FIFO order), content = header (magic, length, CRC32) + the wire bytes of the
Sample, so a truncated or damaged file is recognised and moved to ``corrupt/``.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

from edgesync.config import QueueConfig
from edgesync.errors import EdgeSyncError, InvalidInput, NotFound
from edgesync.types import Sample
from edgesync.wire import sample_from_bytes, sample_to_bytes

log = logging.getLogger(__name__)

SUFFIX = ".sample"
TMP_SUFFIX = ".tmp"
CORRUPT_DIR = "corrupt"
_MAGIC = b"ESP1"
_HEADER = struct.Struct(">4sII")  # magic, payload length, CRC32 of payload


def encode_record(sample: Sample) -> bytes:
    """A spool file's bytes: header plus the sample's wire serialisation."""
    payload = sample_to_bytes(sample)
    return _HEADER.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode_record(data: bytes, source: str) -> Sample:
    """Inverse of encode_record; InvalidInput (naming source) if truncated or damaged."""
    if len(data) < _HEADER.size:
        raise InvalidInput(f"{source}: truncated spool file ({len(data)} bytes)")
    magic, length, crc = _HEADER.unpack_from(data)
    payload = data[_HEADER.size :]
    if magic != _MAGIC:
        raise InvalidInput(f"{source}: not a spool file (bad magic {magic!r})")
    if len(payload) != length:
        raise InvalidInput(f"{source}: truncated spool file ({len(payload)} of {length} payload bytes)")
    if zlib.crc32(payload) != crc:
        raise InvalidInput(f"{source}: spool file checksum mismatch")
    sample = sample_from_bytes(payload, source)
    if not sample.sample_id:
        raise InvalidInput(f"{source}: sample has no sample_id")
    return sample


@dataclass
class SpoolStats:
    """Counters for the dashboard; dropped and corrupt are the ones to watch."""

    accepted: int = 0
    spilled: int = 0  # accepted while memory was full: kept on disk only
    dropped: int = 0  # refused: the journal was full (or could not be written)
    acked: int = 0
    nacked: int = 0
    corrupt: int = 0  # damaged files moved to corrupt/
    recovered: int = 0  # pending samples found on disk at start-up


class SampleSpool:
    """Thread-safe FIFO of samples awaiting upload, journalled to disk.

    The frame loop calls put(); the uploader calls get(), then ack() once the cloud has the
    sample or nack() to retry it first. depth counts pending samples including leased ones.
    """

    def __init__(self, spill_dir: Path | str, *, max_items: int, max_spill_items: int, fsync: bool = False) -> None:
        if max_items < 1 or max_spill_items < 1:
            raise InvalidInput(
                f"spool limits must be positive: max_items={max_items}, max_spill_items={max_spill_items}"
            )
        self.spill_dir = Path(spill_dir)
        self.max_items = max_items
        self.max_spill_items = max_spill_items
        self.fsync = fsync
        self._cond = threading.Condition()
        self._pending: deque[int] = deque()  # seqs in delivery order, not leased
        self._memory: dict[int, Sample] = {}  # cached pending samples, at most max_items
        self._ids: dict[str, int] = {}  # sample_id -> seq, pending and leased
        self._leased: dict[str, tuple[int, Sample]] = {}
        self._reserved = 0  # puts between capacity check and journal write
        self._next_seq = 0
        self._closed = False
        self._stats = SpoolStats()
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        self._recover()

    @classmethod
    def from_config(cls, cfg: QueueConfig, fsync: bool = False) -> SampleSpool:
        return cls(cfg.spill_dir, max_items=cfg.max_items, max_spill_items=cfg.max_spill_items, fsync=fsync)

    # ------------------------------------------------------------ state

    @property
    def depth(self) -> int:
        """Samples accepted and not yet acked (leased ones included)."""
        with self._cond:
            return len(self._pending) + len(self._leased)

    @property
    def in_memory(self) -> int:
        """Pending samples also held in memory (the rest are read back from disk)."""
        with self._cond:
            return len(self._memory)

    @property
    def stats(self) -> SpoolStats:
        """A snapshot of the counters."""
        with self._cond:
            return replace(self._stats)

    def close(self) -> None:
        """Wake blocked get() calls and make them return None; files stay for the next start."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # ------------------------------------------------------------ producer

    def put(self, sample: Sample) -> bool:
        """Journal a sample and queue it; False (counted as dropped) when the journal is full.

        Never waits on the uploader: the lock is held only for bookkeeping, not for disk writes.
        """
        if not sample.sample_id:
            raise InvalidInput("sample has no sample_id")
        record = encode_record(sample)
        with self._cond:
            if sample.sample_id in self._ids:
                raise InvalidInput(f"sample {sample.sample_id!r} is already in the upload spool")
            if len(self._pending) + len(self._leased) + self._reserved >= self.max_spill_items:
                self._stats.dropped += 1
                log.debug("spool full (%d samples): dropped %s", self.max_spill_items, sample.sample_id)
                return False
            seq = self._next_seq
            self._next_seq += 1
            self._reserved += 1
            self._ids[sample.sample_id] = seq
        try:
            self._write(seq, record)
        except OSError as exc:
            log.error("could not journal sample %s to %s: %s", sample.sample_id, self.spill_dir, exc)
            with self._cond:
                self._reserved -= 1
                del self._ids[sample.sample_id]
                self._stats.dropped += 1
            return False
        with self._cond:
            self._reserved -= 1
            self._insert_in_order(seq)
            if len(self._memory) < self.max_items:
                self._memory[seq] = sample
            else:
                self._stats.spilled += 1
            self._stats.accepted += 1
            self._cond.notify()
        return True

    def _insert_in_order(self, seq: int) -> None:
        """Append seq; a put that overtook an earlier one's write is placed behind it."""
        pending = self._pending
        if not pending or pending[-1] < seq:
            pending.append(seq)
            return
        i = len(pending)
        while i > 0 and pending[i - 1] > seq:
            i -= 1
        pending.insert(i, seq)

    # ------------------------------------------------------------ consumer

    def get(self, timeout_s: float | None = 0.0) -> Sample | None:
        """Lease the oldest pending sample; None if none arrives within timeout_s (None: wait)."""
        deadline = None if timeout_s is None else time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while True:
                while not self._pending and not self._closed:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return None
                    self._cond.wait(remaining)
                if self._closed:
                    return None
                seq = self._pending.popleft()
                sample = self._memory.pop(seq, None)
                if sample is None:
                    sample = self._load(seq)  # disk read under the lock: milliseconds, no network
                    if sample is None:
                        continue
                self._leased[sample.sample_id] = (seq, sample)
                return sample

    def ack(self, sample_id: str) -> None:
        """The cloud has the sample: delete its file."""
        with self._cond:
            try:
                seq, _ = self._leased.pop(sample_id)
            except KeyError:
                raise NotFound(f"sample {sample_id!r} is not leased from the upload spool") from None
            del self._ids[sample_id]
            self._stats.acked += 1
        try:
            self._path(seq).unlink()
        except FileNotFoundError:
            log.warning("spool file for acked sample %s was already gone", sample_id)

    def nack(self, sample_id: str) -> None:
        """The upload failed: put the sample back at the head so it is retried first."""
        with self._cond:
            try:
                seq, sample = self._leased.pop(sample_id)
            except KeyError:
                raise NotFound(f"sample {sample_id!r} is not leased from the upload spool") from None
            self._pending.appendleft(seq)
            if len(self._memory) < self.max_items:
                self._memory[seq] = sample
            self._stats.nacked += 1
            self._cond.notify()

    # ------------------------------------------------------------ disk

    def _path(self, seq: int) -> Path:
        return self.spill_dir / f"{seq:012d}{SUFFIX}"

    def _write(self, seq: int, data: bytes) -> None:
        final = self._path(seq)
        tmp = final.with_suffix(TMP_SUFFIX)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self.fsync:
            dir_fd = os.open(self.spill_dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _read(self, path: Path) -> Sample | None:
        """Decode one spool file; a damaged one is quarantined (counted) and None returned."""
        try:
            return decode_record(path.read_bytes(), str(path))
        except (OSError, EdgeSyncError) as exc:
            self._quarantine(path, exc)
            return None

    def _load(self, seq: int) -> Sample | None:
        sample = self._read(self._path(seq))
        if sample is None:
            for sample_id, s in list(self._ids.items()):
                if s == seq:
                    del self._ids[sample_id]
        return sample

    def _quarantine(self, path: Path, reason: Exception) -> None:
        self._stats.corrupt += 1
        target_dir = self.spill_dir / CORRUPT_DIR
        target = target_dir / path.name
        n = 1
        while target.exists():
            target = target_dir / f"{path.name}.{n}"
            n += 1
        try:
            target_dir.mkdir(exist_ok=True)
            os.replace(path, target)
            log.warning("spool: %s; moved it to %s", reason, target)
        except OSError as exc:
            log.error("spool: %s; could not move it to %s either: %s", reason, target, exc)

    def _recover(self) -> None:
        """Queue the samples a previous run accepted but never got acked, in accept order."""
        found: list[tuple[int, Path]] = []
        for path in self.spill_dir.iterdir():
            if not path.is_file():
                continue
            if path.suffix == TMP_SUFFIX:  # a write that never completed: never accepted
                path.unlink(missing_ok=True)
                continue
            if path.suffix != SUFFIX:
                continue
            try:
                found.append((int(path.stem), path))
            except ValueError:
                self._quarantine(path, InvalidInput(f"{path}: unexpected file name in the spool"))
        found.sort()
        corrupt_dir = self.spill_dir / CORRUPT_DIR
        seen = [seq for seq, _ in found]
        if corrupt_dir.is_dir():  # never reuse a quarantined file's number
            for path in corrupt_dir.iterdir():
                stem = path.name.split(".", 1)[0]
                if stem.isdigit():
                    seen.append(int(stem))
        self._next_seq = max(seen, default=-1) + 1
        for seq, path in found:
            sample = self._read(path)
            if sample is None:
                continue
            if sample.sample_id in self._ids:
                self._quarantine(path, InvalidInput(f"{path}: duplicate sample id {sample.sample_id!r}"))
                continue
            self._ids[sample.sample_id] = seq
            self._pending.append(seq)
            if len(self._memory) < self.max_items:
                self._memory[seq] = sample
            self._stats.recovered += 1
        if self._pending or self._stats.corrupt:
            log.info(
                "spool %s: recovered %d pending samples, quarantined %d damaged files",
                self.spill_dir,
                self._stats.recovered,
                self._stats.corrupt,
            )
