"""Article-level predictions from a model: windows of many articles batched by length.

All windows (topic windows and actor-conditioned stance windows) of a group of articles
are sorted by length and encoded in batches with dynamic padding, so short articles do
not pay for long ones; window logits are then aggregated per article exactly as in training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sikap.aggregate import aggregate
from sikap.config import NOT_MENTIONED
from sikap.features import FeatureBuilder, pad_windows
from sikap.model import SikapModel


def cpu_supports_bf16() -> bool:
    """True where bf16 matmuls are native on this CPU (AVX512-BF16 or AMX)."""
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """``auto`` -> bf16 where the hardware runs it natively, else fp32."""
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_supports_bf16() else "fp32"


@dataclass
class ArticlePrediction:
    topic_probs: np.ndarray | None  # (n_topics,)
    topics: list[str]
    stance_probs: list[np.ndarray | None]  # per actor (n_classes,) or None when not mentioned
    stances: list[str]  # per actor: a class or not_mentioned
    n_tokens: int = 0
    n_windows: int = 0


class Predictor:
    """Runs a SikapModel over texts.

    Args:
        batch_size: windows per forward pass.
        precision: "fp32", "bf16" (autocast) or "auto".
    """

    def __init__(
        self,
        model: SikapModel,
        builder: FeatureBuilder,
        meta: dict,
        *,
        batch_size: int = 16,
        precision: str = "auto",
        device: str = "cpu",
    ):
        self.model, self.builder, self.meta = model, builder, meta
        self.batch_size = batch_size
        self.device = device
        self.precision = resolve_precision(precision, device)
        self.pad_id = builder.tokenizer.pad_token_id or 0
        topics = meta.get("topics")
        self.topic_names = topics["names"] if topics else []
        self.multi_label = bool(topics and topics["multi_label"])
        th = topics.get("thresholds") if topics else None
        self.thresholds = np.array([th.get(n, 0.5) for n in self.topic_names]) if th else None
        stance = meta.get("stance")
        self.classes = stance["classes"] if stance else []
        self.actors = [a["name"] for a in stance["actors"]] if stance else []

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def logits(self, texts: Sequence[str]) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor, list]:
        """Raw article logits: topics (B, T), stance (B, A, C), stance mask (B, A), features."""
        feats = self.builder.encode(texts)
        # (kind, group, window): kind 0 = topic window of article b, 1 = stance window of b * A + actor
        items: list[tuple[int, int, tuple]] = []
        n_act = len(self.actors)
        for b, f in enumerate(feats):
            items += [(0, b, w) for w in f.topic_windows]
            for k, wins in f.stance_windows.items():
                items += [(1, b * n_act + k, w) for w in wins]
        vecs = self._encode_sorted([w for _, _, w in items])  # (n_items, hidden)
        kinds = torch.tensor([k for k, _, _ in items], dtype=torch.long)
        groups = torch.tensor([g for _, g, _ in items], dtype=torch.long)
        b = len(texts)
        topic = stance = None
        mask = torch.zeros((b, n_act), dtype=torch.bool)
        m = self.model
        if m.topic_head is not None:
            sel = kinds == 0
            topic = aggregate(m.topic_head(vecs[sel]).float(), groups[sel], b, m.topic_agg)
        if m.stance_head is not None:
            sel = kinds == 1
            flat = aggregate(m.stance_head(vecs[sel]).float(), groups[sel], b * n_act, m.stance_agg)
            stance = flat.view(b, n_act, -1)
            mask.view(-1)[groups[sel]] = True
        return topic, stance, mask, feats

    def _encode_sorted(self, windows: list[tuple]) -> torch.Tensor:
        """Pooled vectors for windows, computed in length-sorted batches, returned in input order."""
        hidden = self.model.encoder.config.hidden_size
        out = torch.zeros((len(windows), hidden))
        order = sorted(range(len(windows)), key=lambda i: len(windows[i][0]))
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            batch = {k: v.to(self.device) for k, v in pad_windows([windows[i] for i in idx], self.pad_id).items()}
            with self.autocast():
                vec = self.model.pool(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
            out[idx] = vec.float().cpu()
        return out

    def predict(self, texts: Sequence[str]) -> list[ArticlePrediction]:
        """Probabilities and labels per article."""
        if not texts:
            return []
        topic, stance, mask, feats = self.logits(texts)
        tprobs = self.topic_probs(topic) if topic is not None else None
        sprobs = torch.softmax(stance, -1).numpy() if stance is not None else None
        out = []
        for b, f in enumerate(feats):
            tp = tprobs[b] if tprobs is not None else None
            sp = [sprobs[b, k] if mask[b, k] else None for k in range(len(self.actors))] if sprobs is not None else []
            out.append(
                ArticlePrediction(
                    topic_probs=tp,
                    topics=self.decide_topics(tp) if tp is not None else [],
                    stance_probs=sp,
                    stances=[self.classes[int(np.argmax(p))] if p is not None else NOT_MENTIONED for p in sp],
                    n_tokens=f.n_tokens,
                    n_windows=len(f.topic_windows) + sum(len(w) for w in f.stance_windows.values()),
                )
            )
        return out

    def topic_probs(self, logits: torch.Tensor) -> np.ndarray:
        """Sigmoid for multi-label topics, softmax for single-label."""
        return (torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)).numpy()

    def decide_topics(self, probs: np.ndarray) -> list[str]:
        """Topics over their tuned thresholds (multi-label) or the most probable topic."""
        if not self.multi_label:
            return [self.topic_names[int(np.argmax(probs))]]
        th = self.thresholds if self.thresholds is not None else 0.5
        return [n for n, p, t in zip(self.topic_names, probs, np.broadcast_to(th, probs.shape), strict=True) if p >= t]
