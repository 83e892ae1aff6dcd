"""Windows for the model: special-token layout, topic coverage, actor-conditioned stance windows, padding."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch

from sikap.features import FeatureBuilder, pad_windows, probe_template
from sikap.modeldir import load_tokenizer

INDOBERT = Path(__file__).resolve().parents[2] / "shared/models/indobert-base-p1"
FILLER = "ini adalah berita tentang hari yang biasa di kota kami dengan banyak orang dan kegiatan".split()
ACTORS = [("NATO", ["NATO", "aliansi"]), ("Rusia", ["Rusia", "Moskow"]), ("Semua", [])]
MAX_LENGTH, STRIDE = 32, 8


@pytest.fixture(scope="module")
def tok(tiny_backbone):
    return load_tokenizer(tiny_backbone)


def filler(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(FILLER) for _ in range(n)]


def ids_of(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False, verbose=False)["input_ids"]


def hand_spans(n: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Sliding windows worked out independently: step size-stride, the last one flush with the end."""
    if n <= size:
        return [(0, n)]
    step = size - stride
    count = math.ceil((n - size) / step) + 1
    return [(i * step, i * step + size) for i in range(count - 1)] + [(n - size, n)]


def builder(tok, **kw) -> FeatureBuilder:
    args = {"max_length": MAX_LENGTH, "stride": STRIDE, "max_chunks": 100, "actors": ACTORS}
    args.update(kw)
    return FeatureBuilder(tok, **args)


def split_pair(tok, window) -> tuple[list[int], list[int]]:
    """(first segment, second segment) of a [CLS] a [SEP] b [SEP] window."""
    ids, _ = window
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    mid = ids.index(tok.sep_token_id)
    return ids[1:mid], ids[mid + 1 : -1]


def contains(seq: list[int], sub: list[int]) -> bool:
    return any(seq[i : i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


# ---------------------------------------------------------------- special-token template


def test_probe_template_tiny_bert(tok):
    t = probe_template(tok)
    cls, sep = tok.cls_token_id, tok.sep_token_id
    assert t.single == ([cls], [sep])
    assert t.pair == ([cls], [sep], [sep])
    assert t.pair_types == (0, 0, 0, 1, 1)
    assert (t.n_single, t.n_pair) == (2, 3)
    a, b = ids_of(tok, "media mendukung"), ids_of(tok, "nato")
    assert t.build_single(a) == ([cls, *a, sep], [0] * (len(a) + 2))
    assert t.build_pair(b, a) == ([cls, *b, sep, *a, sep], [0] * (len(b) + 2) + [1] * (len(a) + 1))


@pytest.mark.parametrize(("a", "b"), [("media mendukung nato", "kota kami"), ("rusia", "berita hari ini")])
def test_template_reproduces_the_tokenizer(tok, a, b):
    t = probe_template(tok)
    assert t.build_single(ids_of(tok, a))[0] == tok(a)["input_ids"]
    enc = tok(a, b, return_token_type_ids=True)
    assert t.build_pair(ids_of(tok, a), ids_of(tok, b)) == (enc["input_ids"], enc["token_type_ids"])


@pytest.mark.skipif(not INDOBERT.is_dir(), reason=f"{INDOBERT} not present")
def test_probe_template_real_indobert():
    tok = load_tokenizer(INDOBERT)
    t = probe_template(tok)
    cls, sep = tok.cls_token_id, tok.sep_token_id
    assert t.single == ([cls], [sep]) and t.pair == ([cls], [sep], [sep])
    assert t.pair_types == (0, 0, 0, 1, 1)
    expected = tok("JAKARTA", max_length=512, truncation=True)["input_ids"]
    assert t.build_single(ids_of(tok, "JAKARTA"))[0] == expected
    assert expected == tok("jakarta")["input_ids"]  # uncased
    actor, passage = "Presiden Jokowi", "Pemerintah Indonesia menolak usulan itu."
    enc = tok(actor, passage, return_token_type_ids=True)
    assert t.build_pair(ids_of(tok, actor), ids_of(tok, passage)) == (enc["input_ids"], enc["token_type_ids"])


# ---------------------------------------------------------------- topic windows


def test_topic_windows_cover_every_token(tok):
    text = " ".join(filler(300))
    ids = ids_of(tok, text)
    size = MAX_LENGTH - 2  # [CLS] ... [SEP]
    (feats,) = builder(tok, actors=()).encode([text])
    assert feats.n_tokens == len(ids)
    spans = hand_spans(len(ids), size, STRIDE)
    assert len(spans) > 5
    assert {i for s, e in spans for i in range(s, e)} == set(range(len(ids)))
    assert len(feats.topic_windows) == len(spans)
    for (wids, types), (s, e) in zip(feats.topic_windows, spans, strict=True):
        assert len(wids) == MAX_LENGTH
        assert wids == [tok.cls_token_id, *ids[s:e], tok.sep_token_id]
        assert types == [0] * MAX_LENGTH
    assert feats.stance_windows == {}


def test_short_and_empty_texts_give_one_topic_window(tok):
    short, empty = builder(tok, actors=()).encode(["kota kami", ""])
    assert short.topic_windows == [([tok.cls_token_id, *ids_of(tok, "kota kami"), tok.sep_token_id], [0] * 4)]
    assert empty.topic_windows == [([tok.cls_token_id, tok.sep_token_id], [0, 0])]
    assert empty.n_tokens == 0


def test_max_chunks_caps_topic_windows_keeping_both_ends(tok):
    text = " ".join(filler(300, seed=1))
    ids = ids_of(tok, text)
    spans = hand_spans(len(ids), MAX_LENGTH - 2, STRIDE)
    (feats,) = builder(tok, actors=(), max_chunks=3).encode([text])
    windows = [w for w, _ in feats.topic_windows]
    assert len(windows) == 3
    every = [[tok.cls_token_id, *ids[s:e], tok.sep_token_id] for s, e in spans]
    assert windows[0] == every[0] and windows[-1] == every[-1]
    assert windows[1] in every[1:-1]


def test_batch_keeps_order(tok):
    texts = ["kota kami", " ".join(filler(100)), "nato"]
    feats = builder(tok).encode(texts)
    assert [f.n_tokens for f in feats] == [len(ids_of(tok, t)) for t in texts]


def test_without_topics(tok):
    (feats,) = builder(tok, with_topics=False).encode(["nato kota"])
    assert feats.topic_windows == [] and 0 in feats.stance_windows


def test_max_length_too_small_raises(tok):
    with pytest.raises(ValueError, match="raise model.max_length"):
        FeatureBuilder(tok, max_length=10, stride=8, max_chunks=2)
    with pytest.raises(ValueError, match="raise model.max_length"):
        # room for topic text, but not for "se ##mu ##a" plus three specials
        FeatureBuilder(tok, max_length=14, stride=8, max_chunks=2, actors=ACTORS)


# ---------------------------------------------------------------- stance windows


def test_stance_windows_for_a_single_mention(tok):
    words = filler(200, seed=2)
    words[120] = "NATO"
    text = " ".join(words)
    ids = ids_of(tok, text)
    nato = ids_of(tok, "NATO")
    assert len(nato) == 1 and ids.count(nato[0]) == 1
    pos = ids.index(nato[0])
    fb = builder(tok)
    longest = max(len(ids_of(tok, name)) for name, _ in ACTORS)
    size = MAX_LENGTH - 3 - longest
    expected = [ids[s:e] for s, e in hand_spans(len(ids), size, STRIDE) if s <= pos < e]
    assert 1 <= len(expected) <= 2

    (feats,) = fb.encode([text])
    assert 1 not in feats.stance_windows, "Rusia is not mentioned: no windows at all"
    windows = feats.stance_windows[0]
    assert [split_pair(tok, w)[1] for w in windows] == expected
    for w in windows:
        first, passage = split_pair(tok, w)
        assert first == nato  # the actor's name is the first segment
        assert contains(passage, nato)
        assert len(w[0]) <= MAX_LENGTH
        assert w[1] == [0] * (len(first) + 2) + [1] * (len(passage) + 1)


def test_alias_other_than_the_name_selects_the_window(tok):
    text = " ".join(filler(150, seed=3) + ["aliansi"] + filler(50, seed=4))
    (feats,) = builder(tok).encode([text])
    windows = feats.stance_windows[0]
    assert windows
    aliansi = ids_of(tok, "aliansi")
    assert all(contains(split_pair(tok, w)[1], aliansi) for w in windows)
    assert all(split_pair(tok, w)[0] == ids_of(tok, "NATO") for w in windows)


def test_multiword_alias_across_a_line_break(tok):
    text = " ".join(filler(60, seed=5)) + " Amerika\nSerikat " + " ".join(filler(60, seed=6))
    fb = builder(tok, actors=[("AS", ["Amerika Serikat"]), ("Rusia", ["Rusia"])])
    (feats,) = fb.encode([text])
    assert set(feats.stance_windows) == {0}
    name = ids_of(tok, "amerika serikat")
    assert all(contains(split_pair(tok, w)[1], name) for w in feats.stance_windows[0])


def test_actor_without_aliases_is_present_everywhere(tok):
    texts = ["kota kami", " ".join(filler(250, seed=7)), ""]
    feats = builder(tok, max_chunks=3).encode(texts)
    semua = ids_of(tok, "Semua")
    for f in feats:
        assert 2 in f.stance_windows
        assert all(split_pair(tok, w)[0] == semua for w in f.stance_windows[2])
    assert len(feats[0].stance_windows[2]) == 1
    assert len(feats[1].stance_windows[2]) == 3  # every window qualifies, capped at max_chunks
    (empty_window,) = feats[2].stance_windows[2]
    assert empty_window[0] == [tok.cls_token_id, *semua, tok.sep_token_id, tok.sep_token_id]
    assert 0 not in feats[2].stance_windows and 0 not in feats[0].stance_windows


def test_max_chunks_caps_stance_windows_per_actor(tok):
    words = filler(300, seed=8)
    for i in range(5, 300, 12):
        words[i] = "Rusia"
    text = " ".join(words)
    ids = ids_of(tok, text)
    rusia = ids_of(tok, "Rusia")
    longest = max(len(ids_of(tok, name)) for name, _ in ACTORS)
    spans = hand_spans(len(ids), MAX_LENGTH - 3 - longest, STRIDE)
    hits = [ids[s:e] for s, e in spans if contains(ids[s:e], rusia)]
    assert len(hits) > 4
    (feats,) = builder(tok, max_chunks=4).encode([text])
    passages = [split_pair(tok, w)[1] for w in feats.stance_windows[1]]
    assert len(passages) == 4
    assert passages[0] == hits[0] and passages[-1] == hits[-1]
    assert all(p in hits for p in passages)
    assert len(feats.topic_windows) == 4


def test_shared_mode_reuses_topic_windows_and_points_at_the_mention(tok):
    words = filler(200, seed=9)
    words[120] = "NATO"
    text = " ".join(words)
    ids = ids_of(tok, text)
    (nato,) = ids_of(tok, "NATO")
    pos = ids.index(nato)
    spans = hand_spans(len(ids), MAX_LENGTH - 2, STRIDE)
    (feats,) = builder(tok, stance_mode="shared").encode([text])
    assert len(feats.windows) == len(feats.topic) == len(spans), "no extra pair windows in shared mode"
    assert 1 not in feats.stance
    items = feats.stance[0]
    assert len(items) == sum(s <= pos < e for s, e in spans)
    for w, positions in items:
        window_ids = feats.windows[w][0]
        assert window_ids[0] == tok.cls_token_id and window_ids.count(tok.sep_token_id) == 1
        assert positions and all(window_ids[p] == nato for p in positions)
    assert all(positions is None for _, positions in feats.stance[2])  # alias-free: the whole window


# ---------------------------------------------------------------- padding


def test_pad_windows_shapes_and_masks():
    windows = [([5, 6, 7], [0, 0, 0]), ([5, 8, 9, 10, 11], [0, 0, 0, 1, 1])]
    batch = pad_windows(windows, pad_id=99)
    assert {k: tuple(v.shape) for k, v in batch.items()} == {
        "input_ids": (2, 5), "attention_mask": (2, 5), "token_type_ids": (2, 5)
    }
    assert batch["input_ids"].tolist() == [[5, 6, 7, 99, 99], [5, 8, 9, 10, 11]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]]
    assert all(v.dtype == torch.long for v in batch.values())


def test_pad_windows_empty():
    batch = pad_windows([], pad_id=0)
    assert all(tuple(v.shape) == (0, 0) for v in batch.values())


def test_pad_real_windows(tok):
    feats = builder(tok).encode(["kota kami", " ".join(filler(100))])
    windows = feats[0].topic_windows + feats[1].topic_windows
    batch = pad_windows(windows, tok.pad_token_id)
    assert batch["input_ids"].shape == (len(windows), MAX_LENGTH)
    assert batch["attention_mask"].sum(dim=1).tolist() == [len(w) for w, _ in windows]
