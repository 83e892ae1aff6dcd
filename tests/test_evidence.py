"""Evidence passages: choosing the deciding window, cutting snippets, and what classify writes."""

from __future__ import annotations

import csv
import json
import random
import re

import numpy as np
import pytest
import yaml
from conftest import FILLER, write_jsonl
from typer.testing import CliRunner

from sikap.cli import app
from sikap.evidence import MAX_SNIPPET, best_item, contributions, make_evidence, snippet_span, word_scores
from sikap.text import article_text

runner = CliRunner()

# ---------------------------------------------------------------- choosing the window


def test_max_aggregation_picks_the_window_that_supplies_the_max():
    items = np.array([[1.0, 0.0], [3.0, 5.0], [2.0, -4.0]])
    article = items.max(0)
    assert best_item(items, article, 0, "max", exclusive=True) == 1
    assert best_item(items, article, 1, "max", exclusive=False) == 1


def test_mean_of_exclusive_classes_uses_the_margin_over_the_runner_up():
    # window 0 has the highest favor logit, but also a high neutral one: it argues less for favor
    items = np.array([[4.0, 0.0, 3.9], [2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])  # favor, against, neutral
    article = items.mean(0)
    assert int(np.argmax(article)) == 0
    np.testing.assert_allclose(contributions(items, article, 0, "mean", True), [0.1, 3.0, 0.0])
    assert best_item(items, article, 0, "mean", exclusive=True) == 1
    # the margins are exactly what the article's margin is the mean of
    runner_up = 2
    assert contributions(items, article, 0, "mean", True).mean() == pytest.approx(article[0] - article[runner_up])
    # independent (sigmoid) classes: the plain logit, the largest term of the mean
    assert best_item(items, article, 0, "mean", exclusive=False) == 0


def test_ties_go_to_the_earliest_window():
    items = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert best_item(items, items.mean(0), 0, "mean", exclusive=True) == 0


# ---------------------------------------------------------------- snippets


def long_text(seed: int = 0, n: int = 400) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(FILLER) for _ in range(n))


def is_word_boundary_span(text: str, s: int, e: int) -> bool:
    starts = s == 0 or text[s - 1].isspace()
    ends = e == len(text) or text[e].isspace()
    return starts and ends and not text[s].isspace() and not text[e - 1].isspace()


def test_snippet_is_short_whole_words_and_holds_the_alias():
    text = long_text() + " para pejabat memuji Pakta Pertahanan Atlantik, katanya. " + long_text(1)
    window = (10, len(text) - 10)
    ev = make_evidence(text, window, ["Pakta Pertahanan Atlantik", "NATO"])
    assert len(ev.text) <= MAX_SNIPPET
    assert "Pakta Pertahanan Atlantik" in ev.text and "memuji" in ev.text
    assert (ev.start, ev.end) == window  # the offsets are the window's
    s = text.find(ev.text)  # single spaces here, so the snippet is verbatim text
    assert s >= ev.start and is_word_boundary_span(text, s, s + len(ev.text))


@pytest.mark.parametrize("seed", range(20))
def test_snippet_spans_stay_in_bounds(seed):
    rng = random.Random(seed)
    words = [rng.choice(FILLER + ["NATO", "x" * rng.randint(1, 40)]) for _ in range(rng.randint(1, 200))]
    text = (" " if rng.random() < 0.5 else "\n").join(words)
    ws = rng.randint(0, len(text) - 1)
    we = rng.randint(ws + 1, len(text))
    focus = None
    hits = [m.span() for m in re.finditer("NATO", text) if m.start() < we and m.end() > ws]
    if hits and rng.random() < 0.7:
        focus = rng.choice(hits)
    s, e = snippet_span(text, (ws, we), focus, max_chars=120)
    assert e - s <= 120 and 0 <= s <= e <= len(text)
    if focus:
        assert s <= focus[0] and focus[1] <= e  # the alias is whole in the snippet
    whole = [m.span() for m in re.finditer(r"\S+", text) if m.start() >= ws and m.end() <= we]
    if e > s and (focus or any(b - a <= 120 for a, b in whole)):
        assert is_word_boundary_span(text, s, e)
        if not focus:
            assert ws <= s and e <= we


def test_window_edges_inside_words_drop_those_words():
    text = "alpha bravo charlie delta echo"
    assert snippet_span(text, (2, 22)) == (6, 19)  # "pha" and "de" are cut words: "bravo charlie"
    assert snippet_span(text, (0, len(text)), None, max_chars=11) == (0, 11)  # "alpha bravo"


def test_a_mention_across_the_window_edge_is_kept_whole():
    text = "kata kata Amerika Serikat kata"
    ws, we = 0, text.index("Serikat")
    ev = make_evidence(text, (ws, we), ["Amerika Serikat"])
    assert "Amerika Serikat" in ev.text
    assert ev.end >= text.index("Serikat") + len("Serikat")


def test_token_scores_place_the_snippet_on_the_best_run_of_words():
    words = [f"w{i:03d}" for i in range(200)]  # 4 characters + a space each
    text = " ".join(words)
    starts = np.array([text.index(w) for w in words])
    scores = np.zeros(len(words))
    scores[120:130] = 1.0  # the passage that matters, far from the window start
    scores[10] = 3.0  # a single strong word elsewhere, weaker than the run in total
    s, e = snippet_span(text, (0, len(text)), None, max_chars=60, token_scores=(starts, scores))
    assert e - s <= 60 and is_word_boundary_span(text, s, e)
    inside = [i for i, w in enumerate(words) if s <= starts[i] < e]
    assert set(range(120, 130)) <= set(inside) and 10 not in inside
    # without scores: from the window start
    assert snippet_span(text, (0, len(text)), None, max_chars=60)[0] == 0


def test_token_scores_choose_among_several_mentions_of_the_actor():
    text = "NATO " + " ".join(["kata"] * 80) + " pejabat memuji NATO hari ini " + " ".join(["kata"] * 80)
    tokens = [m.span() for m in re.finditer(r"\S+", text)]
    starts = np.array([a for a, _ in tokens])
    scores = np.array([2.0 if text[a:b] == "memuji" else 0.0 for a, b in tokens])
    ev = make_evidence(text, (0, len(text)), ["NATO"], max_chars=100, token_scores=(starts, scores))
    assert "memuji NATO" in ev.text and len(ev.text) <= 100
    assert make_evidence(text, (0, len(text)), ["NATO"], max_chars=100).text.startswith("NATO kata")  # first


def test_word_scores_add_up_the_tokens_of_each_word():
    # text "ab cd, ef"
    words = [(0, 2), (3, 6), (7, 9)]
    tok_starts = np.array([0, 1, 3, 5, 7])  # "a" "##b" "cd" "," "ef"
    np.testing.assert_allclose(word_scores(words, (tok_starts, [1, 2, 3, 4, 5])), [3, 7, 5])


@pytest.mark.parametrize("mode", ["pair", "shared-mean", "shared-attention"])
def test_token_shares_add_up_to_the_item_logits(mode):
    """Exact decomposition: the token shares plus the head's bias are the item logits."""
    from types import SimpleNamespace

    import torch

    from sikap.model import SikapModel, masked_mean

    encoder = torch.nn.Module()
    encoder.config = SimpleNamespace(hidden_size=8, type_vocab_size=1)
    torch.manual_seed(0)
    shared, pooling = mode != "pair", mode.split("-")[-1]
    model = SikapModel(
        encoder,
        n_topics=4,
        n_actors=3,
        n_classes=3,
        topic_multi_label=True,
        topic_agg="max",
        stance_agg="mean",
        stance_mode="shared" if shared else "pair",
        stance_pooling="attention" if pooling == "attention" else "mean",
    ).eval()
    if model.actor_query is not None:
        with torch.no_grad():
            model.actor_query.normal_(std=2.0)
            model.query_proj.weight.normal_(std=0.5)
    hidden = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    pooled = masked_mean(hidden, mask)
    win, actor = torch.tensor([0, 1, 1]), torch.tensor([0, 1, 2])
    positions = torch.tensor([[0, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0, 0, 1, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        topic = model.topic_item_logits(pooled)
        shares = model.topic_token_logits(hidden, mask)
        torch.testing.assert_close(shares.sum(1) + model.topic_head.bias, topic)
        assert (shares[1, 3:] == 0).all()  # padding has no share
        stance = model.stance_item_logits(hidden, pooled, win, actor, positions, mask)
        shares = model.stance_token_logits(hidden, win, actor, positions, mask)
        bias = model.stance_head.bias.view(-1, 3)[actor] if shared else model.stance_head.bias
        torch.testing.assert_close(shares.sum(1) + bias, stance)


def test_empty_window_gives_an_empty_snippet():
    assert make_evidence("", (0, 0)).text == ""
    assert make_evidence("abc", (0, 0), ["NATO"]).text == ""


# ---------------------------------------------------------------- a model trained for it

PRAISE = ["memuji", "mendukung", "menyambut", "menghargai"]
PASSING = ["melaporkan", "mencatat", "menyebut"]
CRITICISM = ["mengecam", "menolak", "mengkritik"]


def para(rng: random.Random, n: int, sentence: str, middle: bool = False) -> str:
    words = [rng.choice(FILLER) for _ in range(n)]
    at = n // 2 if middle else rng.randint(0, n)
    return " ".join(words[:at] + sentence.split() + words[at:])


def praise(rng, n=40, middle=False):
    return para(rng, n, f"para pejabat {rng.choice(PRAISE)} NATO dan {rng.choice(PRAISE)} langkahnya", middle)


def passing(rng, n=40, middle=False):
    return para(rng, n, f"media {rng.choice(PASSING)} NATO kemarin", middle)


def criticism(rng, n=60):
    return para(rng, n, f"para pejabat {rng.choice(CRITICISM)} NATO dan {rng.choice(CRITICISM)} langkahnya")


def stance_records(n: int, seed: int) -> list[dict]:
    """Praise words mark favor, criticism against; half the articles also name NATO in passing in
    another paragraph (a mention that carries no stance of its own)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = "favor" if i % 2 else "against"
        paras = [praise(rng, 60) if label == "favor" else criticism(rng)]
        if i % 4 >= 2:
            paras.append(passing(rng, 60))
            rng.shuffle(paras)
        topic = "ekonomi" if i % 3 else "olahraga"
        words = ["inflasi", "rupiah"] if topic == "ekonomi" else ["gol", "bola"]
        paras.append(" ".join(rng.choice(words) for _ in range(4)))
        out.append(
            {
                "id": f"s{i}",
                "title": f"judul {i}",
                "text": "\n\n".join(paras),
                "topics": [topic],
                "stances": {"NATO": label},
            }
        )
    return out


@pytest.fixture(scope="module")
def stance_model(tiny_backbone, tmp_path_factory):
    root = tmp_path_factory.mktemp("evidence")
    write_jsonl(root / "train.jsonl", stance_records(160, seed=1))
    cfg = {
        "model": {
            "backbone": str(tiny_backbone),
            "max_length": 48,
            "stride": 8,
            "max_chunks": 8,
            "stance_mode": "pair",
        },
        "labels": {
            "topics": {"multi_label": False, "names": ["ekonomi", "olahraga"]},
            "stance": {"actors": [{"name": "NATO", "aliases": ["NATO"]}]},
        },
        "data": {"train": str(root / "train.jsonl")},
        "train": {
            "epochs": 10,
            "batch_size": 8,
            "learning_rate": 3e-3,
            "seed": 3,
            "patience": 0,
            "precision": "fp32",
            "lexical": False,
        },
        "output_dir": str(root / "run"),
    }
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    res = runner.invoke(app, ["train", str(root / "cfg.yaml"), "--no-progress"])
    assert res.exit_code == 0, res.output
    return root / "run"


def mixed_articles(folder, n: int = 4):
    """Articles with one praising and one passing paragraph, the praise first in some, last in others.

    Returns id -> (text the model reads, offset of the praised NATO, offset of the passing NATO); the
    two mentions are 60 words apart, more than a window (40 tokens), so no window holds both.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(99)
    expected = {}
    for i in range(n):
        p, q = praise(rng, 60, True), passing(rng, 60, True)
        body = "\n\n".join([p, q] if i % 2 else [q, p])
        title = f"berita {i}"
        (folder / f"m{i}.txt").write_text(f"{title}\n{body}", encoding="utf-8")
        text = article_text(title, body)
        praised, named = (text.index(par) + par.index(" NATO ") + 1 for par in (p, q))
        expected[f"m{i}.txt"] = (text, praised, named)
    return expected


def classify(model, inputs, out, *extra):
    args = ["classify", str(model), str(inputs), "-o", str(out), "--no-progress", "--precision", "fp32", *extra]
    return runner.invoke(app, [str(a) for a in args])


def records(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_evidence_is_the_praising_paragraph(stance_model, tmp_path):
    expected = mixed_articles(tmp_path / "in")
    res = classify(stance_model, tmp_path / "in", tmp_path / "p.jsonl")
    assert res.exit_code == 0, res.output
    recs = records(tmp_path / "p.jsonl")
    assert len(recs) == len(expected)
    for r in recs:
        text, praised, passing_at = expected[r["id"]]
        nato = r["stances"]["NATO"]
        assert nato["label"] == "favor", r
        ev = nato["evidence"]
        # the window is the praising passage, not the one that names NATO in passing
        assert ev["start"] <= praised < ev["end"] and not ev["start"] <= passing_at < ev["end"], (r["id"], ev)
        assert any(w in ev["text"] for w in PRAISE) and "NATO" in ev["text"], ev
        assert not any(w in ev["text"] for w in PASSING), ev
        assert len(ev["text"]) <= MAX_SNIPPET
        assert " ".join(ev["text"].split()) in " ".join(text[ev["start"] : ev["end"]].split())
        (topic,) = r["topics"]
        tev = r["topic_evidence"][topic]
        assert set(r["topic_evidence"]) == {topic}
        assert tev["text"] in " ".join(text[tev["start"] : tev["end"]].split())


def test_no_evidence_removes_the_fields_and_csv_has_snippet_columns(stance_model, tmp_path):
    mixed_articles(tmp_path / "in", n=2)
    (tmp_path / "in" / "broken.txt").write_bytes(b"")  # an error record
    res = classify(stance_model, tmp_path / "in", tmp_path / "p.jsonl", "--no-evidence")
    assert res.exit_code == 0, res.output
    for r in records(tmp_path / "p.jsonl"):
        assert "topic_evidence" not in r and all("evidence" not in s for s in (r.get("stances") or {}).values())
    res = classify(stance_model, tmp_path / "in", tmp_path / "p.csv")
    assert res.exit_code == 0, res.output
    with (tmp_path / "p.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {"evidence:topic:ekonomi", "evidence:topic:olahraga", "evidence:stance:NATO"} <= set(rows[0])
    by_id = {r["id"]: r for r in rows}
    assert by_id["broken.txt"]["error"] and not by_id["broken.txt"]["evidence:stance:NATO"]
    for i in range(2):
        row = by_id[f"m{i}.txt"]
        assert "NATO" in row["evidence:stance:NATO"] and any(w in row["evidence:stance:NATO"] for w in PRAISE)
        assert row[f"evidence:topic:{row['topics']}"]  # the predicted topic has its snippet
        other = ({"ekonomi", "olahraga"} - {row["topics"]}).pop()
        assert row[f"evidence:topic:{other}"] == ""
    res = classify(stance_model, tmp_path / "in", tmp_path / "q.csv", "--no-evidence")
    assert res.exit_code == 0, res.output
    header = (tmp_path / "q.csv").read_text(encoding="utf-8").splitlines()[0]
    assert "evidence:" not in header


def test_error_records_and_not_mentioned_actors(stance_model, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "empty.txt").write_bytes(b"")
    (tmp_path / "in" / "plain.txt").write_text("judul\nberita tentang inflasi dan rupiah", encoding="utf-8")
    res = classify(stance_model, tmp_path / "in", tmp_path / "p.jsonl")
    assert res.exit_code == 0, res.output
    by_id = {r["id"]: r for r in records(tmp_path / "p.jsonl")}
    err = by_id["empty.txt"]
    assert err["error"] and "stances" not in err and "topic_evidence" not in err
    plain = by_id["plain.txt"]
    assert plain["stances"]["NATO"] == {"label": "not_mentioned", "probs": None}  # evidence: mentioned only
    assert set(plain["topic_evidence"]) == set(plain["topics"])


def test_resume_keeps_evidence_consistent(stance_model, tmp_path):
    mixed_articles(tmp_path / "in", n=4)
    full = tmp_path / "full.jsonl"
    assert classify(stance_model, tmp_path / "in", full).exit_code == 0
    part = tmp_path / "part.jsonl"
    lines = full.read_text(encoding="utf-8").splitlines(keepends=True)
    part.write_text("".join(lines[:2]) + lines[2][:20], encoding="utf-8")  # a crash mid-record
    res = classify(stance_model, tmp_path / "in", part, "--resume")
    assert res.exit_code == 0, res.output
    assert records(part) == records(full)
    res = classify(stance_model, tmp_path / "in", part, "--resume", "--no-evidence")
    assert res.exit_code != 0 and "writtenwithout--no-evidence" in "".join(res.output.split()), res.output


def test_has_evidence_tells_only_when_a_record_can_show_it():
    from sikap.inference.classify import has_evidence

    ev = {"start": 0, "end": 4, "text": "NATO"}
    assert has_evidence({"topics": [], "topic_evidence": {}}) is True
    assert has_evidence({"stances": {"NATO": {"label": "favor", "probs": {"favor": 1.0}, "evidence": ev}}}) is True
    assert has_evidence({"topics": ["ekonomi"]}) is False
    assert has_evidence({"stances": {"NATO": {"label": "favor", "probs": {"favor": 1.0}}}}) is False
    assert has_evidence({"stances": {"NATO": {"label": "not_mentioned", "probs": None}}}) is None
