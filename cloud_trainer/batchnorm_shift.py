"""Batch-norm statistics that follow a fine-tune's optimizer steps.

A batch-norm layer normalises with the statistics of its batch while training and with running
averages of them at inference. ultralytics updates those averages with momentum 0.03 per batch,
which is right for training from scratch over thousands of batches and wrong for a fine-tune on
a few dozen frames: with 2-3 batches an epoch and one optimizer step every 64 images, the
running statistics trail the weights by several steps, and the weights after a step are scored
(and deployed) with statistics of the weights before it. Where a layer's running variance is
tiny, that mismatch is amplified: on dev's fog 0.7 (seed 2) a fine-tune's first step took the
student from 0.23 to 0.04 held-out mAP50, through one stem filter (running variance 0.002) that
it changed by 5.5 % of its norm; the step without that filter's share scored 0.65, and the
whole step with the statistics following it 0.75 (scripts/step_probe.py, BENCHMARKS.md session 21).

`StepShift` keeps the running statistics consistent with the weights: it records each
batch-norm layer's input statistics on the last training batch (forward pre-hooks, with the
weights before the step) and, after the step, runs that batch once more without gradients and
moves each layer's running mean by the change in the batch mean and scales its running variance
by the ratio of the batch variances. The running averages keep what they estimated about the
training data; only the part the step invalidated is replaced. One extra forward pass of one
batch per optimizer step. On by default (training.bn_follows_steps): it ends the collapse of a
fine-tune's first steps (BENCHMARKS.md, sessions 21 and 27).
"""

from __future__ import annotations

import torch
from torch import nn

from edgesync.student import batchnorm_layers


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (biased) variance of an NCHW or NC batch, as batch norm takes them."""
    dims = [0, *range(2, x.dim())]
    return x.mean(dims), x.var(dims, unbiased=False)


class StepShift:
    """Shift a model's (and its EMA's) batch-norm running statistics by what each optimizer step
    changed in the statistics of the last training batch; see the module docstring."""

    def __init__(self, model: nn.Module, ema: nn.Module | None = None) -> None:
        self.model = model
        self.norms = batchnorm_layers(model)
        self.ema_norms = batchnorm_layers(ema) if ema is not None else []
        if self.ema_norms and len(self.ema_norms) != len(self.norms):
            raise ValueError(f"the EMA has {len(self.ema_norms)} batch-norm layers, the model {len(self.norms)}")
        # each layer's input moments on the latest training-mode forward pass (forward pre-hooks)
        self.latest: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.images: torch.Tensor | None = None  # the last training batch, preprocessed
        self.forward_images = 0  # images the corrections ran forward (the benchmark charges them)
        self._hooks = [m.register_forward_pre_hook(self._record(i)) for i, m in enumerate(self.norms)]

    def _record(self, index: int):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            if module.training:
                self.latest[index] = _moments(inputs[0].detach())

        return hook

    def saw(self, images: torch.Tensor) -> None:
        """The training batch about to run forward (the statistics recorded next are its)."""
        self.images = images.detach()

    @torch.no_grad()
    def after_step(self, ema_decay: float = 0.0) -> None:
        """Correct the running statistics for the step just taken. ema_decay: the weight the EMA's
        update just gave its own old values (its buffers moved by 1 - ema_decay of the model's)."""
        if self.images is None or len(self.latest) != len(self.norms):
            return  # no training batch seen since set-up: nothing to compare with
        before, self.latest = self.latest, {}  # the batch's moments under the weights before the step
        momenta = [m.momentum for m in self.norms]
        tracked = [m.num_batches_tracked.clone() for m in self.norms]
        was_training = self.model.training
        try:
            for m in self.norms:
                m.momentum = 0.0  # normalise with the batch's statistics, as training does, but keep the running ones
            self.model.train()
            self.model(self.images)  # the hooks record its moments under the weights after the step
        finally:
            for m, momentum, count in zip(self.norms, momenta, tracked, strict=True):
                m.momentum = momentum
                m.num_batches_tracked.copy_(count)
            self.model.train(was_training)
        after = self.latest
        self.forward_images += len(self.images)
        share = 1.0 - ema_decay
        for i, m in enumerate(self.norms):
            (mean0, var0), (mean1, var1) = before[i], after[i]
            shift, ratio = mean1 - mean0, (var1 + m.eps) / (var0 + m.eps)
            added = m.running_var * (ratio - 1)
            m.running_mean += shift
            m.running_var += added
            if self.ema_norms:  # its update mixed in the model's statistics before they were corrected
                self.ema_norms[i].running_mean += share * shift
                self.ema_norms[i].running_var += share * added

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
