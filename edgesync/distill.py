"""Generative attention distillation (after Generative-based Knowledge Distillation, AAAI'24), for
detectors: the building blocks and the two losses.

The paper represents a network's feature semantics in two steps and distils both:

1. an attention module turns a feature map into a spatial attention map, and a conditional VAE
   whose prior mean is that attention map encodes and decodes the features;
2. *attention distillation* pulls the student's attention map to the teacher's (MSE, weight about
   0.1), and *generative distillation* trains the student's VAE so that its decoding matches the
   teacher VAE's decoding of the same input, in the teacher's channel space (1x1 adapters where
   the widths differ).

Here the features are a detector's neck outputs (P3-P5 for an ultralytics student); a
`LevelDistiller` handles one level, `FeatureDistiller` a list of them. Both losses are zero when
the student's features and modules equal the teacher's (tests/unit/test_distill.py). The
training worker uses them through cloud_trainer.distill_training; `NeckCapture` takes the neck
features of an ultralytics detector (student or teacher) with forward hooks.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


class SpatialAttention(nn.Module):
    """A (B, 1, H, W) attention map in [0, 1] from a (B, C, H, W) feature map: the channel mean of
    the squared activations (attention transfer, Zagoruyko & Komodakis 2017), divided by its
    largest value in each image.

    It has no parameters on purpose. A learned map on the teacher's side would have nothing to
    train it in attention-only mode (the distillation loss treats the teacher's map as a fixed
    target), so the student would be pulled towards a random convolution's output; and a learned
    map on the student's side could match the teacher by itself and leave the features as they
    were. Divided by its maximum, a map compares where two networks look, not how large their
    activations are, so a student and a teacher of different widths and scales can be compared.
    """

    eps = 1e-6

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        energy = features.pow(2).mean(dim=1, keepdim=True)
        return energy / (energy.amax(dim=(2, 3), keepdim=True) + self.eps)


class ConditionalVAE(nn.Module):
    """Encodes features to a latent map conditioned on the attention map; the prior's mean is the
    attention map itself (broadcast over the latent channels), with unit variance."""

    def __init__(self, channels: int, latent: int = 8) -> None:
        super().__init__()
        self.latent = latent
        self.encoder = nn.Conv2d(channels + 1, 2 * latent, kernel_size=1)
        self.decoder = nn.Sequential(
            nn.Conv2d(latent + 1, channels, kernel_size=1), nn.SiLU(), nn.Conv2d(channels, channels, kernel_size=1)
        )

    def encode(self, features: torch.Tensor, attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(torch.cat([features, attention], dim=1)).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)

    def decode(self, z: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z, attention], dim=1))

    def forward(
        self, features: torch.Tensor, attention: torch.Tensor, sample: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, KL to the attention-mean prior per element); the mean latent when not sampling."""
        mu, logvar = self.encode(features, attention)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        prior = attention.expand_as(mu)
        kl = 0.5 * (torch.exp(logvar) + (mu - prior) ** 2 - 1.0 - logvar)
        return self.decode(z, attention), kl.mean()


def attention_distillation_loss(student_attention: torch.Tensor, teacher_attention: torch.Tensor) -> torch.Tensor:
    """MSE between the maps, the student's resized to the teacher's grid if they differ."""
    if student_attention.shape[-2:] != teacher_attention.shape[-2:]:
        student_attention = F.interpolate(student_attention, size=teacher_attention.shape[-2:], mode="bilinear")
    return F.mse_loss(student_attention, teacher_attention.detach())


def generative_distillation_loss(student_decoding: torch.Tensor, teacher_decoding: torch.Tensor) -> torch.Tensor:
    """MSE between the two VAEs' decodings of the same input (both in the teacher's channels)."""
    if student_decoding.shape[-2:] != teacher_decoding.shape[-2:]:
        student_decoding = F.interpolate(student_decoding, size=teacher_decoding.shape[-2:], mode="bilinear")
    return F.mse_loss(student_decoding, teacher_decoding.detach())


class LevelDistiller(nn.Module):
    """One feature level: a 1x1 adapter to the teacher's width (identity when equal), the
    attention maps of both sides (parameter-free, SpatialAttention), the student's VAE and the
    teacher's (trained on the teacher's own features).

    The student's map is first resized to the teacher's grid (P3 at 40x40 against SSD's 19x19):
    the adapter and the VAEs then run on the smaller grid, which measured 4x cheaper
    (edgesync_bench/costs.py). The student's attention map is taken over its own channels, not
    the adapted ones (attention transfer): a free 1x1 adapter in front of it could match the
    teacher's map by itself and leave the student's features as they were.
    """

    def __init__(self, student_channels: int, teacher_channels: int, latent: int = 8) -> None:
        super().__init__()
        self.adapter: nn.Module = (
            nn.Identity()
            if student_channels == teacher_channels
            else nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False)
        )
        self.student_attention = SpatialAttention()
        self.teacher_attention = SpatialAttention()
        self.student_vae = ConditionalVAE(teacher_channels, latent)
        self.teacher_vae = ConditionalVAE(teacher_channels, latent)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, generative: bool = True) -> dict[str, torch.Tensor]:
        """The level's losses: attention (distillation), generative (distillation) and the teacher
        VAE's own ELBO terms (reconstruction + KL), which train the teacher's side."""
        teacher = teacher.detach()  # the teacher network itself is never trained
        if student.shape[-2:] != teacher.shape[-2:]:
            student = F.interpolate(student, size=teacher.shape[-2:], mode="bilinear", align_corners=False)
        a_s, a_t = self.student_attention(student), self.teacher_attention(teacher)
        losses = {"attention": attention_distillation_loss(a_s, a_t)}
        if generative:
            adapted = self.adapter(student)
            t_recon, t_kl = self.teacher_vae(teacher, a_t, sample=False)
            s_recon, _ = self.student_vae(adapted, a_s, sample=False)
            losses["generative"] = generative_distillation_loss(s_recon, t_recon)
            losses["teacher_elbo"] = F.mse_loss(t_recon, teacher) + t_kl
        return losses


class FeatureDistiller(nn.Module):
    """Distils several levels (e.g. P3, P4, P5): weighted sum of their losses."""

    def __init__(
        self,
        student_channels: list[int],
        teacher_channels: list[int],
        attention_weight: float = 0.1,
        generative_weight: float = 1.0,
        latent: int = 8,
    ) -> None:
        super().__init__()
        if len(student_channels) != len(teacher_channels):
            raise ValueError(
                f"student and teacher need the same number of levels, got {len(student_channels)} "
                f"and {len(teacher_channels)}"
            )
        self.levels = nn.ModuleList(
            LevelDistiller(s, t, latent) for s, t in zip(student_channels, teacher_channels, strict=True)
        )
        self.attention_weight = attention_weight
        self.generative_weight = generative_weight

    def forward(
        self, student: list[torch.Tensor], teacher: list[torch.Tensor], generative: bool = True
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(the total to add to the detection loss, each part for logging)."""
        parts: dict[str, torch.Tensor] = {}
        for level, s, t in zip(self.levels, student, teacher, strict=True):
            for name, value in level(s, t, generative).items():
                parts[name] = parts.get(name, 0.0) + value
        total = self.attention_weight * parts["attention"]
        if generative:
            total = total + self.generative_weight * parts["generative"] + parts["teacher_elbo"]
        return total, {k: float(v.detach()) for k, v in parts.items()}


class NeckCapture:
    """Forward hooks on the layers an ultralytics Detect head reads (its ``f`` indices: P3-P5 for a
    YOLO), keeping each layer's latest output; ``maps()`` returns them finest first.

    Hooks are removed by ``remove()``; the capture holds tensors of the last forward only.
    """

    def __init__(self, detector: nn.Module) -> None:
        layers = detector.model  # type: ignore[union-attr]
        self.indices = list(layers[-1].f)
        self._outputs: dict[int, torch.Tensor] = {}
        self._handles = [layers[j].register_forward_hook(self._hook(k)) for k, j in enumerate(self.indices)]

    def _hook(self, k: int):
        def store(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            self._outputs[k] = output

        return store

    def maps(self) -> list[torch.Tensor]:
        if len(self._outputs) != len(self.indices):
            raise RuntimeError("no forward pass captured yet")
        return [self._outputs[k] for k in range(len(self.indices))]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._outputs.clear()


def neck_features(detector: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The neck features of an ultralytics detector on (N, 3, H, W) RGB images in [0, 1], without
    gradients and in eval mode (batch-norm statistics untouched), finest first."""
    capture = NeckCapture(detector)
    was_training = detector.training
    detector.eval()
    try:
        with torch.no_grad():
            detector(images)
        return capture.maps()
    finally:
        capture.remove()
        detector.train(was_training)
