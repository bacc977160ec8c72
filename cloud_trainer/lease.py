"""Keeping a job's lease while training it: a heartbeat thread, and the fence before registering.

The store's lease on a claimed job lasts lease_s seconds. While a worker trains, a LeaseKeeper
renews it every lease_s/3, so a lease only lapses when the worker stops (killed, crashed, cut
off from the store) and another worker may then take the job over. When a renewal fails the
keeper flags the claim as lost; the worker checks the flag at epoch boundaries and, once more,
by renewing synchronously right before it registers a model (the fence), so a worker that lost
its job never registers a model for it.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

import grpc

from cloud_trainer.state import StateStore, StoreUnavailable
from edgesync.errors import EdgeSyncError
from edgesync.types import TrainingJob

log = logging.getLogger(__name__)


class LeaseLost(EdgeSyncError):
    """The job's claim is no longer this worker's: another worker has taken the job over."""

    http_status = 409
    grpc_code = grpc.StatusCode.ABORTED


class LeaseKeeper:
    """Renews job's lease in a background thread for the duration of a `with` block.

    A job that was never claimed (job.lease empty: tests, tools running a job directly) has no
    lease to keep and is never reported lost.
    """

    def __init__(self, store: StateStore, job: TrainingJob, lease_s: float) -> None:
        self.store = store
        self.job = job
        self.lease_s = lease_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{job.job_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        if self.job.lease:
            self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.lease_s)

    def _beat(self) -> None:
        interval = self.lease_s / 3
        while not self._stop.wait(interval):
            try:
                if self.store.renew_lease(self.job, self.lease_s):
                    continue
            except StoreUnavailable as exc:  # the lease may outlive a short outage: try again
                log.warning("job %s: cannot renew its lease (%s)", self.job.job_id, exc)
                continue
            self._lose("its lease was taken over")
            return

    def _lose(self, why: str) -> None:
        if not self.lost.is_set():
            log.warning("job %s: worker %s lost the job: %s", self.job.job_id, self.job.worker_id, why)
        self.lost.set()

    def check(self) -> None:
        """Raise LeaseLost if a heartbeat found the claim lost (called at epoch boundaries)."""
        if self.lost.is_set():
            raise LeaseLost(f"job {self.job.job_id}: worker {self.job.worker_id} no longer holds its lease")

    def fence(self) -> None:
        """Renew now and raise LeaseLost unless the claim is still this worker's (before registering)."""
        self.check()
        if self.job.lease and not self.store.renew_lease(self.job, self.lease_s):
            self._lose("the fence before registering found it taken over")
            self.check()
