"""Seed ensembles: several models trained with the same config but different seeds, run as one model.

An ensemble model dir (``sikap ensemble``, :mod:`sikap.training.ensemble`) looks like any other:
``model.safetensors`` holds the first member (so tools that read one encoder, e.g. intermediate-task
transfer or ``distill``'s student initialization, take the first member), ``members/K/model.safetensors``
the others, and ``sikap.json`` lists them under ``ensemble``. :func:`load_members` turns the loaded
first member into an :class:`EnsembleModel`, which has the single model's interface, so the
Predictor, calibration, evidence, the Ray engine and distillation use it unchanged.

How members combine: each window's topic and stance logits are the mean of the members' logits for
that window, and articles aggregate them as a single model does. With mean aggregation (the default
for stance and single-label topics) this is exactly the mean of the members' article logits; with
max aggregation (multi-label topics) it is the max over windows of the members' mean. Token shares
(the evidence) are averaged likewise, which keeps them exact: shares are linear in the logits.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from sikap.model import SikapModel

MEMBERS_DIR = "members"
MIN_MEMBERS, MAX_MEMBERS = 2, 5


class EnsembleModel(nn.Module):
    """Members with the same heads, labels and backbone shape; outputs are the mean of their logits.

    ``encode`` concatenates the members' hidden states along the feature axis, (n, L, K * hidden), so
    that callers index windows (dim 0) exactly as with one model; the head methods split it again.
    """

    def __init__(self, members: list[SikapModel]):
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        self.members = nn.ModuleList(members)
        first = members[0]
        self.n_topics, self.n_actors, self.n_classes = first.n_topics, first.n_actors, first.n_classes
        self.topic_multi_label, self.shared, self.generic_actor = (
            first.topic_multi_label,
            first.shared,
            first.generic_actor,
        )
        self.topic_agg, self.stance_agg, self.pooling = first.topic_agg, first.stance_agg, first.pooling

    # what code written for one model reads: the first member's encoder (config, layers) and heads
    @property
    def encoder(self) -> nn.Module:
        return self.members[0].encoder

    @property
    def topic_head(self):
        return self.members[0].topic_head

    @property
    def stance_head(self):
        return self.members[0].stance_head

    @property
    def generic_slot(self) -> int | None:
        return self.members[0].generic_slot

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(..., K * hidden) -> K tensors (..., hidden), one per member."""
        return x.chunk(len(self.members), dim=-1)

    def encode(self, input_ids, attention_mask, token_type_ids):
        """(n, L) token ids -> hidden states (n, L, K * hidden) and pooled vectors (n, K * hidden)."""
        outs = [m.encode(input_ids, attention_mask, token_type_ids) for m in self.members]
        return torch.cat([h for h, _ in outs], -1), torch.cat([p for _, p in outs], -1)

    def pool(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        return self.encode(input_ids, attention_mask, token_type_ids)[1]

    def topic_item_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """(m, K * hidden) -> (m, n_topics), the members' mean."""
        return _mean(m.topic_item_logits(p) for m, p in zip(self.members, self._split(pooled), strict=True))

    def stance_item_logits(self, hidden, pooled, win, actor, positions, attention_mask=None) -> torch.Tensor:
        """Stance item logits (s, n_classes), the members' mean (arguments as for SikapModel)."""
        parts = zip(self.members, self._split(hidden), self._split(pooled), strict=True)
        return _mean(m.stance_item_logits(h, p, win, actor, positions, attention_mask) for m, h, p in parts)

    def topic_token_logits(self, hidden, attention_mask) -> torch.Tensor | None:
        """(n, L, T) token shares, the members' mean; None for [CLS] pooling."""
        if self.pooling != "mean":
            return None
        parts = zip(self.members, self._split(hidden), strict=True)
        return _mean(m.topic_token_logits(h, attention_mask) for m, h in parts)

    def stance_token_logits(self, hidden, win, actor, positions, attention_mask) -> torch.Tensor | None:
        """(s, L, C) token shares, the members' mean; None for [CLS] pooling."""
        if self.pooling != "mean":
            return None
        parts = zip(self.members, self._split(hidden), strict=True)
        return _mean(m.stance_token_logits(h, win, actor, positions, attention_mask) for m, h in parts)

    def topic_loss(self, logits, labels):
        return self.members[0].topic_loss(logits, labels)

    def stance_loss(self, logits, present, labels):
        return self.members[0].stance_loss(logits, present, labels)

    # the single model's article-level code (aggregation, masks, losses), over the averaged window logits
    forward = SikapModel.forward


def _mean(tensors) -> torch.Tensor:
    return torch.stack(list(tensors)).mean(0)


def member_models(model: nn.Module) -> list[SikapModel]:
    """The single models inside ``model``: its members, or the model itself."""
    return list(model.members) if isinstance(model, EnsembleModel) else [model]


def load_members(
    model_dir: Path, first: SikapModel, meta: dict, load_member: Callable[[Path], SikapModel]
) -> EnsembleModel:
    """The ensemble of ``first`` (from ``model.safetensors``) and the members listed in ``meta["ensemble"]``.

    ``load_member(weights_path)`` builds one member from a weights file (modeldir's loader).
    """
    from sikap.modelmeta import WEIGHTS_FILE, ModelDirError

    members = [first]
    for i, info in enumerate(meta["ensemble"]["members"][1:], start=1):
        rel = info.get("weights") or f"{MEMBERS_DIR}/{i}/{WEIGHTS_FILE}"
        path = model_dir / rel
        if not path.resolve().is_relative_to(model_dir.resolve()) or not path.is_file():
            raise ModelDirError(
                f"{model_dir}: ensemble member {i} weights {rel} are missing; copy the whole directory "
                "that `sikap ensemble` wrote"
            )
        members.append(load_member(path))
    return EnsembleModel(members).float().eval()
