"""Turn article text into model windows, identically for training and inference.

An article is tokenized once (no special tokens, with character offsets) and cut into
sliding windows. Topic windows are single sequences; stance windows are pairs
``actor [SEP] passage`` built only for passages that mention the actor through an alias.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

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


@dataclass
class ArticleFeatures:
    """Model inputs for one article."""

    topic_windows: list[Window] = field(default_factory=list)
    # actor index -> pair windows for the passages that mention it; absent = not mentioned
    stance_windows: dict[int, list[Window]] = field(default_factory=dict)
    n_tokens: int = 0


class FeatureBuilder:
    """Cuts texts into topic windows and actor-conditioned stance windows.

    Args:
        tokenizer: a fast tokenizer (offsets are needed to locate alias mentions).
        actors: (name, aliases) per configured actor, in label order; empty for no stance task.
        with_topics: build topic windows.
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
    ):
        self.tokenizer = tokenizer
        self.template = probe_template(tokenizer)
        self.max_length, self.stride, self.max_chunks = max_length, stride, max_chunks
        self.actors = [(name, tuple(aliases)) for name, aliases in actors]
        self.with_topics = with_topics
        # a private copy of the Rust tokenizer without truncation/padding: whole articles are
        # tokenized once, windows are cut here (and no "sequence too long" warnings)
        self._backend = type(tokenizer.backend_tokenizer).from_str(tokenizer.backend_tokenizer.to_str())
        self._backend.no_truncation()
        self._backend.no_padding()
        self.actor_ids = [tokenizer(name, add_special_tokens=False)["input_ids"] for name, _ in self.actors]
        self.topic_size = max_length - self.template.n_single
        longest_actor = max((len(a) for a in self.actor_ids), default=0)
        # one passage geometry for all actors, so every actor sees the same windows
        self.stance_size = max_length - self.template.n_pair - longest_actor
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
        feats = ArticleFeatures(n_tokens=len(ids))
        if self.with_topics:
            spans = window_spans(len(ids), self.topic_size, self.stride)
            spans = [spans[i] for i in spread_select(range(len(spans)), self.max_chunks)]
            feats.topic_windows = [self.template.build_single(ids[s:e]) for s, e in spans]
        if self.actors:
            spans = window_spans(len(ids), self.stance_size, self.stride)
            ranges = [char_range(offsets, sp) for sp in spans]
            for k, (_, aliases) in enumerate(self.actors):
                mentions = find_mentions(text, aliases)
                hits = windows_with_mentions(ranges, mentions) if mentions else []
                if not aliases and not hits:
                    hits = [0]  # alias-free actor on an empty text: still one window
                if hits:
                    chosen = spread_select(hits, self.max_chunks)
                    feats.stance_windows[k] = [
                        self.template.build_pair(self.actor_ids[k], ids[spans[i][0] : spans[i][1]])
                        for i in chosen
                    ]
        return feats


def pad_windows(windows: Sequence[Window], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad windows to the longest one: input_ids, attention_mask, token_type_ids (n, L)."""
    n = len(windows)
    width = max((len(w[0]) for w in windows), default=0)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    types = torch.zeros((n, width), dtype=torch.long)
    for i, (ids, tt) in enumerate(windows):
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention[i, : len(ids)] = 1
        types[i, : len(tt)] = torch.tensor(tt, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention, "token_type_ids": types}
