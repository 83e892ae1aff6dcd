"""Turn article text into model windows, identically for training and inference.

An article is tokenized once (no special tokens, with character offsets) and cut into
sliding windows. Topic windows are single sequences; stance windows are pairs
``actor [SEP] passage`` built only for passages that mention the actor through an alias.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from sikap.config import StanceMode
from sikap.text import char_range, find_mentions, spread_select, window_spans, windows_with_mentions

Window = tuple[list[int], list[int]]  # (input_ids, token_type_ids), special tokens included


@dataclass(frozen=True)
class SpecialTemplate:
    """Where a tokenizer puts its special tokens around one sequence or a pair.

    Transformers 5 tokenizers no longer expose ``build_inputs_with_special_tokens``, so the
    layout is probed once by encoding placeholder texts; this works for BERT
    (``[CLS] a [SEP] b [SEP]``) and RoBERTa/XLM-R (``<s> a </s></s> b </s>``) alike.
    """

    single: tuple[list[int], list[int]]  # (prefix, suffix)
    pair: tuple[list[int], list[int], list[int]]  # (prefix, middle, suffix)
    pair_types: tuple[int, int, int, int, int]  # type ids: prefix, a, middle, b, suffix

    @property
    def n_single(self) -> int:
        return len(self.single[0]) + len(self.single[1])

    @property
    def n_pair(self) -> int:
        return sum(len(p) for p in self.pair)

    def build_single(self, ids: list[int]) -> Window:
        pre, suf = self.single
        full = pre + ids + suf
        return full, [0] * len(full)

    def build_pair(self, a: list[int], b: list[int]) -> Window:
        pre, mid, suf = self.pair
        t = self.pair_types
        full = pre + a + mid + b + suf
        types = [t[0]] * len(pre) + [t[1]] * len(a) + [t[2]] * len(mid) + [t[3]] * len(b) + [t[4]] * len(suf)
        return full, types


def _find(seq: list[int], sub: list[int], start: int = 0) -> int:
    for i in range(start, len(seq) - len(sub) + 1):
        if seq[i : i + len(sub)] == sub:
            return i
    raise ValueError("placeholder tokens not found while probing the tokenizer's special tokens")


def probe_template(tokenizer) -> SpecialTemplate:
    """Discover the tokenizer's special-token layout for single sequences and pairs."""
    a_txt, b_txt = "alpha", "omega"
    a = tokenizer(a_txt, add_special_tokens=False)["input_ids"]
    b = tokenizer(b_txt, add_special_tokens=False)["input_ids"]
    one = tokenizer(a_txt)["input_ids"]
    i = _find(one, a)
    single = (one[:i], one[i + len(a) :])
    enc = tokenizer(a_txt, b_txt, return_token_type_ids=True)
    ids, types = enc["input_ids"], enc.get("token_type_ids") or [0] * len(enc["input_ids"])
    ia = _find(ids, a)
    ib = _find(ids, b, ia + len(a))
    pair = (ids[:ia], ids[ia + len(a) : ib], ids[ib + len(b) :])

    def type_at(pos: int, default: int) -> int:
        return types[pos] if 0 <= pos < len(types) else default

    pair_types = (
        type_at(0, 0),
        type_at(ia, 0),
        type_at(ia + len(a), 0),
        type_at(ib, 0),
        type_at(ib + len(b), type_at(ib, 0)),
    )
    return SpecialTemplate(single=single, pair=pair, pair_types=pair_types)


StanceItem = tuple[int, "list[int] | None"]  # (window index, mention token positions or None = whole window)


@dataclass
class ArticleFeatures:
    """Model inputs for one article.

    ``windows`` are encoded once each; the topic head reads the windows listed in ``topic``,
    the stance head reads, per mentioned actor, the items in ``stance`` (absent = not mentioned).
    """

    windows: list[Window] = field(default_factory=list)
    topic: list[int] = field(default_factory=list)
    stance: dict[int, list[StanceItem]] = field(default_factory=dict)
    n_tokens: int = 0
    char_spans: list[tuple[int, int]] = field(default_factory=list)  # per window: its text's character range
    # per window: (position of its first text token in input_ids, first article token, end article token)
    token_spans: list[tuple[int, int, int]] = field(default_factory=list)
    offsets: np.ndarray | None = None  # (n_tokens, 2) int32: each article token's characters [start, end)

    @property
    def topic_windows(self) -> list[Window]:
        return [self.windows[i] for i in self.topic]

    @property
    def stance_windows(self) -> dict[int, list[Window]]:
        return {k: [self.windows[w] for w, _ in items] for k, items in self.stance.items()}


class FeatureBuilder:
    """Cuts texts into windows for the topic head and the stance head.

    Args:
        tokenizer: a fast tokenizer (offsets are needed to locate alias mentions).
        actors: (name, aliases) per configured actor, in label order; empty for no stance task.
        with_topics: build topic windows.
        stance_mode: "pair" (actor-conditioned pair windows) or "shared" (the single-sequence
            windows are reused; stance pools the tokens of the actor's mentions, TD-BERT style).
    """

    def __init__(
        self,
        tokenizer,
        *,
        max_length: int,
        stride: int,
        max_chunks: int,
        actors: Sequence[tuple[str, Sequence[str]]] = (),
        with_topics: bool = True,
        stance_mode: str = StanceMode.PAIR,
    ):
        self.tokenizer = tokenizer
        self.template = probe_template(tokenizer)
        self.max_length, self.stride, self.max_chunks = max_length, stride, max_chunks
        self.actors = [(name, tuple(aliases)) for name, aliases in actors]
        self.with_topics = with_topics
        self.stance_mode = StanceMode(stance_mode)
        # a private copy of the Rust tokenizer without truncation/padding: whole articles are
        # tokenized once, windows are cut here (and no "sequence too long" warnings)
        self._backend = type(tokenizer.backend_tokenizer).from_str(tokenizer.backend_tokenizer.to_str())
        self._backend.no_truncation()
        self._backend.no_padding()
        self.actor_ids = [tokenizer(name, add_special_tokens=False)["input_ids"] for name, _ in self.actors]
        self.topic_size = max_length - self.template.n_single
        longest_actor = max((len(a) for a in self.actor_ids), default=0)
        # one passage geometry for all actors, so every actor sees the same windows
        self.stance_size = (
            self.topic_size if stance_mode == StanceMode.SHARED else max_length - self.template.n_pair - longest_actor
        )
        if self.topic_size <= stride or (self.actors and self.stance_size <= stride):
            raise ValueError(
                f"max_length {max_length} leaves no room for text after special tokens and actor names "
                f"(stride {stride}); raise model.max_length"
            )

    def encode(self, texts: Sequence[str]) -> list[ArticleFeatures]:
        """Features for a batch of texts (one tokenizer call, parallel in Rust)."""
        encs = self._backend.encode_batch(list(texts), add_special_tokens=False)
        return [self._article(text, e.ids, e.offsets) for text, e in zip(texts, encs, strict=True)]

    def _article(self, text: str, ids: list[int], offsets: list[tuple[int, int]]) -> ArticleFeatures:
        feats = ArticleFeatures(n_tokens=len(ids), offsets=np.asarray(offsets, dtype=np.int32).reshape(-1, 2))
        spans = window_spans(len(ids), self.topic_size, self.stride)
        single_at: dict[int, int] = {}  # span index -> window index (shared mode reuses windows)

        def single(i: int) -> int:
            if i not in single_at:
                single_at[i] = len(feats.windows)
                feats.windows.append(self.template.build_single(ids[spans[i][0] : spans[i][1]]))
                feats.char_spans.append(char_range(offsets, spans[i]))
                feats.token_spans.append((len(self.template.single[0]), *spans[i]))
            return single_at[i]

        if self.with_topics:
            feats.topic = [single(i) for i in spread_select(range(len(spans)), self.max_chunks)]
        if self.actors:
            sspans = (
                spans
                if self.stance_mode == StanceMode.SHARED
                else window_spans(len(ids), self.stance_size, self.stride)
            )
            ranges = [char_range(offsets, sp) for sp in sspans]
            for k, (_, aliases) in enumerate(self.actors):
                mentions = find_mentions(text, aliases)
                hits = windows_with_mentions(ranges, mentions) if mentions else []
                if not aliases and not hits:
                    hits = [0]  # alias-free actor on an empty text: still one window
                if not hits:
                    continue
                chosen = spread_select(hits, self.max_chunks)
                if self.stance_mode == StanceMode.SHARED:
                    feats.stance[k] = [
                        (single(i), None if not aliases else self._mention_positions(sspans[i], offsets, mentions))
                        for i in chosen
                    ]
                else:
                    feats.stance[k] = []
                    for i in chosen:
                        feats.stance[k].append((len(feats.windows), None))
                        feats.windows.append(
                            self.template.build_pair(self.actor_ids[k], ids[sspans[i][0] : sspans[i][1]])
                        )
                        feats.char_spans.append(ranges[i])
                        at = len(self.template.pair[0]) + len(self.actor_ids[k]) + len(self.template.pair[1])
                        feats.token_spans.append((at, *sspans[i]))
        return feats

    def _mention_positions(self, span, offsets, mentions) -> list[int]:
        """Positions (in the window's input_ids, special tokens counted) of tokens inside a mention."""
        start, end = span
        pre = len(self.template.single[0])
        return [
            pre + t - start
            for t in range(start, end)
            if any(ms < offsets[t][1] and me > offsets[t][0] for ms, me in mentions)
        ]


def pad_windows(windows: Sequence[Window], pad_id: int, multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """Right-pad windows to the longest one: input_ids, attention_mask, token_type_ids (n, L).

    ``multiple_of`` rounds L up, so a run sees few distinct shapes (oneDNN builds kernels per shape).
    """
    n = len(windows)
    width = max((len(w[0]) for w in windows), default=0)
    width = -(-width // multiple_of) * multiple_of
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    types = torch.zeros((n, width), dtype=torch.long)
    for i, (ids, tt) in enumerate(windows):
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention[i, : len(ids)] = 1
        types[i, : len(tt)] = torch.tensor(tt, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention, "token_type_ids": types}


@dataclass
class FlatIndex:
    """The windows of several articles in one list, and which items read which window.

    Topic items: window ``topic_win[i]`` feeds article ``topic_group[i]``. Stance items: window
    ``stance_win[i]`` feeds group ``article * n_actors + actor``; ``stance_pos[i]`` lists the
    mention tokens a shared-mode item pools (None = the whole window).
    """

    windows: list[Window] = field(default_factory=list)
    topic_win: list[int] = field(default_factory=list)
    topic_group: list[int] = field(default_factory=list)
    stance_win: list[int] = field(default_factory=list)
    stance_group: list[int] = field(default_factory=list)
    stance_actor: list[int] = field(default_factory=list)
    stance_pos: list[list[int] | None] = field(default_factory=list)


def index_features(feats: Sequence[ArticleFeatures], n_actors: int) -> FlatIndex:
    """Concatenate the windows of ``feats`` and renumber the items that read them."""
    ix = FlatIndex()
    for b, f in enumerate(feats):
        base = len(ix.windows)
        ix.windows += f.windows
        ix.topic_win += [base + i for i in f.topic]
        ix.topic_group += [b] * len(f.topic)
        for k, items in sorted(f.stance.items()):
            for w, pos in items:
                ix.stance_win.append(base + w)
                ix.stance_group.append(b * n_actors + k)
                ix.stance_actor.append(k)
                ix.stance_pos.append(pos)
    return ix


def position_mask(positions: Sequence[list[int] | None], attention_rows: torch.Tensor) -> torch.Tensor:
    """(s, L) bool: the tokens each stance item pools; None or empty = the item's whole window.

    ``attention_rows`` (s, L) is the attention mask of each item's window.
    """
    mask = torch.zeros(attention_rows.shape, dtype=torch.bool)
    for i, pos in enumerate(positions):
        if pos:
            mask[i, pos] = True
        else:
            mask[i] = attention_rows[i].bool()
    return mask


def flatten_features(feats: Sequence[ArticleFeatures], n_actors: int, pad_id: int) -> dict[str, torch.Tensor]:
    """All windows of several articles as one padded batch, with the indices the heads need (training)."""
    ix = index_features(feats, n_actors)
    batch = pad_windows(ix.windows, pad_id)
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    win = as_long(ix.stance_win)
    batch.update(
        topic_win=as_long(ix.topic_win),
        topic_group=as_long(ix.topic_group),
        stance_win=win,
        stance_group=as_long(ix.stance_group),
        stance_actor=as_long(ix.stance_actor),
        stance_positions=position_mask(ix.stance_pos, batch["attention_mask"][win]),
    )
    return batch
