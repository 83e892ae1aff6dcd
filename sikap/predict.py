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
from sikap.features import FeatureBuilder, index_features, pad_windows, position_mask
from sikap.model import SikapModel
from sikap.quantize import int8_targets, quantize_int8  # noqa: F401  (re-exported)


def cpu_supports_bf16() -> bool:
    """True where bf16 matmuls are native on this CPU (AVX512-BF16 or AMX) and torch may use them.

    A process restricted to AVX2 kernels (``ATEN_CPU_CAPABILITY=avx2``, as on an AVX2-only CPU) counts
    as without bf16, even on a CPU that has it: its bf16 would run on emulated kernels.
    """
    cpu = getattr(torch, "cpu", None)
    try:
        if not torch.backends.cpu.get_cpu_capability().upper().startswith("AVX512"):
            return False
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
    # the same probabilities before the head temperatures (sikap.calibration); evaluate reports both
    raw_topic_probs: np.ndarray | None = None
    raw_stance_probs: list[np.ndarray | None] | None = None
    topic_evidence: dict | None = None  # predicted topic -> sikap.evidence.Evidence (Predictor(evidence=True))
    stance_evidence: list | None = None  # per actor: Evidence, or None when not mentioned


@dataclass
class _Forward:
    """One forward pass over a group of articles: article logits and the item logits behind them."""

    topic: torch.Tensor | None  # (B, T)
    stance: torch.Tensor | None  # (B, A, C)
    mask: torch.Tensor  # (B, A) actor mentioned
    feats: list
    topic_items: torch.Tensor  # (m, T) per topic item (window), in index_features order
    stance_items: torch.Tensor  # (s, C) per stance item
    topic_tokens: list | None = None  # per topic item: (L_i, T) token shares of its logits, or None
    stance_tokens: list | None = None  # per stance item: (L_i, C)


class Predictor:
    """Runs a SikapModel over texts.

    Args:
        batch_size: windows per forward pass.
        precision: "fp32", "bf16", "int8" (dynamic quantization of the Linear layers, CPU only)
            or "auto" (bf16 where the CPU has it).
        convert: for bf16/int8, convert the model's weights in place (fastest; what classify does).
            False keeps the weights and uses bf16 autocast (used on the model being trained).
        sort_by_length: batch windows of similar length together (less padding); False keeps
            input order (for measuring what sorting buys).
        min_confidence: a stance, or a single-label topic, whose top (calibrated) probability is
            under it is labeled ``"uncertain"`` (probabilities kept); multi-label topics unaffected.
        evidence: attach to each prediction the window that drove each predicted topic and stance
            (sikap.evidence; from the logits already computed, no second pass).
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
        convert: bool = True,
        sort_by_length: bool = True,
        lexical=None,
        min_confidence: float | None = None,
        evidence: bool = False,
    ):
        from sikap.calibration import head_temperatures

        self.model, self.builder, self.meta = model, builder, meta
        self.temperature = head_temperatures(meta)  # per head, applied after the blend
        self.min_confidence = min_confidence
        self.evidence = evidence
        self.lexical = lexical  # sikap.lexical.LexicalModel blended in by meta["blend"], or None
        self.batch_size = batch_size
        self.sort_by_length = sort_by_length
        self.device = device
        self.precision = resolve_precision(precision, device)
        if convert and self.precision == "int8":
            # the layers the training-time precision check kept in fp32, if it needed to
            keep = ((meta.get("precision_check") or {}).get("int8") or {}).get("keep_fp32") or ()
            self.model = model = quantize_int8(model, keep_fp32=keep)
        elif convert and self.precision == "bf16":
            # bf16 weights: autocast alone re-casts every fp32 weight on every call, which
            # measured ~1.1x over fp32 here against ~1.5x for converted weights
            self.model = model = model.to(torch.bfloat16)
        self.pad_id = builder.tokenizer.pad_token_id or 0
        topics = meta.get("topics")
        self.topic_names = topics["names"] if topics else []
        self.multi_label = bool(topics and topics["multi_label"])
        th = topics.get("thresholds") if topics else None
        self.thresholds = np.array([th.get(n, 0.5) for n in self.topic_names]) if th else None
        stance = meta.get("stance")
        self.classes = stance["classes"] if stance else []
        self.actors = [a["name"] for a in stance["actors"]] if stance else []
        # actors added at classify time come after the trained ones and use the model's generic slot
        self.n_trained_actors = stance.get("n_trained_actors", len(self.actors)) if stance else 0
        if len(self.actors) > self.n_trained_actors and model.generic_slot is None:
            raise ValueError(
                "this model cannot score actors it was not trained on (shared stance mode without a generic "
                "actor slot; retrain with model.generic_actor: true)"
            )
        blend = meta.get("blend") or {}
        self.blend = {"topics": float(blend.get("topics", 1.0)), "stance": float(blend.get("stance", 1.0))}
        if lexical is None:
            self.blend = {"topics": 1.0, "stance": 1.0}

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def features(self, texts: Sequence[str]) -> list:
        """Tokenize and window texts (CPU work in Rust; can run in a thread beside the model)."""
        return self.builder.encode(texts)

    def logits(self, texts: Sequence[str], feats: list | None = None):
        """Raw article logits: topics (B, T), stance (B, A, C), stance mask (B, A), and the features."""
        out = self._forward(texts, feats)
        return out.topic, out.stance, out.mask, out.feats

    @torch.inference_mode()
    def _forward(self, texts: Sequence[str], feats: list | None = None) -> _Forward:
        """Article logits and the item (window) logits they were aggregated from."""
        feats = self.features(texts) if feats is None else feats
        n_act = len(self.actors)
        ix = index_features(feats, n_act)
        t_logits, s_logits, t_tok, s_tok = self._item_logits(ix)
        b, m = len(texts), self.model
        topic = stance = None
        mask = torch.zeros((b, n_act), dtype=torch.bool)
        if m.topic_head is not None:
            topic = aggregate(t_logits, torch.tensor(ix.topic_group, dtype=torch.long), b, m.topic_agg)
        if m.stance_head is not None:
            groups = torch.tensor(ix.stance_group, dtype=torch.long)
            stance = aggregate(s_logits, groups, b * n_act, m.stance_agg).view(b, n_act, -1)
            mask.view(-1)[groups] = True
        return _Forward(topic, stance, mask, feats, t_logits, s_logits, t_tok, s_tok)

    def _item_logits(self, ix) -> tuple[torch.Tensor, torch.Tensor, list | None, list | None]:
        """Topic (m, T) and stance (s, C) item logits; windows encoded once each, in length-sorted batches.

        With ``evidence``, also each item's per-token shares of its logits ((L_i, T) / (L_i, C) arrays,
        None for [CLS] pooling): a small matmul over hidden states the batch has anyway.
        """
        m = self.model
        t_out = torch.zeros((len(ix.topic_win), max(m.n_topics, 1)))
        s_out = torch.zeros((len(ix.stance_win), max(m.n_classes, 1)))
        t_tok = [None] * len(ix.topic_win) if self.evidence else None
        s_tok = [None] * len(ix.stance_win) if self.evidence else None
        t_by_win, s_by_win = _by_window(ix.topic_win), _by_window(ix.stance_win)
        order = list(range(len(ix.windows)))
        if self.sort_by_length:
            order.sort(key=lambda i: len(ix.windows[i][0]))
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            local = {g: j for j, g in enumerate(idx)}
            batch = pad_windows([ix.windows[i] for i in idx], self.pad_id)
            mask = batch["attention_mask"].to(self.device)
            with self.autocast():
                hidden, pooled = m.encode(
                    batch["input_ids"].to(self.device), mask, batch["token_type_ids"].to(self.device)
                )
                ti = [t for w in idx for t in t_by_win.get(w, ())]
                if ti:
                    sel = torch.tensor([local[ix.topic_win[t]] for t in ti], device=pooled.device)
                    t_out[ti] = m.topic_item_logits(pooled[sel]).float().cpu()
                    if t_tok is not None:
                        _keep_tokens(t_tok, ti, m.topic_token_logits(hidden[sel], mask[sel]), mask[sel])
                si = [t for w in idx for t in s_by_win.get(w, ())]
                if si:
                    win = torch.tensor([local[ix.stance_win[t]] for t in si])
                    pos = position_mask([ix.stance_pos[t] for t in si], batch["attention_mask"][win])
                    actor = torch.tensor([self._slot(ix.stance_actor[t]) for t in si])
                    args = (win.to(self.device), actor.to(self.device), pos.to(self.device), mask)
                    s_out[si] = m.stance_item_logits(hidden, pooled, *args).float().cpu()
                    if s_tok is not None:
                        _keep_tokens(s_tok, si, m.stance_token_logits(hidden, *args), mask[args[0]])
        return t_out, s_out, t_tok, s_tok

    def _slot(self, k: int) -> int:
        """The model's stance slot for actor ``k`` (added actors share the generic slot)."""
        return k if k < self.n_trained_actors else self.model.generic_slot

    def probabilities(self, texts: Sequence[str], feats: list | None = None, *, calibrated: bool = True):
        """Blended topic probs (B, T), stance probs (B, A, C), stance mask (B, A) and the features;
        ``calibrated``: with the head temperatures applied (what `classify` reports)."""
        topic, stance, mask, feats = self.logits(texts, feats)
        tprobs, sprobs = self._blend(texts, topic, stance)
        if calibrated:
            tprobs, sprobs = self.calibrate(tprobs, sprobs)
        return tprobs, sprobs, mask, feats

    def _blend(self, texts: Sequence[str], topic, stance):
        """Probabilities from article logits, blended with the lexical model's where configured."""
        from sikap.lexical import blend

        tprobs = self.topic_probs(topic) if topic is not None else None
        sprobs = torch.softmax(stance, -1).numpy() if stance is not None else None
        if self.lexical is not None and min(self.blend.values()) < 1.0:
            lex_t, lex_s = self.lexical.predict(list(texts), len(self.actors))
            if tprobs is not None and lex_t is not None:
                tprobs = blend(tprobs, lex_t, self.blend["topics"])
                if not self.multi_label:
                    tprobs = tprobs / tprobs.sum(-1, keepdims=True)
            if sprobs is not None:
                for k, lp in enumerate(lex_s):
                    if lp is not None:
                        sprobs[:, k] = blend(sprobs[:, k], lp, self.blend["stance"])
        return tprobs, sprobs

    def calibrate(self, tprobs: np.ndarray | None, sprobs: np.ndarray | None):
        """The head temperatures applied to blended topic (B, T) and stance (B, A, C) probabilities."""
        from sikap.calibration import apply_temperature

        if tprobs is not None:
            tprobs = apply_temperature(tprobs, self.temperature["topics"], multi_label=self.multi_label)
        if sprobs is not None:
            sprobs = apply_temperature(sprobs, self.temperature["stance"], multi_label=False)
        return tprobs, sprobs

    def predict(self, texts: Sequence[str], feats: list | None = None) -> list[ArticlePrediction]:
        """Probabilities and labels per article (``feats``: precomputed ``features(texts)``)."""
        if not texts:
            return []
        fwd = self._forward(texts, feats)
        raw_t, raw_s = self._blend(texts, fwd.topic, fwd.stance)
        tprobs, sprobs = self.calibrate(raw_t, raw_s)
        mask, feats = fwd.mask, fwd.feats
        out = []
        for b, f in enumerate(feats):
            tp = tprobs[b] if tprobs is not None else None
            sp = [sprobs[b, k] if mask[b, k] else None for k in range(len(self.actors))] if sprobs is not None else []
            raw_sp = [raw_s[b, k] if mask[b, k] else None for k in range(len(self.actors))] if raw_s is not None else []
            out.append(
                ArticlePrediction(
                    topic_probs=tp,
                    topics=self.decide_topics(tp) if tp is not None else [],
                    stance_probs=sp,
                    stances=[self.decide_stance(p) for p in sp],
                    n_tokens=f.n_tokens,
                    n_windows=len(f.windows),
                    raw_topic_probs=raw_t[b] if raw_t is not None else None,
                    raw_stance_probs=raw_sp,
                )
            )
        if self.evidence:
            self._add_evidence(texts, fwd, out)
        return out

    def decide_stance(self, probs: np.ndarray | None) -> str:
        """The most probable class, not_mentioned without probabilities, or uncertain under min_confidence."""
        from sikap.calibration import UNCERTAIN

        if probs is None:
            return NOT_MENTIONED
        if self.min_confidence is not None and float(np.max(probs)) < self.min_confidence:
            return UNCERTAIN
        return self.classes[int(np.argmax(probs))]

    def _add_evidence(self, texts: Sequence[str], fwd: _Forward, preds: list[ArticlePrediction]) -> None:
        """Attach the deciding window of each predicted topic and mentioned actor (sikap.evidence)."""
        from sikap.evidence import article_evidence

        m, t_at, s_at = self.model, 0, 0
        topic_index = {n: i for i, n in enumerate(self.topic_names)}
        class_index = {c: i for i, c in enumerate(self.classes)}
        aliases = [a for _, a in self.builder.actors]
        t_items, s_items = fwd.topic_items.numpy(), fwd.stance_items.numpy()
        for b, (text, f, p) in enumerate(zip(texts, fwd.feats, preds, strict=True)):
            mine, mine_tok = {}, {}
            for k, items in sorted(f.stance.items()):
                mine[k] = s_items[s_at : s_at + len(items)]
                mine_tok[k] = fwd.stance_tokens[s_at : s_at + len(items)]
                s_at += len(items)
            t_ev, s_ev = article_evidence(
                text,
                f,
                topic_items=t_items[t_at : t_at + len(f.topic)] if fwd.topic is not None else None,
                topic_tokens=fwd.topic_tokens[t_at : t_at + len(f.topic)],
                stance_tokens=mine_tok,
                topic_logits=fwd.topic[b].numpy() if fwd.topic is not None else None,
                topics=[topic_index[n] for n in p.topics if n in topic_index],  # not 'uncertain'
                topic_how=m.topic_agg,
                topic_exclusive=not self.multi_label,
                stance_items=mine,
                stance_logits=fwd.stance[b].numpy() if fwd.stance is not None else None,
                stances={k: class_index[lab] for k, lab in enumerate(p.stances) if lab in class_index},
                stance_how=m.stance_agg,
                aliases=aliases,
            )
            t_at += len(f.topic)
            p.topic_evidence = {self.topic_names[t]: e for t, e in t_ev.items()}
            p.stance_evidence = [s_ev.get(k) for k in range(len(self.actors))]

    def topic_probs(self, logits: torch.Tensor) -> np.ndarray:
        """Sigmoid for multi-label topics, softmax for single-label."""
        return (torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)).numpy()

    def decide_topics(self, probs: np.ndarray) -> list[str]:
        """Topics over their tuned thresholds (multi-label) or the most probable topic."""
        if not self.multi_label:
            if self.min_confidence is not None and float(np.max(probs)) < self.min_confidence:
                from sikap.calibration import UNCERTAIN

                return [UNCERTAIN]
            return [self.topic_names[int(np.argmax(probs))]]
        th = self.thresholds if self.thresholds is not None else 0.5
        return [n for n, p, t in zip(self.topic_names, probs, np.broadcast_to(th, probs.shape), strict=True) if p >= t]


def _keep_tokens(out: list, items: list[int], shares: torch.Tensor | None, mask: torch.Tensor) -> None:
    """Store each item's (L_i, k) token shares, cut to its window's length (padding dropped)."""
    if shares is None:
        return
    shares, lengths = shares.float().cpu().numpy(), mask.sum(1).tolist()
    for j, item in enumerate(items):
        out[item] = shares[j, : int(lengths[j])]


def _by_window(wins: Sequence[int]) -> dict[int, list[int]]:
    """window index -> the items that read it."""
    out: dict[int, list[int]] = {}
    for item, w in enumerate(wins):
        out.setdefault(w, []).append(item)
    return out
