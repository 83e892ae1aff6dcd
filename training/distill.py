"""`sikap distill`: a smaller student trained on a teacher model's soft predictions.

Recipe (logit distillation, Hinton et al. 2015): the student is the teacher with fewer encoder
layers, evenly spaced and copied from the teacher (first and last kept, as DistilBERT starts
from every other layer), the teacher's heads copied as they are. Over unlabeled articles (read
with classify's readers) plus, optionally, labeled records, it learns the teacher's article-level
logits softened by a temperature ``T``: KL divergence for stance (every mentioned actor; a pair
the aliases do not match is ``not_mentioned`` for both models, since they read the same windows)
and for single-label topics, BCE against the teacher's softened probabilities for multi-label
topics, each scaled by ``T**2``; the actor-independent stance slot (shared mode, for ``classify
--actor``) learns every actor's soft targets at the weight ``sikap train`` gives it; labeled records
add the model's own masked hard-label loss.

The loop is the transformers Trainer of ``sikap train`` (``make_trainer``) with a ``compute_loss``
that reads the teacher logits stored in each example. The student is an ordinary model dir: the
teacher's labels, chunking, lexical model and blend are kept; thresholds are tuned again on dev.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from transformers import Trainer

from sikap.config import Config, config_from_dict, config_to_dict
from sikap.model import GENERIC_LOSS_WEIGHT, SikapModel
from sikap.modeldir import LoadedModel, build_model, load_model_dir, round_to_saved_dtype, save_model_dir
from sikap.quantize import attach_calibration
from sikap.text import article_text
from sikap.training.data import DataError, Record, fingerprint, load_records
from sikap.training.dataset import ArticleCollator, Example, encode_records
from sikap.training.trainer import CHECKPOINTS, load_splits, make_trainer, set_loss_weights, tune_and_score

LAYER_KEY = re.compile(r"\b(layers?\.)(\d+)(?=\.)")  # "encoder.layer.3.attention..." -> "layer.", "3"
PSEUDO_DEV_FRACTION = 0.1
TEACHER_DEV = "the teacher's dev data"


@dataclass
class DistillResult:
    output_dir: Path
    dev_metrics: dict
    dev_source: str
    agreement: dict
    teacher_layers: int
    student_layers: list[int]  # which teacher layers the student started from
    n_unlabeled: int
    n_labeled: int
    n_dev: int
    train_seconds: float
    steps: int


@dataclass
class DistillExample(Example):
    teacher_topics: list[float] | None = None  # (n_topics,) teacher logits
    teacher_stance: list[list[float]] | None = None  # (n_actors, n_classes) teacher logits, 0 where not mentioned


# ---------------------------------------------------------------- the student


def default_layers(n_teacher: int) -> int:
    """A third of the teacher's layers (12 -> 4), at least one."""
    return max(1, round(n_teacher / 3))


def pick_layers(n_teacher: int, n_student: int) -> list[int]:
    """Evenly spaced teacher layers, first and last included (12 -> 4: [0, 4, 7, 11]); 1 -> the last;
    as many as the teacher -> all of them (a same-size student, e.g. of a seed ensemble: one model's cost)."""
    if not 1 <= n_student <= n_teacher:
        raise ValueError(
            f"--layers {n_student}: a student needs 1 to {n_teacher} layers (the teacher has {n_teacher})"
        )
    if n_student == n_teacher:
        return list(range(n_teacher))
    if n_student == 1:
        return [n_teacher - 1]
    return [round(i * (n_teacher - 1) / (n_student - 1)) for i in range(n_student)]


def student_encoder(teacher_encoder, keep: list[int]):
    """A copy of ``teacher_encoder`` with only the layers ``keep`` (in order), weights copied."""
    from transformers import AutoModel

    config = copy.deepcopy(teacher_encoder.config)
    config.num_hidden_layers = len(keep)
    student = AutoModel.from_config(config, trust_remote_code=False)
    source = teacher_encoder.state_dict()
    state = {
        k: source[LAYER_KEY.sub(lambda m: m.group(1) + str(keep[int(m.group(2))]), k)].clone()
        for k in student.state_dict()
    }
    student.load_state_dict(state, strict=True)
    return student


def build_student(teacher: LoadedModel, keep: list[int]) -> SikapModel:
    """The student: fewer encoder layers taken from the teacher, the teacher's heads."""
    model = build_model(student_encoder(teacher.model.encoder, keep), teacher.meta)
    from sikap.ensemble import member_models

    first = member_models(teacher.model)[0]  # a seed ensemble's student starts from its first member
    heads = {k: v.clone() for k, v in first.state_dict().items() if not k.startswith("encoder.")}
    missing = model.load_state_dict(heads, strict=False).unexpected_keys
    if missing:
        raise ValueError(f"teacher heads do not fit the student: {missing[:3]}")
    return model


# ---------------------------------------------------------------- data


def read_unlabeled(path: Path, read_articles, log=print) -> list[Record]:
    """Articles under ``path`` (a folder or one file) as ``read_articles(path)`` yields them (the CLI passes
    classify's folder walk, ``sikap.inference.readers.iter_articles``: training/ does not import inference/);
    unreadable ones are reported."""
    out, errors = [], []
    for art in read_articles(Path(path)):
        if art.error is None:
            out.append(Record(id=art.id, title=art.title, text=art.text, where=art.id))
        else:
            errors.append(f"{art.id}: {art.error}")
    if errors:
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        log(f"note: {len(errors)} unreadable articles under {path} skipped: {'; '.join(errors[:3])}{more}")
    return out


def _key(r: Record) -> str:
    return hashlib.sha1(article_text(r.title, r.text).encode("utf-8")).hexdigest()


def without(records: Sequence[Record], exclude: Sequence[Record]) -> list[Record]:
    """``records`` minus those whose text is in ``exclude`` (dev articles never train the student)."""
    seen = {_key(r) for r in exclude}
    return [r for r in records if _key(r) not in seen]


def teacher_dev(cfg: Config, meta: dict, log=print) -> list[Record]:
    """The teacher's own dev records, when its data files are still there and unchanged."""
    try:
        _, dev, info = load_splits(cfg)
    except (OSError, DataError) as e:
        log(f"note: the teacher's dev data cannot be read ({str(e).splitlines()[0][:200]})")
        return []
    saved = meta.get("data") or {}
    split = "split_of" in (saved.get("dev") or {})
    name = "train" if split else "dev"
    if (saved.get(name) or {}).get("sha256") != info[name].get("sha256"):
        log(f"note: the teacher's {name} file {info[name].get('path')} changed since training; not used as dev")
        return []
    return dev


def stitched_pairs(pool: Sequence[Record], n: int, seed: int) -> list[Record]:
    """``n`` synthetic articles, each two distinct articles of ``pool`` one after the other (seeded).

    More teacher-labeled text for the student at no labeling cost, and articles covering two topics
    and more actors, which a few hundred single-story articles rarely show; unlabeled (the teacher's
    logits are their targets)."""
    if n <= 0 or len(pool) < 2:
        return []
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        i, j = (int(x) for x in rng.choice(len(pool), size=2, replace=False))
        a, b = pool[i], pool[j]
        text = f"{article_text(a.title, a.text)}\n\n{article_text(b.title, b.text)}"
        out.append(Record(id=f"stitched-{k}:{a.id}+{b.id}", title="", text=text, where=f"stitched pair {k}"))
    return out


def pseudo_labels(teacher_predictor, records: Sequence[Record]) -> list[Record]:
    """``records`` labeled with the teacher's decisions (a dev set measuring agreement with the teacher)."""
    from sikap.config import NOT_MENTIONED
    from sikap.training.trainer import predict_records

    out = []
    for r, p in zip(records, predict_records(teacher_predictor, records), strict=True):
        stances = {a: s for a, s in zip(teacher_predictor.actors, p.stances, strict=True) if s != NOT_MENTIONED}
        topics = p.topics if teacher_predictor.topic_names else None
        out.append(Record(id=r.id, title=r.title, text=r.text, topics=topics, stances=stances, where=r.where))
    return out


def with_teacher_logits(examples: list[Example], teacher_predictor, chunk: int = 32) -> list[DistillExample]:
    """Examples carrying the teacher's article logits, computed once on the examples' own windows."""
    out = []
    for s in range(0, len(examples), chunk):
        part = examples[s : s + chunk]
        feats = [e.features for e in part]
        topic, stance, mask, _ = teacher_predictor.logits([""] * len(part), feats)
        for i, e in enumerate(part):
            st = None if stance is None else (stance[i].float() * mask[i, :, None]).tolist()
            tt = None if topic is None else topic[i].float().tolist()
            out.append(DistillExample(e.features, e.topic_labels, e.stance_labels, tt, st))
    return out


class DistillCollator(ArticleCollator):
    """ArticleCollator plus the teacher's logits: ``teacher_topics`` (B, T), ``teacher_stance`` (B, A, C)."""

    def __call__(self, examples: list[DistillExample]) -> dict[str, torch.Tensor]:
        batch = super().__call__(examples)
        if self.n_topics:
            batch["teacher_topics"] = torch.tensor([e.teacher_topics for e in examples], dtype=torch.float)
        if self.n_actors:
            batch["teacher_stance"] = torch.tensor([e.teacher_stance for e in examples], dtype=torch.float)
        return batch


# ---------------------------------------------------------------- the loss


def soft_loss(out: dict, teacher_topics, teacher_stance, *, temperature: float, multi_label: bool) -> torch.Tensor:
    """T**2-scaled distillation loss of the student's article logits against the teacher's."""
    t = temperature
    loss = None
    if teacher_topics is not None:
        s_logits = out["topic_logits"] / t  # (B, T)
        t_logits = teacher_topics.to(s_logits.dtype) / t
        if multi_label:
            part = F.binary_cross_entropy_with_logits(s_logits, torch.sigmoid(t_logits))
        else:
            part = F.kl_div(
                F.log_softmax(s_logits, -1), F.log_softmax(t_logits, -1), log_target=True, reduction="batchmean"
            )
        loss = part * t * t
    if teacher_stance is not None:
        present = out["stance_mask"]  # (B, A): the actor is mentioned (same windows for both models)
        if present.any():
            s_logits = out["stance_logits"][present] / t  # (pairs, C)
            t_logits = teacher_stance.to(s_logits.dtype)[present] / t
            part = F.kl_div(
                F.log_softmax(s_logits, -1), F.log_softmax(t_logits, -1), log_target=True, reduction="batchmean"
            )
            loss = part * t * t if loss is None else loss + part * t * t
            if "generic_stance_logits" in out:  # the actor-independent slot learns every actor, as in training
                g_logits = out["generic_stance_logits"][present] / t
                part = F.kl_div(
                    F.log_softmax(g_logits, -1), F.log_softmax(t_logits, -1), log_target=True, reduction="batchmean"
                )
                loss = loss + GENERIC_LOSS_WEIGHT * part * t * t
    return loss if loss is not None else sum(v.sum() for v in out.values() if v.is_floating_point()) * 0.0


class DistillTrainer(Trainer):
    """Trainer whose loss is the soft loss plus ``hard_weight`` x the model's hard-label loss."""

    loss_is_scaled_for_ga = False  # a per-batch mean: the Trainer divides by the accumulation steps

    def __init__(self, *args, temperature: float, hard_weight: float, multi_label: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.temperature, self.hard_weight, self.multi_label = temperature, hard_weight, multi_label

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)  # the Trainer reads the labels from the original afterwards
        teacher_topics, teacher_stance = inputs.pop("teacher_topics", None), inputs.pop("teacher_stance", None)
        out = model(**inputs)
        hard = out.pop("loss", None)
        loss = soft_loss(
            out, teacher_topics, teacher_stance, temperature=self.temperature, multi_label=self.multi_label
        )
        if hard is not None and self.hard_weight:
            loss = loss + self.hard_weight * hard
        return (loss, out) if return_outputs else loss


# ---------------------------------------------------------------- the recipe


def distill(
    teacher_dir: Path,
    unlabeled: Path,
    output_dir: Path,
    *,
    layers: int | None = None,
    train: Path | None = None,
    dev: Path | None = None,
    temperature: float = 2.0,
    hard_weight: float = 0.5,
    augment: int = 0,
    overrides: list[str] | None = None,
    read_articles=None,
    progress: bool = True,
    log=print,
) -> DistillResult:
    """Distill the model in ``teacher_dir`` into a student with ``layers`` encoder layers in ``output_dir``.

    ``train``: labeled records added to the distillation data (hard-label loss too). ``dev``: labeled
    records to select the epoch and tune thresholds on [default: the teacher's dev data if unchanged,
    else a held-out tenth of the articles labeled by the teacher]. ``overrides``: dotted settings on
    the teacher's training config (``train.epochs=3``), e.g. for the schedule. ``augment``: that many
    stitched pairs of the training articles added as unlabeled (:func:`stitched_pairs`). ``read_articles(path)``
    yields the unlabeled articles (objects with id, title, text, error), e.g. classify's ``iter_articles``.
    """
    from transformers import set_seed

    teacher = load_model_dir(teacher_dir)
    if "config" not in teacher.meta:
        raise ValueError(f"{teacher_dir}: sikap.json has no training config; retrain the teacher with `sikap train`")
    cfg = student_config(teacher.meta["config"], output_dir, overrides)
    set_seed(cfg.train.seed)
    n_teacher = teacher.model.encoder.config.num_hidden_layers
    keep = pick_layers(n_teacher, layers or default_layers(n_teacher))
    student = build_student(teacher, keep)
    log(f"student: {len(keep)} of the teacher's {n_teacher} encoder layers ({', '.join(map(str, keep))})")

    teacher_pred = teacher_predictor(teacher)
    articles, labeled, dev_recs, dev_source = distill_data(
        teacher, teacher_pred, cfg, unlabeled, train, dev, log, read_articles
    )
    pairs = stitched_pairs(labeled + articles, augment, cfg.train.seed)
    log(
        f"data: {len(articles)} unlabeled + {len(labeled)} labeled articles"
        + (f" + {len(pairs)} stitched pairs" if pairs else "")
        + f"; dev: {len(dev_recs)} ({dev_source})"
    )
    articles = articles + pairs
    if labeled:
        set_loss_weights(student, labeled, teacher.meta, cfg)
    meta = {k: v for k, v in teacher.meta.items() if k not in ("precision_check", "training", "versions", "ensemble")}
    train_ex = with_teacher_logits(encode_records(labeled + articles, teacher.builder, meta), teacher_pred)
    dev_ex = with_teacher_logits(encode_records(dev_recs, teacher.builder, meta), teacher_pred)
    trainer = distill_trainer(cfg, student, teacher, train_ex, dev_ex, temperature, hard_weight, progress, log)
    start = time.perf_counter()
    out = trainer.train()
    seconds = time.perf_counter() - start

    round_to_saved_dtype(trainer.model, cfg.model.save_dtype)  # measure what the model dir will hold
    lexical_saw_dev = teacher.lexical is not None and dev_source == TEACHER_DEV
    texts = [article_text(r.title, r.text) for r in labeled + articles]
    result = finish(trainer, teacher, teacher_pred, meta, dev_recs, lexical_saw_dev, log, texts)
    meta = result.pop("meta")
    meta.update(
        config=config_to_dict(cfg),
        data={
            "unlabeled": {"path": str(unlabeled), "records": len(articles)},
            "train": None if train is None else {**fingerprint(train), "records": len(labeled)},
            "dev": {"source": dev_source, "records": len(dev_recs)},
        },
        training={"seconds": round(seconds, 1), "steps": out.global_step, "precision": _precision(trainer)},
        distillation={
            "teacher": str(teacher_dir),
            "teacher_layers": n_teacher,
            "student_layers": keep,
            "temperature": temperature,
            "hard_weight": hard_weight,
            "stitched_pairs": len(pairs),
            "agreement": result["agreement"],
            "dev_seen_by_lexical": lexical_saw_dev,
        },
    )
    save_model_dir(
        trainer.model, teacher.tokenizer, meta, cfg.output_dir, dtype=cfg.model.save_dtype, lexical=teacher.lexical
    )
    if not cfg.train.keep_checkpoints:
        shutil.rmtree(cfg.output_dir / CHECKPOINTS, ignore_errors=True)
    return DistillResult(
        output_dir=cfg.output_dir,
        dev_metrics=meta["dev_metrics"],
        dev_source=dev_source,
        agreement=result["agreement"],
        teacher_layers=n_teacher,
        student_layers=keep,
        n_unlabeled=len(articles),
        n_labeled=len(labeled),
        n_dev=len(dev_recs),
        train_seconds=seconds,
        steps=out.global_step,
    )


def student_config(teacher_config: dict, output_dir: Path, overrides: list[str] | None) -> Config:
    """The teacher's training config, writing to ``output_dir``, with ``overrides`` applied."""
    raw = {**teacher_config, "output_dir": str(output_dir)}
    return config_from_dict(raw, overrides, source="the teacher's training config")


def teacher_predictor(teacher: LoadedModel):
    """The teacher at the training precision (bf16 where native, else fp32), lexical blend included."""
    from sikap.predict import Predictor, resolve_precision

    return Predictor(
        teacher.model, teacher.builder, teacher.meta, precision=resolve_precision("auto"), lexical=teacher.lexical
    )


def distill_data(
    teacher, teacher_pred, cfg: Config, unlabeled: Path, train: Path | None, dev: Path | None, log, read_articles
):
    """Unlabeled articles, labeled records and dev records (never in the other two), and where dev came from."""
    if read_articles is None:
        raise ValueError("distill needs read_articles (e.g. sikap.inference.readers.iter_articles)")
    articles = read_unlabeled(unlabeled, read_articles, log)
    labeled = load_records(train, cfg) if train is not None else []
    if dev is not None:
        dev_recs, source = load_records(dev, cfg), str(dev)
    else:
        dev_recs, source = teacher_dev(cfg, teacher.meta, log), TEACHER_DEV
    if not dev_recs:  # agreement with the teacher on held-out articles
        rng = np.random.default_rng(cfg.train.seed)
        pool = articles if len(articles) >= 10 else labeled + articles
        n = max(1, round(len(pool) * PSEUDO_DEV_FRACTION))
        held = [pool[i] for i in sorted(rng.choice(len(pool), size=n, replace=False))] if pool else []
        dev_recs, source = pseudo_labels(teacher_pred, held), "held-out articles labeled by the teacher"
    articles, labeled = without(without(articles, dev_recs), labeled), without(labeled, dev_recs)
    if not articles and not labeled:
        raise ValueError(f"{unlabeled}: no readable articles to distill on (besides the dev records)")
    return articles, labeled, dev_recs, source


def distill_trainer(cfg, student, teacher, train_ex, dev_ex, temperature, hard_weight, progress, log):
    meta = teacher.meta
    n_topics = len(meta["topics"]["names"]) if meta.get("topics") else 0
    n_actors = len(meta["stance"]["actors"]) if meta.get("stance") else 0
    cls = functools.partial(
        DistillTrainer,
        temperature=temperature,
        hard_weight=hard_weight,
        multi_label=bool(meta.get("topics") and meta["topics"]["multi_label"]),
    )
    pad = teacher.tokenizer.pad_token_id or 0
    collator = DistillCollator(pad, n_topics, n_actors)
    return make_trainer(cfg, student, meta, train_ex, dev_ex, pad, progress, log, trainer_cls=cls, collator=collator)


def finish(
    trainer, teacher, teacher_pred, meta: dict, dev_recs, lexical_saw_dev: bool, log, calibration_texts=()
) -> dict:
    """Dev scores and thresholds for the student, its precision check, and its agreement with the teacher."""
    from sikap.predict import Predictor
    from sikap.training.evaluate import score_predictions
    from sikap.training.precision_check import check_precisions, describe
    from sikap.training.trainer import predict_records

    precision = _precision(trainer)
    blend = meta.get("blend") or {}
    if lexical_saw_dev and blend.get("topics", 1.0) >= 1.0 and (meta.get("topics") or {}).get("multi_label"):
        # the lexical model does not touch topics (encoder share 1), so topic thresholds tuned on the
        # dev records are not biased by its memory of them: tune them for the student
        _, tuned = tune_and_score(trainer.model, teacher.builder, meta, dev_recs, precision, teacher.lexical)
        meta["topics"] = tuned["topics"]  # its temperature and thresholds; stance keeps the teacher's
        log("topic temperature and thresholds tuned for the student on dev (the lexical model has no share in topics)")
    if lexical_saw_dev:  # thresholds tuned on these records would fit the lexical model's memory of them
        log(
            "note: the teacher's lexical model was refit on its dev records, so the student keeps the teacher's "
            "thresholds and its dev scores through the blend are optimistic; pass --dev with other labeled "
            "records for a clean figure"
        )
        trainer.model.eval()
        predictor = Predictor(
            trainer.model, teacher.builder, meta, precision=precision, convert=False, lexical=teacher.lexical
        )
        dev_metrics = score_predictions(meta, dev_recs, predict_records(predictor, dev_recs))
    else:
        dev_metrics, meta = tune_and_score(trainer.model, teacher.builder, meta, dev_recs, precision, teacher.lexical)
    meta["dev_metrics"] = dev_metrics
    meta["int8_calibration"] = attach_calibration(trainer.model, calibration_texts, teacher.builder, meta)
    meta["precision_check"] = check_precisions(
        trainer.model,
        teacher.builder,
        meta,
        dev_recs,
        teacher.lexical,
        known={precision: dev_metrics},
    )
    log(describe(meta["precision_check"]))
    agreement = agreement_on(trainer.model, teacher, teacher_pred, meta, dev_recs, precision)
    log(f"agreement with the teacher on dev: {agreement}")
    return {"meta": meta, "agreement": agreement}


def agreement_on(student: SikapModel, teacher, teacher_pred, meta: dict, records, precision: str) -> dict:
    """Share of identical decisions, student vs teacher: topic sets per article, stance per article x actor."""
    from sikap.predict import Predictor
    from sikap.training.trainer import predict_records

    if not records:
        return {}
    student.eval()
    mine = predict_records(
        Predictor(student, teacher.builder, meta, precision=precision, convert=False, lexical=teacher.lexical), records
    )
    theirs = predict_records(teacher_pred, records)
    out = {}
    if meta.get("topics"):
        out["topics"] = round(
            float(np.mean([set(a.topics) == set(b.topics) for a, b in zip(mine, theirs, strict=True)])), 4
        )
    if meta.get("stance"):
        pairs = [x == y for a, b in zip(mine, theirs, strict=True) for x, y in zip(a.stances, b.stances, strict=True)]
        out["stance"] = round(float(np.mean(pairs)), 4) if pairs else None
    return out


def _precision(trainer) -> str:
    return "bf16" if trainer.args.bf16 else "fp32"
