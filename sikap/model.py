"""The sikap model: any ``AutoModel`` encoder plus a topic head and an actor-conditioned stance head.

Windows are encoded independently; window logits are aggregated per article (topics) and
per article x actor (stance). A record may carry only some labels: losses are masked.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sikap.aggregate import aggregate

IGNORE = -100
GENERIC_LOSS_WEIGHT = 0.5  # the generic actor slot's auxiliary loss, relative to the per-actor loss


class SikapModel(nn.Module):
    """Encoder + heads.

    Args:
        encoder: a transformers encoder (``AutoModel``) returning ``last_hidden_state``.
        n_topics: topic labels (0 = no topic task).
        n_actors, n_classes: stance actors and classes (0 = no stance task).
        topic_multi_label: sigmoid per topic (True) or softmax over topics (False).
        topic_agg, stance_agg: "max" or "mean" (already resolved from "auto").
        pooling: "mean" (masked mean of the last layer) or "cls".
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        n_topics: int,
        n_actors: int,
        n_classes: int,
        topic_multi_label: bool,
        topic_agg: str,
        stance_agg: str,
        pooling: str = "mean",
        stance_mode: str = "pair",
        stance_pooling: str = "mean",
        generic_actor: bool = False,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.n_topics, self.n_actors, self.n_classes = n_topics, n_actors, n_classes
        self.topic_multi_label = topic_multi_label
        self.topic_agg, self.stance_agg, self.pooling = topic_agg, stance_agg, pooling
        self.shared = stance_mode == "shared"
        # shared mode: one more stance slot, index n_actors, trained on every actor's items (an auxiliary
        # loss) so that actors added at classify time have a classifier; pair mode needs none (the actor
        # name is in the input)
        self.generic_actor = bool(generic_actor and n_actors and self.shared)
        slots = n_actors + int(self.generic_actor)
        self.dropout = nn.Dropout(dropout)
        self.topic_head = nn.Linear(hidden, n_topics) if n_topics else None
        self.stance_head = None
        if n_actors:
            # pair mode: the actor is in the input, one head serves all actors;
            # shared mode: [mention vector; window vector] -> one small classifier per actor
            self.stance_head = nn.Linear(2 * hidden, slots * n_classes) if self.shared else nn.Linear(hidden, n_classes)
        # shared mode, stance_pooling="attention": each stance item also pools its window with a query made of
        # a learned per-actor vector plus a projection of the mention vector. Both start at zero, so training
        # starts from plain mean pooling and learns where each actor's sentiment is (aspects without aliases).
        self.actor_query = self.query_proj = None
        if n_actors and self.shared and stance_pooling == "attention":
            self.actor_query = nn.Parameter(torch.zeros(slots, hidden))
            self.query_proj = nn.Linear(hidden, hidden)
            nn.init.zeros_(self.query_proj.weight)
            nn.init.zeros_(self.query_proj.bias)
        # loss weights: set by the trainer from training-label frequencies; not saved with the model
        self.register_buffer("topic_weight", torch.ones(max(n_topics, 1)), persistent=False)
        self.register_buffer("stance_weight", torch.ones(max(n_classes, 1)), persistent=False)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor):
        """(n, L) token ids -> last hidden states (n, L, hidden) and pooled window vectors (n, hidden)."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if getattr(self.encoder.config, "type_vocab_size", 0) > 1:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state  # (n, L, hidden)
        if self.pooling == "cls":
            return hidden, hidden[:, 0]
        return hidden, masked_mean(hidden, attention_mask)

    def pool(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        """(n, hidden) window vectors."""
        return self.encode(input_ids, attention_mask, token_type_ids)[1]

    def topic_item_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """(m, hidden) window vectors -> (m, n_topics)."""
        return self.topic_head(self.dropout(pooled))

    def stance_item_logits(self, hidden, pooled, win, actor, positions, attention_mask=None) -> torch.Tensor:
        """Stance logits (s, n_classes) for items = (window ``win``, ``actor``).

        ``positions`` (s, L) marks the actor's mention tokens in the window (shared mode only);
        ``attention_mask`` (n, L) of all windows is needed for attention pooling.
        """
        if not self.shared:
            return self.stance_head(self.dropout(pooled[win]))
        h = hidden[win]  # (s, L, hidden)
        mention = masked_mean(h, positions)  # (s, hidden)
        if self.actor_query is None:
            context = pooled[win]
        else:
            weights = self._attention_weights(h, mention, actor, attention_mask[win])  # (s, L)
            context = torch.einsum("sl,slh->sh", weights.to(h.dtype), h)
        vec = torch.cat([mention, context], dim=-1)  # (s, 2 * hidden)
        out = self.stance_head(self.dropout(vec)).view(vec.shape[0], -1, self.n_classes)
        return out[torch.arange(out.shape[0], device=out.device), actor]

    def _attention_weights(self, h, mention, actor, mask) -> torch.Tensor:
        """(s, L) softmax weights of attention pooling over the item windows ``h`` (s, L, hidden)."""
        query = self.actor_query[actor].to(h.dtype) + self.query_proj(mention)  # (s, hidden)
        scores = torch.einsum("slh,sh->sl", h, query).float() / h.shape[-1] ** 0.5
        scores = scores.masked_fill(~mask.bool(), torch.finfo(scores.dtype).min)
        return scores.softmax(-1)

    def topic_token_logits(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor | None:
        """Each token's share of its window's topic logits, (n, L, T), bias left out.

        With mean pooling and a linear head the window logit is exactly the sum of these shares
        plus the bias (used to find the passage behind a prediction); None for [CLS] pooling.
        """
        if self.pooling != "mean":
            return None
        return _token_shares(hidden, attention_mask, self.topic_head.weight)

    def stance_token_logits(self, hidden, win, actor, positions, attention_mask) -> torch.Tensor | None:
        """Each token's share of the stance item logits, (s, L, C), bias left out; None for [CLS] pooling.

        Pair mode: as for topics. Shared mode: the mention tokens share the mention half of the
        head, every token the context half by its pooling weight (1/n, or its attention weight).
        """
        if self.pooling != "mean":
            return None
        h, mask = hidden[win], attention_mask[win]  # (s, L, hidden), (s, L)
        if not self.shared:
            return _token_shares(h, mask, self.stance_head.weight)
        hid = h.shape[-1]
        w = self.stance_head.weight.view(-1, self.n_classes, 2 * hid)[actor].to(h.dtype)  # (s, C, 2 * hidden)
        pos = positions.to(h.dtype)
        on_mention = pos / pos.sum(1, keepdim=True).clamp(min=1.0)  # (s, L)
        if self.actor_query is None:
            weights = mask.to(h.dtype) / mask.sum(1, keepdim=True).clamp(min=1).to(h.dtype)
        else:
            weights = self._attention_weights(h, masked_mean(h, positions), actor, mask).to(h.dtype)
        mention = torch.einsum("slh,sch->slc", h, w[:, :, :hid]) * on_mention.unsqueeze(-1)
        context = torch.einsum("slh,sch->slc", h, w[:, :, hid:]) * weights.unsqueeze(-1)
        return mention + context  # (s, L, C)

    @property
    def generic_slot(self) -> int | None:
        """The stance slot for actors the model was not trained on (None: no such slot)."""
        if not self.shared:
            return 0  # pair mode: one head for all actors, the actor is part of the input
        return self.n_actors if self.generic_actor else None

    def forward(
        self,
        articles: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
        topic_win: torch.Tensor | None = None,
        topic_group: torch.Tensor | None = None,
        stance_win: torch.Tensor | None = None,
        stance_group: torch.Tensor | None = None,
        stance_actor: torch.Tensor | None = None,
        stance_positions: torch.Tensor | None = None,
        topic_labels: torch.Tensor | None = None,
        stance_labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Article-level logits and, given labels, the masked multi-task loss.

        ``articles`` is (B,) to carry the batch size. All windows of the batch are in
        ``input_ids`` (n, L); ``topic_win``/``topic_group`` say which window feeds which article's
        topics, ``stance_win``/``stance_group`` (= article * n_actors + actor) the same for stance.
        Labels: ``topic_labels`` (B, n_topics) multi-hot, rows of -100 when unlabeled;
        ``stance_labels`` (B, n_actors) class ids, -100 when unlabeled.
        """
        b = articles.shape[0]
        hidden, pooled = self.encode(input_ids, attention_mask, token_type_ids)
        out: dict[str, torch.Tensor] = {}
        loss = None
        if self.topic_head is not None:
            win = self.topic_item_logits(pooled[topic_win]).float()
            out["topic_logits"] = aggregate(win, topic_group, b, self.topic_agg)  # (B, T)
            if topic_labels is not None:
                loss = _add(loss, self.topic_loss(out["topic_logits"], topic_labels))
        if self.stance_head is not None:
            a, c = self.n_actors, self.n_classes
            present = torch.zeros(b * a, dtype=torch.bool, device=pooled.device)
            if stance_win is not None and stance_win.numel():
                items = self.stance_item_logits(
                    hidden, pooled, stance_win, stance_actor, stance_positions, attention_mask
                ).float()
                flat = aggregate(items, stance_group, b * a, self.stance_agg)
                present[stance_group] = True
            else:  # no actor mentioned anywhere in the batch
                flat = pooled.new_zeros((b * a, c), dtype=torch.float)
            out["stance_logits"] = flat.view(b, a, c)
            out["stance_mask"] = present.view(b, a)
            if stance_labels is not None:
                loss = _add(loss, self.stance_loss(flat, present, stance_labels.view(-1)))
                if self.generic_actor and self.training and stance_win is not None and stance_win.numel():
                    slot = torch.full_like(stance_actor, self.n_actors)
                    generic = self.stance_item_logits(
                        hidden, pooled, stance_win, slot, stance_positions, attention_mask
                    ).float()
                    flat_g = aggregate(generic, stance_group, b * a, self.stance_agg)
                    loss = loss + GENERIC_LOSS_WEIGHT * self.stance_loss(flat_g, present, stance_labels.view(-1))
                    out["generic_stance_logits"] = flat_g.view(b, a, c)  # (B, A, C); distillation trains it too
        if loss is not None:
            out = {"loss": loss, **out}
        return out

    def topic_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """BCE (multi-label, ``topic_weight`` as pos_weight) or CE (single-label); unlabeled rows masked."""
        labeled = labels[:, 0] != IGNORE  # (B,)
        if not labeled.any():
            return logits.sum() * 0.0
        logits, labels = logits[labeled], labels[labeled].float()
        if self.topic_multi_label:
            return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=self.topic_weight)
        return F.cross_entropy(logits, labels.argmax(-1), weight=self.topic_weight)

    def stance_loss(self, logits: torch.Tensor, present: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """CE over (article, actor) pairs that are labeled and mentioned; the rest is masked."""
        use = present & (labels != IGNORE)
        if not use.any():
            return logits.sum() * 0.0
        return F.cross_entropy(logits[use], labels[use], weight=self.stance_weight)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (n, L, hidden) over the positions where ``mask`` (n, L) is set -> (n, hidden)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def _token_shares(hidden: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(n, L, k): token t's term in ``weight @ masked_mean(hidden, mask)`` for a (k, hidden) weight."""
    m = mask.to(hidden.dtype)
    share = m / m.sum(1, keepdim=True).clamp(min=1.0)  # (n, L)
    return torch.einsum("nlh,kh->nlk", hidden, weight.to(hidden.dtype)) * share.unsqueeze(-1)


def _add(a: torch.Tensor | None, b: torch.Tensor) -> torch.Tensor:
    return b if a is None else a + b
