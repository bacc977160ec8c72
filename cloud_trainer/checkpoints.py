"""Per-job training checkpoints, so a job taken over from a dead worker resumes where it stopped.

A worker saves the weights at every epoch boundary, with the job's plan (which samples train,
validate and replay, how many epochs in all, which model it started from) and the weights of
the epoch that has scored best so far (the job may end with those, training.keep), under
``{data_dir}/checkpoints/{job_id}/``. Workers on several machines must see the same directory,
like the registry beside it. A worker that takes a job over loads the plan and the weights and
trains only the remaining epochs on the same samples; with no checkpoint it starts cleanly.

Once a job's model is registered the worker records the version here too (``result.json``)
before it marks the job done, so a worker dying between the two does not make its successor
train and register the job a second time.

Files are written to a temporary name and renamed into place: a reader sees the previous
checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from cloud_trainer.registry import write_atomic
from edgesync.weights import sha256_hex

log = logging.getLogger(__name__)

WEIGHTS = "weights.safetensors"
PLAN = "checkpoint.json"
RESULT = "result.json"
BEST = "best.safetensors"


def _encode(state: dict[str, torch.Tensor]) -> bytes:
    return st_save({k: v.detach().cpu().contiguous() for k, v in state.items()})


@dataclass
class JobPlan:
    """What a job trains on and for how long, fixed when it first starts."""

    base_version: int  # the registry version training started from
    epochs_total: int
    train: list[str]  # sample ids
    held: list[str]
    replay: list[str]
    epochs_done: int = 0
    sha256: str = ""  # of the weights file saved with it
    setting: str = ""  # the training candidate the profiler chose ("": the configured settings)
    lr_scale: float = 1.0  # of the setting's lr0, where training.backtrack has lowered it
    score: float | None = None  # held-out mAP50 of the saved weights, where known
    # the epoch that scored best on the held-out frames so far (training.keep: best), with its
    # score and, where it is not the last, the sha256 of its weights (saved beside them)
    best_epoch: int = 0
    best_score: float | None = None
    best_sha256: str = ""
    preprocess: str = "none"  # how the model being trained sees frames (training.preprocess chose it)


@dataclass
class Checkpoint:
    """A plan, the weights after plan.epochs_done epochs and those of its best epoch so far."""

    plan: JobPlan
    state: dict[str, torch.Tensor] = field(repr=False)
    best_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)  # None: no epoch scored yet


class JobCheckpoints:
    """Checkpoints and registration records of training jobs, one directory per job."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, job_id: str) -> Path:
        """A directory name safe for any job id: its readable part plus a hash that keeps ids apart."""
        readable = re.sub(r"[^A-Za-z0-9_.-]", "_", job_id)[:80].lstrip(".")
        return self.root / f"{readable}-{hashlib.sha256(job_id.encode()).hexdigest()[:8]}"

    def save(
        self, job_id: str, plan: JobPlan, state: dict[str, torch.Tensor], best: dict[str, torch.Tensor] | None = None
    ) -> None:
        """Record the weights after plan.epochs_done epochs (replacing the previous checkpoint),
        and best, those of plan.best_epoch, where that is an earlier epoch."""
        folder = self._dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        # full precision, unlike registered models (fp16): a resumed job continues from exactly these weights
        data = _encode(state)
        plan.sha256 = sha256_hex(data)
        write_atomic(folder / WEIGHTS, data)
        if best is not None and plan.best_epoch != plan.epochs_done:
            best_data = _encode(best)
            best_sha256 = sha256_hex(best_data)
            if best_sha256 != plan.best_sha256:  # unchanged since the last save: not rewritten
                write_atomic(folder / BEST, best_data)
                plan.best_sha256 = best_sha256
        else:
            plan.best_sha256 = ""
        write_atomic(folder / PLAN, json.dumps(asdict(plan)).encode())  # last: it names the weights' sha256
        log.debug("job %s: checkpoint after epoch %d/%d", job_id, plan.epochs_done, plan.epochs_total)

    def load(self, job_id: str) -> Checkpoint | None:
        """The job's latest checkpoint, or None if it has none (or a torn one, which is discarded)."""
        folder = self._dir(job_id)
        try:
            plan = JobPlan(**json.loads((folder / PLAN).read_text()))
            data = (folder / WEIGHTS).read_bytes()
            if sha256_hex(data) != plan.sha256:
                raise ValueError("weights do not match the plan's sha256 (torn write)")
            state = st_load(data)
            best = None
            if plan.best_sha256:
                best_data = (folder / BEST).read_bytes()
                if sha256_hex(best_data) != plan.best_sha256:
                    raise ValueError("best weights do not match the plan's sha256 (torn write)")
                best = st_load(best_data)
            elif plan.best_epoch and plan.best_epoch == plan.epochs_done:
                best = state
        except FileNotFoundError:
            return None
        except Exception as exc:  # a checkpoint is an optimisation: a bad one means starting over
            log.warning("job %s: ignoring unusable checkpoint in %s (%s)", job_id, folder, exc)
            return None
        return Checkpoint(plan, state, best)

    def epochs_done(self, job_id: str) -> int:
        """Epochs the job's latest checkpoint holds (0 without one): its progress, cheaply."""
        try:
            return int(json.loads((self._dir(job_id) / PLAN).read_text())["epochs_done"])
        except (FileNotFoundError, ValueError, KeyError):
            return 0

    def record_result(self, job_id: str, version: int, metrics: dict[str, float]) -> None:
        """Note that the job registered version (with these metrics), before the job is marked done."""
        folder = self._dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / RESULT, json.dumps({"version": version, "metrics": metrics}).encode())

    def result(self, job_id: str) -> tuple[int, dict[str, float]] | None:
        """(version, metrics) the job already registered, or None."""
        try:
            data = json.loads((self._dir(job_id) / RESULT).read_text())
        except FileNotFoundError:
            return None
        return int(data["version"]), {k: float(v) for k, v in data["metrics"].items()}

    def clear(self, job_id: str) -> None:
        """Forget the job's checkpoint and result record (it is finished)."""
        shutil.rmtree(self._dir(job_id), ignore_errors=True)
