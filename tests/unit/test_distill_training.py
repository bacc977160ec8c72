"""Distillation wired into fine-tuning: the term joins the loss, trains the student, and stays out of its weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import CLASSES, frames

from cloud_trainer.distill_training import DistillCriterion, TeacherFeatures, batch_to_frames
from cloud_trainer.training import fine_tune
from edgesync.config import DistillConfig, TrainingConfig
from edgesync.distill import FeatureDistiller, NeckCapture
from edgesync.errors import ConfigError
from edgesync.student import StudentModel
from edgesync.teachers import Teacher
from edgesync.types import Detection


class GridTeacher(Teacher):
    """A stand-in teacher whose "features" are the frame's pixels pooled to three grids (no weights)."""

    name = "grid"
    class_names = CLASSES

    def __init__(self) -> None:
        self.calls = 0

    def label(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        return [[] for _ in frames]

    def features(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        self.calls += 1
        x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
        maps = [torch.nn.functional.adaptive_avg_pool2d(x, size).repeat(1, 4, 1, 1) for size in (8, 4, 2)]
        return [m.numpy() for m in maps]


def cfg(mode: str, **distill) -> TrainingConfig:
    return TrainingConfig(imgsz=64, batch=4, epochs=2, distill=DistillConfig(mode=mode, **distill))


@pytest.mark.parametrize("mode", ["attention", "attention+generative"])
def test_a_distilled_student_keeps_exactly_the_students_keys_and_the_teacher_runs_every_batch(tmp_path, mode) -> None:
    torch.manual_seed(0)
    student = StudentModel.fresh(CLASSES, 64, "yolov8n.yaml")
    teacher = TeacherFeatures(GridTeacher())
    result = fine_tune(student, frames(8), frames(2, 1), cfg(mode), tmp_path, seed=0, teacher=teacher)
    trained = result.model.state_dict()
    assert list(trained) == list(student.state_dict())
    assert all(trained[k].shape == v.shape for k, v in student.state_dict().items())
    assert teacher.images == 2 * 8, "the teacher sees every training image of every epoch"
    StudentModel.from_state(trained, CLASSES, 64, "yolov8n.yaml")  # loads strictly, as registry and edges do
    changed = [k for k, v in student.state_dict().items() if v.is_floating_point() and not torch.equal(v, trained[k])]
    assert changed, "the student trained"


def test_distillation_on_without_a_teacher_is_refused(tmp_path) -> None:
    student = StudentModel.fresh(CLASSES, 64, "yolov8n.yaml")
    with pytest.raises(ValueError, match="distill"):
        fine_tune(student, frames(4), frames(1), cfg("attention"), tmp_path)


class _Detection:
    """ultralytics' criterion contract: (loss parts scaled by the batch size, detached parts by name)."""

    def __call__(self, preds, batch):
        loss = torch.stack([preds.sum(), preds.mean(), preds.abs().mean()])
        return loss * batch["img"].shape[0], {"box": loss[0].detach(), "cls": loss[1].detach(), "dfl": loss[2].detach()}


def _student_and_criterion(warmup_epochs: float = 0.0):
    from edgesync.student import build_detection_model

    torch.manual_seed(0)
    model = build_detection_model("yolov8n.yaml", len(CLASSES))
    model.train()
    capture = NeckCapture(model)
    distiller = FeatureDistiller([64, 128, 256], [12, 12, 12], attention_weight=0.1)  # yolov8n neck; GridTeacher
    teacher = TeacherFeatures(GridTeacher())
    criterion = DistillCriterion(
        _Detection(), distiller, capture, teacher, DistillConfig(mode="attention", warmup_epochs=warmup_epochs), 2
    )
    return model, capture, criterion, teacher


def test_the_distillation_term_is_added_to_the_loss_and_its_gradient_reaches_the_student() -> None:
    model, capture, criterion, _ = _student_and_criterion()
    images = torch.rand(2, 3, 64, 64)
    preds = model(images)
    head_only = _Detection()(preds["boxes"], {"img": images})[0]
    loss, items = criterion(preds["boxes"], {"img": images})
    assert loss.shape == (4,) and torch.allclose(loss[:3], head_only)
    assert float(items["distill"]) > 0 and float(loss[3].detach()) == pytest.approx(2 * float(items["distill"]))
    model.zero_grad()
    loss[3].backward()  # the distillation term alone
    backbone = model.model[0].conv.weight.grad
    assert backbone is not None and float(backbone.abs().sum()) > 0, "the term trains the student's backbone"
    # attention-only: the maps have no parameters, so nothing but the student can move towards the teacher
    assert all(p.grad is None for p in criterion.distiller.parameters())
    capture.remove()


def test_the_term_ramps_in_over_the_warmup_and_the_teacher_is_skipped_while_it_is_zero() -> None:
    model, capture, criterion, teacher = _student_and_criterion(warmup_epochs=1.0)  # 2 batches per epoch
    images = torch.rand(2, 3, 64, 64)
    weights = []
    for _ in range(4):
        weights.append(criterion.ramp())
        _, items = criterion(model(images)["boxes"], {"img": images})
    assert weights == [0.0, 0.5, 1.0, 1.0]
    assert teacher.images == 3 * 2, "no teacher pass while the weight is 0"
    capture.remove()


def test_batch_to_frames_gives_the_bgr_uint8_frames_ultralytics_started_from() -> None:
    rgb = np.zeros((2, 3, 8, 8), np.float32)
    rgb[:, 0] = 1.0  # red
    (frame, _) = batch_to_frames(torch.from_numpy(rgb))
    assert frame.dtype == np.uint8 and frame.shape == (8, 8, 3) and frame[0, 0].tolist() == [0, 0, 255]


def test_a_teacher_without_features_says_so() -> None:
    class Labels(Teacher):
        name, class_names = "labels-only", CLASSES

        def label(self, frames):
            return [[] for _ in frames]

    with pytest.raises(ConfigError, match="distill.mode must be off"):
        Labels().features([np.zeros((8, 8, 3), np.uint8)])


# ---------------------------------------------------------------- configuration


def test_distillation_is_off_by_default_and_read_from_the_training_section(tmp_path) -> None:
    from edgesync.config import load_cloud_config

    assert TrainingConfig().distill.mode == "off"
    path = tmp_path / "cloud.yaml"
    path.write_text("training:\n  distill:\n    mode: attention+generative\n    warmup_epochs: 1.5\n")
    distill = load_cloud_config(path).training.distill
    assert (distill.mode, distill.attention_weight, distill.warmup_epochs) == ("attention+generative", 0.1, 1.5)


@pytest.mark.parametrize(
    ("yaml", "key"),
    [
        ("mode: generative", "training.distill.mode"),
        ("attention_wieght: 0.2", "training.distill.attention_wieght"),
        ("generative_weight: -1", "training.distill.generative_weight"),
        ("warmup_epochs: -0.5", "training.distill.warmup_epochs"),
    ],
)
def test_a_bad_distill_setting_is_an_error_naming_the_key_and_file(tmp_path, yaml: str, key: str) -> None:
    from edgesync.config import load_cloud_config

    path = tmp_path / "cloud.yaml"
    path.write_text(f"training:\n  distill:\n    {yaml}\n")
    with pytest.raises(ConfigError) as err:
        load_cloud_config(path)
    assert key in str(err.value) and str(path) in str(err.value)


# ---------------------------------------------------------------- the worker


@pytest.mark.parametrize("mode", ["off", "attention"])
def test_the_worker_hands_the_teacher_to_fine_tuning_only_when_distillation_is_on(tmp_path, monkeypatch, mode) -> None:
    import cv2

    import cloud_trainer.worker as worker_module
    from cloud_trainer.registry import ModelRegistry
    from cloud_trainer.state import MemoryStore
    from cloud_trainer.training import FineTuneResult
    from cloud_trainer.worker import TrainingWorker
    from edgesync.types import EdgeInfo, StoredSample, TrainingJob

    store, registry = MemoryStore(), ModelRegistry(tmp_path / "registry")
    base = StudentModel.fresh(CLASSES, 64)
    data, _ = base.encode()
    registry.register("cam", data, base.manifest(data))
    store.upsert_edge(EdgeInfo(edge_id="cam", class_names=CLASSES))
    jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))[1].tobytes()
    for i in range(10):
        store.add_sample(StoredSample(f"s{i}", "cam", float(i), float(i), 2, 0.5, i, [], 64, 64), jpeg)
        store.set_labels("cam", f"s{i}", [Detection(5, 5, 30, 30, 0, 0.9)])
    calls = []

    def fake_fine_tune(start, train, val, cfg, workdir, **kw):
        calls.append(kw)
        if "teacher" in kw:
            kw["teacher"].images += 3 * len(train)  # as if the teacher ran on 3 epochs of images
        return FineTuneResult(start, 3, len(train))

    monkeypatch.setattr(worker_module, "fine_tune", fake_fine_tune)
    teacher = GridTeacher()
    cfg = TrainingConfig(min_heldout=2, min_fresh=4, epochs=3, distill=DistillConfig(mode=mode))
    worker = TrainingWorker(store, registry, cfg, "w", workdir=tmp_path, teacher=teacher)
    job = worker.run_job(TrainingJob("job-1", "cam", 1.0, 0.0, 1))
    (kw,) = calls
    if mode == "off":
        assert set(kw) == {"epochs", "seed", "on_weights", "lr_scale", "resumed"}, "no teacher without distillation"
        assert not any(k.startswith("distill") for k in job.metrics)
    else:
        assert isinstance(kw["teacher"], TeacherFeatures) and kw["teacher"].teacher is teacher
        assert job.metrics["distill_teacher_images"] == 3 * job.metrics["train_samples"]


def test_a_worker_with_distillation_on_and_no_teacher_is_refused_at_construction(tmp_path) -> None:
    from cloud_trainer.registry import ModelRegistry
    from cloud_trainer.state import MemoryStore
    from cloud_trainer.worker import TrainingWorker

    with pytest.raises(ValueError, match="needs a teacher"):
        TrainingWorker(MemoryStore(), ModelRegistry(tmp_path / "r"), cfg("attention"), "w")
