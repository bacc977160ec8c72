"""Generative attention distillation's parts: shapes, gradients, and zero loss when student equals teacher."""

from __future__ import annotations

import copy

import pytest
import torch

from edgesync.distill import (
    ConditionalVAE,
    FeatureDistiller,
    LevelDistiller,
    SpatialAttention,
    attention_distillation_loss,
    generative_distillation_loss,
)

# yolov8n's neck at 320 px: P3 64x40x40, P4 128x20x20, P5 256x10x10 (batch 2); a wider teacher
STUDENT = [(64, 40), (128, 20), (256, 10)]
TEACHER = [(128, 40), (256, 20), (512, 10)]


def features(spec: list[tuple[int, int]], seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, c, s, s, generator=g, requires_grad=True) for c, s in spec]


def test_attention_and_vae_keep_the_grid_and_channels() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 64, 40, 40)
    a = SpatialAttention()(x)
    assert a.shape == (2, 1, 40, 40) and 0 <= float(a.detach().min()) and float(a.detach().max()) <= 1
    recon, kl = ConditionalVAE(64, latent=8)(x, a)
    assert recon.shape == x.shape and kl.ndim == 0 and float(kl.detach()) >= 0


def test_every_loss_reaches_the_student_features_and_its_modules() -> None:
    torch.manual_seed(0)
    distiller = FeatureDistiller([c for c, _ in STUDENT], [c for c, _ in TEACHER])
    student, teacher = features(STUDENT, 1), features(TEACHER, 2)
    total, parts = distiller(student, teacher)
    assert set(parts) == {"attention", "generative", "teacher_elbo"} and float(total.detach()) > 0
    total.backward()
    assert all(s.grad is not None and float(s.grad.abs().sum()) > 0 for s in student)
    assert all(t.grad is None for t in teacher), "the teacher network is never trained"
    level = distiller.levels[0]
    for module in (level.adapter, level.student_vae, level.teacher_vae):
        assert any(p.grad is not None for p in module.parameters())


def test_attention_maps_have_no_parameters_and_pull_only_the_student() -> None:
    # the teacher's map is a fixed function of its features (nothing would train a learned one in
    # attention-only mode), so the attention term can move nothing but the student's features
    assert not list(SpatialAttention().parameters())
    student, teacher = features([(64, 20)], 1), features([(128, 20)], 2)
    total, _ = FeatureDistiller([64], [128])(student, teacher, generative=False)
    total.backward()
    assert float(student[0].grad.abs().sum()) > 0 and teacher[0].grad is None


def test_attention_compares_where_maps_look_not_their_scale() -> None:
    x = torch.randn(2, 64, 20, 20)
    attention = SpatialAttention()
    assert torch.allclose(attention(x), attention(7.0 * x), atol=1e-6)
    assert torch.allclose(attention(x).amax(dim=(2, 3)), torch.ones(2, 1), atol=1e-5)


def test_attention_only_skips_the_generative_passes() -> None:
    distiller = FeatureDistiller([64], [128])
    total, parts = distiller(features([(64, 20)], 1), features([(128, 20)], 2), generative=False)
    assert set(parts) == {"attention"} and float(total.detach()) == pytest.approx(0.1 * parts["attention"])


def test_each_loss_is_zero_when_the_student_equals_the_teacher() -> None:
    torch.manual_seed(0)
    level = LevelDistiller(64, 64)  # same width: the adapter is the identity
    level.student_vae = copy.deepcopy(level.teacher_vae)
    x = torch.randn(2, 64, 20, 20)
    losses = level(x.clone(), x.clone())
    assert float(losses["attention"].detach()) == pytest.approx(0.0, abs=1e-12)
    assert float(losses["generative"].detach()) == pytest.approx(0.0, abs=1e-12)
    a = torch.rand(2, 1, 10, 10)
    assert float(attention_distillation_loss(a, a.clone())) == 0.0
    assert float(generative_distillation_loss(x, x.clone())) == 0.0


def test_maps_on_different_grids_are_compared_on_the_teachers() -> None:
    a_s, a_t = torch.rand(1, 1, 20, 20), torch.rand(1, 1, 40, 40)
    assert attention_distillation_loss(a_s, a_t).ndim == 0


def test_level_counts_must_match() -> None:
    with pytest.raises(ValueError, match="same number of levels"):
        FeatureDistiller([64, 128], [128])
