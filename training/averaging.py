"""Checkpoint averaging: the mean of the weights at the end of the last N epochs.

Fine-tuning on a few hundred articles ends wherever the last mini-batches left it; which epoch's weights
are kept moves the scores by several points from seed to seed (BENCHMARKS.md). Averaging the end-of-epoch
weights over the last N epochs of the schedule (as in stochastic weight averaging and the checkpoint
averaging of machine translation) keeps the direction the run converged to and smooths out the last
steps' noise, at no cost at prediction time.

``train.average_last: N`` in the config turns it on (it needs ``train.select: last``: the average replaces
the last epoch's weights when training ends). Only trainable parameters are averaged; frozen ones (the
word embeddings of the demo config) are the same at every epoch.
"""

from __future__ import annotations

import math

import torch
from transformers import TrainerCallback


def averaging_epochs(num_train_epochs: float, average_last: int) -> set[int]:
    """The 1-based epoch numbers whose end-of-epoch weights are averaged.

    A fractional schedule (``epochs: 2.5``) ends inside epoch 3; that partial epoch counts as the last one.
    """
    total = math.ceil(num_train_epochs)
    n = max(0, min(average_last, total))
    return set(range(total - n + 1, total + 1))


class RunningAverage:
    """An in-place running mean of named float tensors, kept in fp32 on the CPU."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: dict[str, torch.Tensor] = {}

    def add(self, named: dict[str, torch.Tensor]) -> None:
        self.count += 1
        for name, value in named.items():
            v = value.detach().to("cpu", torch.float32)
            if name not in self.mean:
                self.mean[name] = v.clone()
            else:
                self.mean[name].add_(v - self.mean[name], alpha=1.0 / self.count)


def trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


class CheckpointAveraging(TrainerCallback):
    """Accumulate the weights at the end of the chosen epochs; load their mean when training ends."""

    def __init__(self, average_last: int, log=print) -> None:
        self.average_last = average_last
        self.avg = RunningAverage()
        self.epochs_seen: list[int] = []
        self.log = log

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        epoch = math.ceil(round(state.epoch or 0, 6))
        if model is not None and epoch in averaging_epochs(state.num_train_epochs, self.average_last):
            self.avg.add(trainable(model))
            self.epochs_seen.append(epoch)
        return control

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if model is None or self.avg.count < 2:
            return control
        with torch.no_grad():
            for name, p in trainable(model).items():
                p.copy_(self.avg.mean[name].to(p.device, p.dtype))
        self.log(f"checkpoint averaging: weights averaged over epochs {self.epochs_seen}")
        return control
