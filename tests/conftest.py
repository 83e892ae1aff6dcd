"""Shared fixtures: a tiny random BERT with a tokenizer trained on the fly, and synthetic records.

Everything is offline: no hub access, a model with hidden size 32 and two layers.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TOPIC_WORDS = {
    "ekonomi": ["inflasi", "rupiah", "ekspor", "investasi", "pasar"],
    "olahraga": ["sepak", "bola", "pertandingan", "gol", "pelatih"],
    "pemilu": ["kampanye", "suara", "kandidat", "pemilih", "partai"],
}
FILLER = "ini adalah berita tentang hari yang biasa di kota kami dengan banyak orang dan kegiatan".split()
STANCE_WORDS = {
    "favor": ["mendukung", "memuji"],
    "against": ["mengecam", "menolak"],
    "neutral": ["melaporkan", "mencatat"],
}
ACTORS = {"NATO": ["NATO", "aliansi"], "Rusia": ["Rusia", "Moskow"]}


def synthetic_records(n: int, seed: int = 0, long_every: int = 0, one_actor: bool = False) -> list[dict]:
    """Records whose topic is signalled by keywords and stance by a verb next to the actor's name.

    ``one_actor``: each article mentions exactly one actor (stance readable from the whole text).
    """
    rng = random.Random(seed)
    topics = list(TOPIC_WORDS)
    out = []
    for i in range(n):
        topic = topics[i % len(topics)]
        words = [rng.choice(FILLER) for _ in range(rng.randint(8, 20))]
        words += [rng.choice(TOPIC_WORDS[topic]) for _ in range(3)]
        stances = {}
        only = rng.choice(list(ACTORS)) if one_actor else None
        for actor, aliases in ACTORS.items():
            if (actor == only) if one_actor else rng.random() < 0.7:
                label = rng.choice(list(STANCE_WORDS))
                words += ["media", rng.choice(STANCE_WORDS[label]), rng.choice(aliases)]
                stances[actor] = label
        if long_every and i % long_every == 0:
            words += [rng.choice(FILLER) for _ in range(150)]
        rng.shuffle(words[:8])
        out.append(
            {"id": f"r{i}", "title": f"judul {i}", "text": " ".join(words), "topics": [topic], "stances": stances}
        )
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def build_tiny_backbone(out: Path) -> Path:
    """A random BertModel (hidden 32, 2 layers) and a WordPiece tokenizer trained on synthetic text."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    corpus = [r["title"] + " " + r["text"] for r in synthetic_records(300, seed=1)]
    corpus += ["Amerika Serikat Ukraina Kyiv Washington berita artikel judul teks"] * 5
    # the vocabulary is built here rather than by the tokenizers trainer, whose output varies from one
    # process to the next (ties): characters, their ## forms, then the commonest words (ties by spelling)
    normalizer, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = Counter(w for text in corpus for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in counts for c in w})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = specials + chars + ["##" + c for c in chars]
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if w not in pieces]
    vocab = {p: i for i, p in enumerate(pieces + words[: max(0, 400 - len(pieces))])}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )
    fast.save_pretrained(out)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
        type_vocab_size=2,
    )
    import torch

    torch.manual_seed(0)  # the same random backbone in every test session
    BertModel(config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    return build_tiny_backbone(tmp_path_factory.mktemp("tiny-bert"))


def tiny_config_dict(backbone: Path, train: Path, dev: Path | None, out: Path, **train_overrides) -> dict:
    """A config dict for the synthetic task on the tiny backbone."""
    data = {"train": str(train)}
    if dev is not None:
        data["dev"] = str(dev)
    return {
        # pair mode: on this tiny random encoder it learns the synthetic stance task; shared is tested apart
        "model": {"backbone": str(backbone), "max_length": 64, "stride": 16, "max_chunks": 4, "stance_mode": "pair"},
        "labels": {
            "topics": {"multi_label": False, "names": list(TOPIC_WORDS)},
            "stance": {"actors": [{"name": a, "aliases": al} for a, al in ACTORS.items()]},
        },
        "data": data,
        "train": {
            "epochs": 1,
            "batch_size": 8,
            "learning_rate": 1e-3,
            "seed": 7,
            "patience": 0,
            "precision": "fp32",
            **train_overrides,
        },
        "output_dir": str(out),
    }


def train_small_model(backbone: Path, root: Path, n: int = 30, seed: int = 4, max_steps: int = 2) -> Path:
    """Train a small model with ``sikap train`` (``n`` synthetic records, ``max_steps`` steps) under ``root``;
    its model dir. The defaults are the suite's small classify model. The CLI output is asserted to
    report the training-time precision check."""
    import yaml
    from typer.testing import CliRunner

    from sikap.cli import app

    write_jsonl(root / "train.jsonl", synthetic_records(n, seed=seed))
    cfg = tiny_config_dict(backbone, root / "train.jsonl", None, root / "run", max_steps=max_steps)
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    res = CliRunner().invoke(app, ["train", str(root / "cfg.yaml"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "precision check on" in res.output
    return root / "run"
