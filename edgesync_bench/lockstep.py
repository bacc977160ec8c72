"""A training job run in step with the simulation's virtual clock, so that it sees the stream as it is.

The live worker looks at the world at every epoch boundary: whether the edge has left the
scene the job trains for (training.stop_on_scene_change), whether a much more valuable job of
another edge is queued (cloud_trainer.worker.Preempted); meanwhile the job shows as running, so
no second job of its edge is queued, and at its end it is judged against the scene the edge is
in (here: at its last boundary; its last epoch and the judging run from there). In the
benchmark the stream only moves on between pieces of cloud work, so a job run in one go would
see the world as it was when it started. Here the job runs in its own thread and stops at each
boundary (the worker's `at_boundary` hook) until the simulation has streamed up to the
boundary's virtual time; then the worker's own checks look at the store as it is at that moment.

Only one of the two threads runs at a time: the simulation waits while the job trains an epoch,
the job waits while the simulation streams, so a seed gives the same numbers however loaded the
machine is.
"""

from __future__ import annotations

import threading

from cloud_trainer.worker import TrainingWorker
from edgesync.types import TrainingJob


class Abandoned(Exception):
    """The stream ended while the job was paused at an epoch boundary."""


class LockstepJob:
    """One claimed job of worker, run by its own thread and paused at each epoch boundary.

    start() and resume() return once the job is paused at its next boundary (epochs_done says
    which) or has ended (finished: outcome holds the finished job, or error what it raised, e.g.
    Preempted). close() ends a paused job without training further.
    """

    def __init__(self, worker: TrainingWorker, job: TrainingJob, max_epochs: int) -> None:
        self.worker = worker
        self.job = job
        self.max_epochs = max_epochs
        self.epochs_done = 0  # in this claim, at the boundary the job is paused at
        self.finished = False
        self.outcome: TrainingJob | None = None
        self.error: BaseException | None = None
        self._abandon = False
        self._to_job = threading.Semaphore(0)
        self._to_sim = threading.Semaphore(0)
        self._thread = threading.Thread(target=self._run, name=f"bench-job-{job.job_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._to_sim.acquire()

    def resume(self) -> None:
        """Let the paused job train on to its next boundary or its end, and wait for that."""
        if self.finished:
            raise RuntimeError(f"job {self.job.job_id} has ended; nothing to resume")
        self._to_job.release()
        self._to_sim.acquire()

    def close(self) -> None:
        """End the job if it is paused (it raises Abandoned in its thread) and wait for its thread."""
        if not self._thread.is_alive():
            return
        self._abandon = True
        self._to_job.release()
        self._thread.join()

    def at_boundary(self, job: TrainingJob, epochs_done: int) -> None:
        """The worker's hook, in the job's thread: hand control to the simulation until resumed."""
        self.epochs_done = epochs_done
        self._to_sim.release()
        self._to_job.acquire()
        if self._abandon:
            raise Abandoned(f"job {job.job_id}: the stream ended after epoch {epochs_done}")

    def _run(self) -> None:
        try:
            self.outcome = self.worker.run_job(self.job, max_epochs=self.max_epochs)
        except BaseException as exc:  # handed to the simulation's thread, which decides
            self.error = exc
        finally:
            self.finished = True
            self._to_sim.release()
