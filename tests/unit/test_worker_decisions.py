"""The worker's accept/reject decision, with training and scoring replaced by known outcomes.

Real fine-tuning is exercised by the end-to-end test; here the models' held-out scores are
fixed so the decision itself is checked: register the candidate if it is not worse, register
the first model again if it beats both, otherwise register nothing.
"""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest

import cloud_trainer.worker as worker_module
from cloud_trainer.registry import ModelRegistry
from cloud_trainer.state import MemoryStore
from cloud_trainer.training import FineTuneResult
from cloud_trainer.worker import TrainingWorker
from edgesync.config import TrainingConfig
from edgesync.evaluation import map50
from edgesync.student import StudentModel
from edgesync.types import Detection, EdgeInfo, StoredSample, TrainingJob

EDGE = "cam-1"
CLASSES = ["person", "car"]


def _model(seed: int) -> StudentModel:
    import torch

    torch.manual_seed(seed)
    return StudentModel.fresh(CLASSES, 64)


def _edge(tmp_path: Path, models: list[StudentModel], samples: int) -> tuple[MemoryStore, ModelRegistry]:
    """A store and registry holding the edge, its models as versions 1.. and `samples` labelled
    samples taken by the newest of them."""
    store = MemoryStore()
    registry = ModelRegistry(tmp_path / "registry")
    for model in models:
        data, _ = model.encode()
        registry.register(EDGE, data, model.manifest(data))
    store.upsert_edge(EdgeInfo(edge_id=EDGE, class_names=CLASSES))
    jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))[1].tobytes()
    for i in range(samples):
        store.add_sample(StoredSample(f"s{i}", EDGE, float(i), float(i), len(models), 0.5, i, [], 64, 64), jpeg)
        store.set_labels(EDGE, f"s{i}", [Detection(5, 5, 30, 30, 0, 0.9)])
    return store, registry


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    first, current, candidate = _model(1), _model(2), _model(3)
    store, registry = _edge(tmp_path, [first, current], samples=10)
    shas = {m.encode()[1]: name for m, name in ((first, "first"), (current, "current"), (candidate, "candidate"))}
    monkeypatch.setattr(
        worker_module,
        "fine_tune",
        lambda current_model, train, val, cfg, workdir, **kw: FineTuneResult(candidate, 1, len(train)),
    )

    def run(scores: dict[str, float], **training) -> tuple[int, str | None]:
        # any other model is the candidate with batch-norm statistics of the new scene (recalibrate_bn)
        monkeypatch.setattr(
            worker_module, "evaluate", lambda model, frames: scores.get(shas.get(model.encode()[1], "recalibrated"), -1)
        )
        worker = TrainingWorker(
            store, registry, TrainingConfig(min_heldout=2, min_fresh=4, **training), "w", workdir=tmp_path
        )
        job = worker.run_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 2))
        if not job.result_version:
            return 0, None
        registered = StudentModel.from_bytes(*registry.load(EDGE, job.result_version)).encode()[1]
        return job.result_version, shas.get(registered, "recalibrated")

    return run


def test_a_better_candidate_is_registered(setup) -> None:
    assert setup({"first": 0.2, "current": 0.5, "candidate": 0.7}) == (3, "candidate")


def test_a_worse_candidate_is_not_registered(setup) -> None:
    assert setup({"first": 0.2, "current": 0.5, "candidate": 0.3}) == (0, None)


def test_the_first_model_comes_back_when_it_beats_both(setup) -> None:
    assert setup({"first": 0.9, "current": 0.5, "candidate": 0.7}) == (3, "first")


def test_without_fallback_the_first_model_is_not_considered(setup) -> None:
    assert setup({"first": 0.9, "current": 0.5, "candidate": 0.3}, fallback_to_first=False) == (0, None)


def test_the_candidate_with_the_new_scenes_batch_norm_statistics_is_registered_when_it_scores_higher(setup) -> None:
    on = {"recalibrate_bn": True}
    assert setup({"first": 0.2, "current": 0.5, "candidate": 0.6, "recalibrated": 0.8}, recalibrate_bn=False) == (
        3,
        "candidate",
    )
    # from v3 (the candidate) on: training hands back the same candidate, its recalibrated form differs
    assert setup({"first": 0.2, "current": 0.5, "candidate": 0.6, "recalibrated": 0.8}, **on) == (4, "recalibrated")
    assert setup({"first": 0.2, "current": 0.5, "candidate": 0.6, "recalibrated": 0.55}, **on) == (5, "candidate")


def test_a_fine_tune_that_kept_the_edges_own_weights_is_not_an_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keep: best on a job whose every optimizer step made things worse keeps epoch 1, which on a
    few dozen frames came before the first step: the weights the edge runs. Even a tolerance that
    accepts anything does not send them again."""
    current = _model(2)
    store, registry = _edge(tmp_path, [current], samples=10)
    monkeypatch.setattr(
        worker_module, "fine_tune", lambda model, train, val, cfg, workdir, **kw: FineTuneResult(model, 1, len(train))
    )
    monkeypatch.setattr(worker_module, "evaluate", lambda model, frames: 0.5)
    cfg = TrainingConfig(min_heldout=2, min_fresh=4, tolerance=1.0, fallback_to_first=False, preprocess=["none"])
    job = TrainingWorker(store, registry, cfg, "w", workdir=tmp_path).run_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 1))
    assert job.status == "done" and job.result_version == 0 and registry.latest_version(EDGE) == 1
    assert job.error == "the kept weights are v1's own (no optimizer step helped): nothing to send"
    assert job.achieved_gain == 0.0


def test_the_job_trains_with_the_candidate_the_profiler_predicts_most_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    current, candidate = _model(2), _model(3)
    store, registry = _edge(tmp_path, [current], samples=20)
    # held-out mAP50 after each epoch under each learning rate: the gentle one keeps improving
    curves = {0.01: [0.45, 0.4, 0.45, 0.5, 0.5, 0.5], 0.002: [0.55, 0.6, 0.65, 0.7, 0.72, 0.74]}
    runs: list[tuple[float, int, int]] = []  # (lr0, training images, epochs) of every fine-tune
    scores: list[float] = []

    def fake_fine_tune(model, train, val, cfg, workdir, epochs=None, on_weights=None, **kw):
        runs.append((cfg.lr0, len(train), epochs))
        scores[:] = list(curves[cfg.lr0])
        for epoch in range(1, epochs + 1):
            on_weights(epoch, candidate.state_dict())
        return FineTuneResult(candidate, epochs, len(train))

    current_sha = current.encode()[1]
    monkeypatch.setattr(worker_module, "fine_tune", fake_fine_tune)
    monkeypatch.setattr(
        worker_module, "evaluate", lambda model, frames: 0.5 if model.encode()[1] == current_sha else scores.pop(0)
    )
    cfg = TrainingConfig(
        min_heldout=4,
        epochs=4,
        lr0=0.01,
        profile_epochs=2,
        profile_fraction=0.5,
        fallback_to_first=False,
        candidates=[{"name": "default"}, {"name": "gentle", "lr0": 0.002, "freeze_bn": True}],
    )
    job = TrainingWorker(store, registry, cfg, "w", workdir=tmp_path).run_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 1))

    assert runs == [(0.01, 8, 2), (0.002, 8, 2), (0.002, 16, 4)]  # two probes on half the frames, then the job
    assert job.metrics["profile_choice"] == 1.0
    assert job.metrics["profile_default_gain"] < 0 < job.metrics["profile_gentle_gain"]
    assert job.predicted_gain == pytest.approx(job.metrics["profile_gentle_gain"])
    assert job.metrics["profile_image_epochs"] == 2 * 8 * 2
    assert job.metrics["image_epochs"] == 16 * 4 + 2 * 8 * 2  # the probes are charged to the job
    assert job.result_version == 2 and job.achieved_gain == pytest.approx(0.72 - 0.5)  # scored once more


def test_the_training_seed_moves_the_replay_draw_and_seed_0_keeps_the_job_ids(tmp_path: Path) -> None:
    store, registry = _edge(tmp_path, [_model(1)], samples=40)  # the 10 newest are fresh, 30 older replay
    job = TrainingJob("job-1", EDGE, 1.0, 0.0, 2)

    def replay(seed: int) -> list[str]:
        worker = TrainingWorker(store, registry, TrainingConfig(max_fresh=10, seed=seed), "w", workdir=tmp_path)
        return [s.sample_id for s in worker.select(job)[2]]

    assert len(replay(0)) == 3 and replay(0) == replay(0) and replay(7) == replay(7)  # half of 6 training frames
    assert replay(7) != replay(0) != replay(8)
    older = [s for s in store.list_samples(EDGE, labelled=True, limit=None) if s.seq < 30]
    drawn = random.Random("job-1").sample(older, 3)
    assert replay(0) == [s.sample_id for s in drawn], "seed 0 draws as every earlier result did"


@pytest.mark.parametrize(("keep", "registered", "kept_epoch"), [("best", "epoch 2", 2.0), ("last", "epoch 3", None)])
def test_keep_best_registers_the_epoch_that_scored_best_on_held_out_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: str, registered: str, kept_epoch: float | None
) -> None:
    current = _model(2)
    store, registry = _edge(tmp_path, [current], samples=20)
    by_epoch = {i: _model(10 + i) for i in (1, 2, 3)}  # the weights after each epoch
    scores = {"current": 0.5, "epoch 1": 0.6, "epoch 2": 0.8, "epoch 3": 0.55}  # a climb, then a collapse
    names = {current.encode()[1]: "current"} | {m.encode()[1]: f"epoch {i}" for i, m in by_epoch.items()}

    def fake_fine_tune(model, train, val, cfg, workdir, epochs=None, on_weights=None, **kw):
        for epoch, weights in by_epoch.items():
            on_weights(epoch, weights.state_dict())
        return FineTuneResult(by_epoch[3], 3, len(train))

    monkeypatch.setattr(worker_module, "fine_tune", fake_fine_tune)
    monkeypatch.setattr(worker_module, "evaluate", lambda model, frames: scores[names[model.encode()[1]]])
    cfg = TrainingConfig(min_heldout=4, epochs=3, fallback_to_first=False, keep=keep)
    job = TrainingWorker(store, registry, cfg, "w", workdir=tmp_path).run_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 1))

    assert names[StudentModel.from_bytes(*registry.load(EDGE, job.result_version)).encode()[1]] == registered
    assert job.metrics.get("kept_epoch") == kept_epoch
    assert job.achieved_gain == pytest.approx(scores[registered] - 0.5)


@pytest.mark.parametrize(
    ("start_competes", "epochs", "registered", "kept_epoch"),
    [
        (True, {1: 0.7, 2: 0.3}, ("current", "auto-levels"), 0.0),  # no epoch beat the view change alone
        (False, {1: 0.7, 2: 0.3}, ("epoch 1", "auto-levels"), 1.0),  # without it, the best epoch
        (True, {1: 0.7, 2: 0.9}, ("epoch 2", "auto-levels"), None),  # an epoch that beats it is kept
    ],
)
def test_the_view_change_alone_competes_as_epoch_0(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    start_competes: bool,
    epochs: dict[int, float],
    registered: tuple[str, str],
    kept_epoch: float | None,
) -> None:
    """v2 scores 0.5 as it sees frames and 0.8 levelled; a job that trains it levelled keeps its
    untrained start, levelled, unless an epoch scores above 0.8 (training.start_competes)."""
    current = _model(2)
    store, registry = _edge(tmp_path, [_model(1), current], samples=20)
    by_epoch = {i: _model(10 + i) for i in epochs}
    names = {current.encode()[1]: "current"} | {m.encode()[1]: f"epoch {i}" for i, m in by_epoch.items()}
    scores = {("current", "none"): 0.5, ("current", "auto-levels"): 0.8}
    scores |= {(f"epoch {i}", "auto-levels"): score for i, score in epochs.items()}

    def fake_fine_tune(start, train, val, cfg, workdir, epochs=None, on_weights=None, **kw):
        assert start.preprocess == "auto-levels"
        for epoch, weights in by_epoch.items():
            on_weights(epoch, weights.state_dict())
        return FineTuneResult(by_epoch[max(by_epoch)].with_preprocess("auto-levels"), len(by_epoch), len(train))

    monkeypatch.setattr(worker_module, "fine_tune", fake_fine_tune)
    monkeypatch.setattr(worker_module, "evaluate", lambda m, frames: scores[(names[m.encode()[1]], m.preprocess)])
    monkeypatch.setattr(TrainingWorker, "_win_rate", lambda *a: 0.5)
    cfg = TrainingConfig(min_heldout=4, epochs=2, fallback_to_first=False, start_competes=start_competes)
    job = TrainingWorker(store, registry, cfg, "w", workdir=tmp_path).run_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 2))

    manifest, data = registry.load(EDGE, job.result_version)
    assert (names[StudentModel.from_bytes(manifest, data).encode()[1]], manifest.preprocess) == registered
    assert job.metrics.get("kept_epoch") == kept_epoch
    assert job.achieved_gain == pytest.approx(scores[registered] - 0.5)


def _scene_change_while_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_frames: int, scores: dict, zoo_sends: bool = True
):
    """A job on an edge that reports a scene change (at t=100) while the job trains and then sends
    `new_frames` labelled frames of the new scene; the zoo meanwhile registered `zoo` as v2 (if zoo_sends).

    scores: mAP50 by (model, scene), model in current / candidate / zoo, scene in old / new."""
    current, candidate, zoo = _model(2), _model(3), _model(4)
    store, registry = _edge(tmp_path, [current], samples=10)
    names = {m.encode()[1]: name for m, name in ((current, "current"), (candidate, "candidate"), (zoo, "zoo"))}
    jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 40, np.uint8))[1].tobytes()

    def fake_fine_tune(model, train, val, cfg, workdir, **kw):
        store.set_meta(EDGE, scene_changed_at=100.0)
        if zoo_sends:
            data, _ = zoo.encode()
            registry.register(EDGE, data, zoo.manifest(data, metrics={"scene_start": 100.0}))
        for i in range(new_frames):
            sample = StoredSample(f"n{i}", EDGE, 100.0 + i, 100.0 + i, 2, 0.5, 100 + i, [], 64, 64, scene_start=100.0)
            store.add_sample(sample, jpeg)
            store.set_labels(EDGE, f"n{i}", [Detection(5, 5, 30, 30, 0, 0.9)])
        return FineTuneResult(candidate, 1, len(train))

    def fake_evaluate(model, frames):
        scene = "new" if all(int(f.name) >= 10 for f in frames) else "old"
        return scores[names[model.encode()[1]], scene]

    monkeypatch.setattr(worker_module, "fine_tune", fake_fine_tune)
    monkeypatch.setattr(worker_module, "evaluate", fake_evaluate)
    cfg = TrainingConfig(min_heldout=2, min_fresh=4, fallback_to_first=False)
    job = TrainingWorker(store, registry, cfg, "w", workdir=tmp_path).run_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 9))
    registered = None
    if job.result_version:
        manifest, data = registry.load(EDGE, job.result_version)
        registered = (names[StudentModel.from_bytes(manifest, data).encode()[1]], manifest.metrics["scene_start"])
    return job, registered


# the candidate gains on the scene it trained on (0.2 -> 0.7); the zoo's model is the one for the new scene
SCENES = {("current", "old"): 0.2, ("candidate", "old"): 0.7, ("zoo", "new"): 0.8, ("current", "new"): 0.5}


def test_a_model_for_a_scene_the_edge_has_left_is_not_sent_when_it_loses_on_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, registered = _scene_change_while_training(tmp_path, monkeypatch, 6, SCENES | {("candidate", "new"): 0.4})
    assert registered is None and job.status == "done"
    assert job.metrics["map50_new_scene"] == 0.4 and job.metrics["map50_new_scene_latest"] == 0.8
    assert job.metrics["new_scene_frames"] == 6.0
    assert "left the scene" in job.error and "v2" in job.error


def test_a_model_for_a_scene_the_edge_has_left_is_sent_when_it_also_wins_on_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, registered = _scene_change_while_training(tmp_path, monkeypatch, 6, SCENES | {("candidate", "new"): 0.9})
    assert registered == ("candidate", 100.0), "chosen for the new scene: the zoo remembers it for that one"
    assert job.result_version == 3 and not job.error


def test_without_frames_of_the_new_scene_a_model_for_the_old_one_is_not_sent_over_the_zoos_pick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, registered = _scene_change_while_training(tmp_path, monkeypatch, 1, SCENES | {("candidate", "new"): 0.9})
    assert registered is None and "new_scene_frames" not in job.metrics
    assert "1 labelled frames of the new scene, too few to judge it on, and v2 was registered since" in job.error


def test_without_frames_of_the_new_scene_nor_a_model_sent_for_it_the_validated_model_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, registered = _scene_change_while_training(tmp_path, monkeypatch, 1, SCENES, zoo_sends=False)
    assert registered == ("candidate", 0.0), "the newest evidence is for it; chosen for the scene it trained on"
    assert job.result_version == 2 and not job.error and job.metrics["new_scene_frames_unjudged"] == 1.0


@pytest.mark.parametrize("stop", [True, False])
def test_a_job_stops_at_the_epoch_boundary_after_its_edge_leaves_the_scene(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: bool
) -> None:
    current = _model(2)
    store, registry = _edge(tmp_path, [current], samples=20)  # every frame of the scene from t=0
    by_epoch = {i: _model(10 + i) for i in (1, 2, 3, 4)}
    names = {current.encode()[1]: "current"} | {m.encode()[1]: f"epoch {i}" for i, m in by_epoch.items()}
    trained = []

    def fake_fine_tune(model, train, val, cfg, workdir, epochs=None, on_weights=None, **kw):
        for epoch, weights in by_epoch.items():  # ultralytics calls back after each epoch, and stops on a raise
            trained.append(epoch)
            if epoch == 3:  # the edge reports a new scene while epoch 3 trains
                store.set_meta(EDGE, scene_changed_at=100.0)
            on_weights(epoch, weights.state_dict())
        return FineTuneResult(by_epoch[4], 4, len(train))

    monkeypatch.setattr(worker_module, "fine_tune", fake_fine_tune)
    scores = {"current": 0.5} | {f"epoch {i}": 0.6 for i in by_epoch}
    monkeypatch.setattr(worker_module, "evaluate", lambda model, frames: scores[names[model.encode()[1]]])
    cfg = TrainingConfig(min_heldout=4, epochs=4, fallback_to_first=False, stop_on_scene_change=stop)
    job = TrainingWorker(store, registry, cfg, "w", workdir=tmp_path).run_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 1))

    if stop:  # the boundary after epoch 3 is the first to see the change: nothing trains after it
        assert trained == [1, 2, 3] and job.metrics["epochs"] == 3.0 and job.metrics["scene_left_at"] == 100.0
        assert job.metrics["image_epochs"] == 3 * (job.metrics["train_samples"] + job.metrics["replay_samples"])
    else:
        assert trained == [1, 2, 3, 4] and job.metrics["epochs"] == 4.0 and "scene_left_at" not in job.metrics
    # either way no frame of the new scene is in to judge it on, and nothing came for that scene
    # meanwhile: the model that beat the current one on its own scene is sent, chosen for that scene
    assert job.result_version == 2 and job.metrics["new_scene_frames_unjudged"] == 0.0
    assert registry.latest(EDGE).metrics["scene_start"] == 0.0


@pytest.mark.parametrize("keep", ["best", "last"])
def test_backtracking_undoes_each_epoch_that_lowers_the_held_out_score_and_halves_the_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: str
) -> None:
    current = _model(2)
    store, registry = _edge(tmp_path, [current], samples=20)
    by_epoch = {i: _model(10 + i) for i in (1, 2, 3, 4)}  # the weights each epoch ends with
    # a collapse at the first step, a climb from the weights it went back to, a dip, a small climb
    scores = {"current": 0.5, "epoch 1": 0.1, "epoch 2": 0.7, "epoch 3": 0.65, "epoch 4": 0.72}
    names = {current.encode()[1]: "current"} | {m.encode()[1]: f"epoch {i}" for i, m in by_epoch.items()}
    verdicts, scales = [], []

    def fake_fine_tune(model, train, val, cfg, workdir, epochs=None, on_weights=None, lr_scale=1.0, **kw):
        scales.append(lr_scale)
        verdicts.extend(on_weights(epoch, weights.state_dict()) for epoch, weights in by_epoch.items())
        return FineTuneResult(by_epoch[4], 4, len(train))

    monkeypatch.setattr(worker_module, "fine_tune", fake_fine_tune)
    monkeypatch.setattr(worker_module, "evaluate", lambda model, frames: scores[names[model.encode()[1]]])
    cfg = TrainingConfig(min_heldout=4, epochs=4, fallback_to_first=False, keep=keep, backtrack=True)
    worker = TrainingWorker(store, registry, cfg, "w", workdir=tmp_path)
    job = worker.run_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 1))

    assert verdicts == [False, True, False, True]  # 0.1 < 0.5 undone; 0.65 < 0.7 undone
    assert scales == [1.0]
    assert names[StudentModel.from_bytes(*registry.load(EDGE, job.result_version)).encode()[1]] == "epoch 4"
    assert [job.metrics[f"map50_epoch_{i}"] for i in (1, 2, 3, 4)] == [0.1, 0.7, 0.65, 0.72]  # as measured


def test_a_backtracked_job_that_ends_on_an_undone_epoch_keeps_the_weights_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = _model(2)
    store, registry = _edge(tmp_path, [current], samples=20)
    by_epoch = {1: _model(11), 2: _model(12)}
    scores = {"current": 0.5, "epoch 1": 0.6, "epoch 2": 0.3}
    names = {current.encode()[1]: "current"} | {m.encode()[1]: f"epoch {i}" for i, m in by_epoch.items()}

    def fake_fine_tune(model, train, val, cfg, workdir, epochs=None, on_weights=None, **kw):
        for epoch, weights in by_epoch.items():
            on_weights(epoch, weights.state_dict())
        return FineTuneResult(by_epoch[2], 2, len(train))  # ultralytics' last weights: the undone ones

    monkeypatch.setattr(worker_module, "fine_tune", fake_fine_tune)
    monkeypatch.setattr(worker_module, "evaluate", lambda model, frames: scores[names[model.encode()[1]]])
    cfg = TrainingConfig(min_heldout=4, epochs=2, fallback_to_first=False, keep="last", backtrack=True)
    job = TrainingWorker(store, registry, cfg, "w", workdir=tmp_path).run_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 1))

    assert names[StudentModel.from_bytes(*registry.load(EDGE, job.result_version)).encode()[1]] == "epoch 1"
    assert job.achieved_gain == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("epoch_hits", "judge", "registered", "optimism"),
    [
        # each epoch leads only by the one held-out frame it alone gets right: luck
        ([(0, 1, 2), (0, 1, 3), (0, 2, 3)], "heldout", "epoch 1", None),
        ([(0, 1, 2), (0, 1, 3), (0, 2, 3)], "cross-validated", None, 0.5),
        # epoch 1 leads on every subset of the frames: a real gain, sent either way
        ([(0, 1, 2), (0, 1), (0,)], "cross-validated", "epoch 1", 0.0),
    ],
)
def test_a_cross_validated_judge_refuses_an_epoch_that_led_only_by_luck(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    epoch_hits: list[tuple[int, ...]],
    judge: str,
    registered: str | None,
    optimism: float | None,
) -> None:
    current = _model(2)
    store, registry = _edge(tmp_path, [current], samples=20)  # 4 held out, one box each (see _edge)
    by_epoch = {i + 1: _model(10 + i) for i in range(len(epoch_hits))}
    names = {current.encode()[1]: "current"} | {m.encode()[1]: f"epoch {i}" for i, m in by_epoch.items()}
    hits = {"current": (0, 1)} | {f"epoch {i}": h for i, h in enumerate(epoch_hits, 1)}  # current: 0.5

    def fake_predictions(model, frames):
        found = hits[names[model.encode()[1]]]
        box = np.array([[5, 5, 30, 30, 0, 0.9]])
        return [box if i in found else np.zeros((0, 6)) for i in range(len(frames))]

    def fake_evaluate(model, frames):
        return map50(fake_predictions(model, frames), worker_module.ground_truth(frames), 2)

    def fake_fine_tune(model, train, val, cfg, workdir, epochs=None, on_weights=None, **kw):
        for epoch, weights in by_epoch.items():
            on_weights(epoch, weights.state_dict())
        return FineTuneResult(by_epoch[len(by_epoch)], len(by_epoch), len(train))

    monkeypatch.setattr(worker_module, "fine_tune", fake_fine_tune)
    monkeypatch.setattr(worker_module, "predictions", fake_predictions)
    monkeypatch.setattr(worker_module, "evaluate", fake_evaluate)
    cfg = TrainingConfig(min_heldout=4, epochs=3, fallback_to_first=False, judge=judge)
    job = TrainingWorker(store, registry, cfg, "w", workdir=tmp_path).run_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 1))

    assert job.metrics["heldout_samples"] == 4
    assert job.metrics["map50_trained"] == pytest.approx(0.75)  # epoch 1, the best on all four frames
    assert job.metrics.get("selection_optimism") == (None if optimism is None else pytest.approx(optimism))
    if registered is None:
        assert not job.result_version
        assert job.achieved_gain == pytest.approx(-0.25)  # 0.75 - 0.5 optimism, against 0.5
    else:
        assert names[StudentModel.from_bytes(*registry.load(EDGE, job.result_version)).encode()[1]] == registered
        assert job.achieved_gain == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("candidate_hits", "confidence", "registered"),
    [
        ((0, 1, 2, 3), 0.0, True),  # one frame more than the current model: the score alone decides
        ((0, 1, 2, 3), 0.9, False),  # ... lost on the (3/4)^4 of resamples without frame 3: wins ~84 %
        ((0, 1, 2, 3), 0.8, True),
        ((0, 1, 2), 0.9, False),  # the same as the current model on every resample: 50 %
    ],
)
def test_a_confident_judge_needs_a_lead_the_held_out_frames_agree_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, candidate_hits: tuple, confidence: float, registered: bool
) -> None:
    current, candidate = _model(2), _model(3)
    store, registry = _edge(tmp_path, [current], samples=20)  # 4 held out, one box each (see _edge)
    hits = {current.encode()[1]: (0, 1, 2), candidate.encode()[1]: candidate_hits}

    def fake_predictions(model, frames):
        box = np.array([[5, 5, 30, 30, 0, 0.9]])
        return [box if i in hits[model.encode()[1]] else np.zeros((0, 6)) for i in range(len(frames))]

    monkeypatch.setattr(worker_module, "predictions", fake_predictions)
    monkeypatch.setattr(
        worker_module, "evaluate", lambda m, f: map50(fake_predictions(m, f), worker_module.ground_truth(f), 2)
    )
    trained = FineTuneResult(candidate, 1, 16)
    monkeypatch.setattr(worker_module, "fine_tune", lambda model, train, val, cfg, workdir, **kw: trained)
    cfg = TrainingConfig(min_heldout=4, fallback_to_first=False, accept_confidence=confidence)
    job = TrainingWorker(store, registry, cfg, "w", workdir=tmp_path).run_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 1))

    assert job.metrics["heldout_samples"] == 4
    assert bool(job.result_version) == registered
    if confidence:
        expected = 0.5 if candidate_hits == (0, 1, 2) else 1 - 0.75**4 / 2
        assert job.metrics["win_rate"] == pytest.approx(expected, abs=0.04)
    else:
        assert "win_rate" not in job.metrics
    if not registered:
        assert "paired bootstrap resamples of its 4 held-out frames" in job.error


def test_an_interpolating_job_registers_the_model_half_way_from_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    current, tuned = _model(2), _model(3)
    store, registry = _edge(tmp_path, [current], samples=10)
    current_sha = current.encode()[1]
    trained = FineTuneResult(tuned, 1, 8)
    monkeypatch.setattr(worker_module, "fine_tune", lambda model, train, val, cfg, workdir, **kw: trained)
    monkeypatch.setattr(
        worker_module, "evaluate", lambda model, frames: 0.5 if model.encode()[1] == current_sha else 0.7
    )
    cfg = TrainingConfig(min_heldout=2, min_fresh=4, fallback_to_first=False, interpolate=0.5)
    job = TrainingWorker(store, registry, cfg, "w", workdir=tmp_path).run_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 1))
    registered = StudentModel.from_bytes(*registry.load(EDGE, job.result_version))
    as_stored = StudentModel.from_bytes(*registry.load(EDGE, 1))  # the weights the edge runs, as the registry has them
    assert registered.encode()[1] == as_stored.interpolated(tuned, 0.5).encode()[1] != tuned.encode()[1]
    assert job.metrics["map50_after"] == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("scores", "win_rate", "trained_in", "registered"),
    [
        ({"none": 0.2, "auto-levels": 0.5}, None, "auto-levels", "auto-levels"),  # the view alone is the update
        ({"none": 0.3, "auto-levels": 0.3}, None, "auto-levels", "auto-levels"),  # a tie: the preferred view
        # a lead the frames do not back: trained levelled, then judged against v2 as it is (and worse)
        ({"none": 0.4, "auto-levels": 0.3}, 0.6, "auto-levels", None),
        ({"none": 0.4, "auto-levels": 0.3}, 0.95, "none", None),  # a clear lead: v2 as it is, nothing to send
    ],
)
def test_a_job_trains_its_model_in_the_preferred_view_unless_another_clearly_scores_higher(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scores: dict,
    win_rate: float | None,
    trained_in: str,
    registered: str | None,
) -> None:
    store, registry = _edge(tmp_path, [_model(1), _model(2)], samples=10)
    started: list[str] = []
    bootstraps: list[tuple[str, str]] = []

    def fine_tune(start, train, val, cfg, workdir, **kw):
        started.append(start.preprocess)
        return FineTuneResult(start, 1, len(train))  # training changes no weight

    def paired(worker, job, model, other, held):
        bootstraps.append((model.preprocess, other.preprocess))
        return win_rate

    monkeypatch.setattr(worker_module, "fine_tune", fine_tune)
    monkeypatch.setattr(worker_module, "evaluate", lambda model, frames: scores[model.preprocess])
    monkeypatch.setattr(TrainingWorker, "_win_rate", paired)
    cfg = TrainingConfig(min_heldout=2, min_fresh=4, fallback_to_first=False)  # prefers auto levels
    job = TrainingWorker(store, registry, cfg, "w", workdir=tmp_path).run_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 2))
    assert started == [trained_in]
    assert bootstraps == ([("none", "auto-levels")] if win_rate is not None else [])
    assert job.metrics["map50_start_none"] == scores["none"]
    assert job.metrics["map50_start_auto-levels"] == scores["auto-levels"]
    assert job.metrics["preprocess_evaluations"] == 1.0 + 2 * len(bootstraps)
    assert job.metrics["preprocess_changed"] == float(trained_in != "none")
    if registered is None:
        assert not job.result_version
        assert ("nothing to send" in job.error) == (trained_in == "none")
    else:
        manifest = registry.manifest(EDGE, job.result_version)
        assert job.result_version == 3 and manifest.preprocess == registered
        assert manifest.sha256 == registry.manifest(EDGE, 2).sha256  # v2's weights, seeing frames levelled


def test_the_order_of_training_preprocess_is_the_preference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Listing frames as they come first makes auto levels the view that needs the clear lead."""
    store, registry = _edge(tmp_path, [_model(1), _model(2)], samples=10)
    monkeypatch.setattr(worker_module, "fine_tune", lambda start, train, *a, **kw: FineTuneResult(start, 1, len(train)))
    monkeypatch.setattr(
        worker_module, "evaluate", lambda model, frames: {"none": 0.2, "auto-levels": 0.5}[model.preprocess]
    )
    monkeypatch.setattr(TrainingWorker, "_win_rate", lambda *a: 0.7)
    cfg = TrainingConfig(min_heldout=2, min_fresh=4, preprocess=["none", "auto-levels"], fallback_to_first=False)
    job = TrainingWorker(store, registry, cfg, "w", workdir=tmp_path).run_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 2))
    assert job.metrics["preprocess_changed"] == 0.0 and "nothing to send" in job.error


def test_a_job_that_changes_view_interpolates_from_the_current_weights_in_that_view(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, registry = _edge(tmp_path, [_model(1), _model(2)], samples=10)
    monkeypatch.setattr(worker_module, "fine_tune", lambda start, train, *a, **kw: FineTuneResult(start, 1, len(train)))
    scores = {"none": 0.2, "auto-levels": 0.5}
    monkeypatch.setattr(worker_module, "evaluate", lambda model, frames: scores[model.preprocess])
    cfg = TrainingConfig(min_heldout=2, min_fresh=4, interpolate=0.5)
    job = TrainingWorker(store, registry, cfg, "w", workdir=tmp_path).run_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 2))
    assert job.status == "done" and registry.manifest(EDGE, job.result_version).preprocess == "auto-levels"


def test_a_job_with_one_view_scores_no_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, registry = _edge(tmp_path, [_model(1), _model(2)], samples=10)
    monkeypatch.setattr(worker_module, "fine_tune", lambda start, train, *a, **kw: FineTuneResult(start, 1, len(train)))
    seen: list[str] = []
    monkeypatch.setattr(worker_module, "evaluate", lambda model, frames: seen.append(model.preprocess) or 0.3)
    cfg = TrainingConfig(min_heldout=2, min_fresh=4, preprocess=["none"])
    job = TrainingWorker(store, registry, cfg, "w", workdir=tmp_path).run_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 2))
    assert set(seen) == {"none"} and "preprocess_evaluations" not in job.metrics


@pytest.mark.parametrize(
    ("first_scores", "registered"),
    [
        ({"none": 0.3, "auto-levels": 0.8}, ("first", "auto-levels")),  # the first model levelled beats both
        ({"none": 0.8, "auto-levels": 0.8}, ("first", "auto-levels")),  # a tie: the preferred view
        ({"none": 0.3, "auto-levels": 0.55}, ("candidate", "none")),  # levelled, still below the candidate
        ({"none": 0.9, "auto-levels": 0.7}, ("first", "auto-levels")),  # as first sent: not clearly better
    ],
)
def test_the_first_model_is_weighed_in_each_view(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first_scores: dict, registered: tuple[str, str]
) -> None:
    """Held-out frames that auto levels win back may be frames the first model knew once levelled:
    the fallback to it scores it in each view of training.preprocess, not only as it was first sent,
    and picks the view as a job does."""
    first, current, candidate = _model(1), _model(2), _model(3)
    store, registry = _edge(tmp_path, [first, current], samples=10)
    names = {m.encode()[1]: name for m, name in ((first, "first"), (current, "current"), (candidate, "candidate"))}
    scores = {("first", p): s for p, s in first_scores.items()}
    scores |= {("current", "none"): 0.5, ("current", "auto-levels"): 0.4, ("candidate", "none"): 0.6}
    monkeypatch.setattr(worker_module, "fine_tune", lambda *a, **kw: FineTuneResult(candidate, 1, 8))
    monkeypatch.setattr(worker_module, "evaluate", lambda m, frames: scores[(names[m.encode()[1]], m.preprocess)])
    monkeypatch.setattr(TrainingWorker, "_win_rate", lambda *a: 0.5)  # no view is clearly better than another
    cfg = TrainingConfig(min_heldout=2, min_fresh=4)  # prefers auto levels
    job = TrainingWorker(store, registry, cfg, "w", workdir=tmp_path).run_job(TrainingJob("job-1", EDGE, 1.0, 0.0, 2))
    manifest, data = registry.load(EDGE, job.result_version)
    assert job.result_version == 3
    assert (names[StudentModel.from_bytes(manifest, data).encode()[1]], manifest.preprocess) == registered
    assert (
        job.metrics["map50_first"] == first_scores["auto-levels"]
    )  # the view chosen for it: none is not clearly better
    assert job.metrics["map50_first_auto-levels"] == first_scores["auto-levels"]
    assert job.metrics["first_evaluations"] == 2.0 + 2 * (first_scores["none"] > first_scores["auto-levels"])
