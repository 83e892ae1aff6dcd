"""`sikap train`: setup -> fit (transformers Trainer) -> evaluate on dev -> save a model directory.

The transformers ``Trainer`` runs the loop, checkpoints, ``--resume``, early stopping and
bf16 autocast; sikap adds a collator that flattens article windows, a masked multi-task
loss inside the model, and dev scoring through the same Predictor that `classify` uses.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sikap.config import Config, config_to_dict
from sikap.model import IGNORE, SikapModel
from sikap.modeldir import (
    build_model,
    feature_builder,
    load_tokenizer,
    meta_from_config,
    resolve_backbone_spec,
    round_to_saved_dtype,
    save_model_dir,
)
from sikap.quantize import attach_calibration
from sikap.text import article_text
from sikap.training.data import Record, fingerprint, load_records, split_train_dev
from sikap.training.dataset import ArticleCollator, class_weights, encode_records, topic_pos_weight
from sikap.training.distributed import ddp_backend, is_main, main_only, resolve_device, share_from_main, world_size
from sikap.training.evaluate import score_arrays, score_predictions
from sikap.training.metrics import tune_thresholds
from sikap.training.precision_check import check_precisions
from sikap.training.precision_check import describe as describe_precision_check

CHECKPOINTS = "checkpoints"


@dataclass
class TrainResult:
    output_dir: Path
    dev_metrics: dict
    train_seconds: float
    steps: int
    n_train: int
    n_dev: int


# ---------------------------------------------------------------- setup


def load_splits(cfg: Config) -> tuple[list[Record], list[Record], dict]:
    """Train and dev records (dev split off train when not given) and data fingerprints."""
    train = load_records(cfg.data.train, cfg)
    info = {"train": fingerprint(cfg.data.train)}
    if cfg.data.dev is not None:
        dev = load_records(cfg.data.dev, cfg)
        info["dev"] = fingerprint(cfg.data.dev)
    else:
        train, dev = split_train_dev(train, cfg)
        info["dev"] = {"split_of": "train", "fraction": cfg.data.dev_fraction, "seed": cfg.train.seed}
    info["train"]["records"], info["dev"]["records"] = len(train), len(dev)
    return train, dev, info


def set_loss_weights(model: SikapModel, records: Sequence[Record], meta: dict, cfg: Config) -> None:
    """Class weights from training-label frequencies (the config can turn them off)."""
    if not cfg.train.class_weights:
        return
    topics, stance = meta.get("topics"), meta.get("stance")
    if topics:
        names = topics["names"]
        y = np.array([[float(n in r.topics) for n in names] for r in records if r.topics is not None])
        if len(y):
            if topics["multi_label"]:
                model.topic_weight = topic_pos_weight(y)
            else:
                model.topic_weight = class_weights(Counter(np.array(names)[y.argmax(1)]), names)
    if stance:
        counts = Counter(v for r in records for v in r.stances.values())
        model.stance_weight = class_weights(counts, stance["classes"])


def build_optimizer(model: SikapModel, cfg: Config) -> torch.optim.Optimizer:
    """AdamW with no decay on biases/LayerNorm and an optional separate learning rate for the heads."""
    t = cfg.train
    head_lr = t.head_learning_rate or t.learning_rate
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = not name.startswith("encoder.")
        no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        groups.setdefault((is_head, no_decay), []).append(p)
    params = [
        {"params": ps, "lr": head_lr if is_head else t.learning_rate, "weight_decay": 0.0 if nd else t.weight_decay}
        for (is_head, nd), ps in groups.items()
    ]
    return torch.optim.AdamW(params, lr=t.learning_rate)


# ---------------------------------------------------------------- fit


def make_compute_metrics(meta: dict):
    """Trainer metrics: decisions at 0.5 (thresholds are tuned only after training)."""
    topics, stance = meta.get("topics"), meta.get("stance")

    def compute(pred) -> dict:
        outs = list(pred.predictions) if isinstance(pred.predictions, tuple) else [pred.predictions]
        labels = list(pred.label_ids) if isinstance(pred.label_ids, tuple) else [pred.label_ids]
        y_topics = topic_pred = None
        gold, guess = [], []
        if topics:
            logits, y_topics = outs.pop(0), labels.pop(0)
            t = torch.from_numpy(np.asarray(logits, dtype=np.float32))
            if topics["multi_label"]:
                topic_pred = (torch.sigmoid(t) >= 0.5).float().numpy()
            else:
                topic_pred = np.eye(len(topics["names"]))[t.argmax(-1).numpy()]
        if stance:
            logits, mask, y = outs.pop(0), outs.pop(0), labels.pop(0)
            classes = stance["classes"]
            guess = [
                [classes[int(np.argmax(row))] if m else "not_mentioned" for row, m in zip(lr, mr, strict=True)]
                for lr, mr in zip(logits, mask, strict=True)
            ]
            gold = [[classes[int(v)] if v != IGNORE else None for v in row] for row in y]
        m = score_arrays(meta, y_topics, topic_pred, gold, guess)
        flat = {"score": m["score"]}
        for k in ("topics", "stance"):
            if k in m:
                flat[f"{k}_macro_f1"] = m[k]["macro_f1"]
        return flat

    return compute


def make_trainer(
    cfg: Config, model, meta: dict, train_ex, dev_ex, pad_id: int, progress: bool, log=print, *, trainer_cls=None,
    collator=None,
):
    """A transformers Trainer wired for sikap's article batches (``trainer_cls``/``collator``: a Trainer
    subclass and collator with a different loss, e.g. distillation)."""
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

    from sikap.predict import resolve_precision

    t = cfg.train
    device = resolve_device(t.device.value)
    strategy = "steps" if t.eval_steps else "epoch"
    label_names = (["topic_labels"] if meta.get("topics") else []) + (["stance_labels"] if meta.get("stance") else [])
    args = TrainingArguments(
        output_dir=str(cfg.output_dir / CHECKPOINTS),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,  # a float < 1 is a ratio of the total steps
        seed=t.seed,
        data_seed=t.seed,
        bf16=resolve_precision(t.precision.value, device) == "bf16",
        use_cpu=device == "cpu",
        ddp_backend=ddp_backend(device),  # under torchrun/accelerate: gloo on CPU, NCCL on GPUs
        ddp_find_unused_parameters=True if world_size() > 1 else None,  # a batch may train one head only
        ddp_timeout=4 * 3600,  # the other ranks wait while rank 0 scores dev and saves the model
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=t.eval_steps,
        save_steps=t.eval_steps,
        save_total_limit=2,
        load_best_model_at_end=t.select != "last",
        metric_for_best_model="loss" if t.select == "loss" else "score",
        greater_is_better=t.select != "loss",
        logging_steps=max(1, t.eval_steps or 10),
        report_to="none",
        remove_unused_columns=False,
        label_names=label_names,
        disable_tqdm=not progress,
        dataloader_num_workers=0,
    )
    # select=last trains the whole schedule: no early stopping
    callbacks = [EarlyStoppingCallback(early_stopping_patience=t.patience)] if t.patience and t.select != "last" else []
    if t.average_last:
        from sikap.training.averaging import CheckpointAveraging

        callbacks.append(CheckpointAveraging(t.average_last, log=log))
    n_topics = len(meta["topics"]["names"]) if meta.get("topics") else 0
    n_actors = len(meta["stance"]["actors"]) if meta.get("stance") else 0
    return (trainer_cls or Trainer)(
        model=model,
        args=args,
        data_collator=collator or ArticleCollator(pad_id, n_topics, n_actors),
        train_dataset=train_ex,
        eval_dataset=dev_ex,
        compute_metrics=make_compute_metrics(meta),
        callbacks=callbacks,
        optimizers=(build_optimizer(model, cfg), None),
    )


# ---------------------------------------------------------------- evaluate


def predict_records(predictor, records: Sequence[Record], *, chunk: int = 32, progress: bool = False):
    """Predictor outputs for records, in order, with an optional progress bar."""
    from rich.progress import Progress

    preds = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("predicting", total=len(records))
        for s in range(0, len(records), chunk):
            part = records[s : s + chunk]
            preds += predictor.predict([article_text(r.title, r.text) for r in part])
            bar.advance(task, len(part))
    return preds


def choose_blend(
    model: SikapModel,
    builder,
    meta: dict,
    lexical,
    dev: Sequence[Record],
    precision: str,
    fixed: float | None = None,
    temperature: bool = False,
) -> dict:
    """The encoder's share per head in the blend with the lexical model, by dev log-loss (or ``fixed``)."""
    from sikap.lexical import set_temperature
    from sikap.predict import Predictor
    from sikap.training.dataset import label_arrays
    from sikap.training.lexical import choose_temperature, choose_weight, rescale

    out: dict = {"topics": 1.0, "stance": 1.0, "dev_log_loss": {}, "lexical_temperature": {}}
    topics, stance = meta.get("topics"), meta.get("stance")
    if fixed is not None:
        return {**out, "topics": float(fixed), "stance": float(fixed), "chosen_by": "config"}
    model.eval()
    predictor = Predictor(model, builder, meta, precision=precision, convert=False, device=_device_of(model))
    texts = [article_text(r.title, r.text) for r in dev]
    nt, ns, mask = [], [], []
    for s in range(0, len(texts), 32):
        t_, s_, m_, _ = predictor.probabilities(texts[s : s + 32])
        nt.append(t_), ns.append(s_), mask.append(m_.numpy())
    lex_t, lex_s = lexical.predict(texts, len(predictor.actors))
    y_topics, gold = label_arrays(dev, meta)
    if topics and lex_t is not None and nt[0] is not None:
        neural = np.concatenate(nt)
        labeled = y_topics[:, 0] != IGNORE
        if labeled.any():
            y = y_topics[labeled]
            if not topics["multi_label"]:
                y = y.argmax(1)
            ml = topics["multi_label"]
            t = choose_temperature(lex_t[labeled], y, multi_label=ml) if temperature else 1.0
            set_temperature(lexical, "topics", t)
            out["lexical_temperature"]["topics"] = t
            lex_dev = rescale(lex_t[labeled], t, multi_label=ml)
            w, losses = choose_weight(neural[labeled], lex_dev, y, multi_label=ml)
            out["topics"], out["dev_log_loss"]["topics"] = w, losses
    if stance and ns and ns[0] is not None:
        neural, mask_ = np.concatenate(ns), np.concatenate(mask)
        classes = stance["classes"]
        pn, pl, y = [], [], []
        for k, lp in enumerate(lex_s):
            if lp is None:
                continue
            for i, row in enumerate(gold):
                if row[k] in classes and mask_[i, k]:
                    pn.append(neural[i, k]), pl.append(lp[i]), y.append(classes.index(row[k]))
        if y:
            y = np.array(y)
            t = choose_temperature(np.array(pl), y, multi_label=False) if temperature else 1.0
            set_temperature(lexical, "stance", t)
            out["lexical_temperature"]["stance"] = t
            w, losses = choose_weight(np.array(pn), rescale(np.array(pl), t, multi_label=False), y, multi_label=False)
            out["stance"], out["dev_log_loss"]["stance"] = w, losses
    out["chosen_by"] = "dev log-loss"
    return out


def tune_and_score(
    model: SikapModel, builder, meta: dict, dev: Sequence[Record], precision: str, lexical=None
) -> tuple[dict, dict]:
    """Dev metrics through the inference path: a temperature per head fitted on dev (on the blended
    probabilities, see sikap.calibration), then per-topic thresholds tuned on the calibrated
    probabilities for multi-label topics."""
    from sikap.predict import Predictor
    from sikap.training.calibration import fit_calibration
    from sikap.training.dataset import label_arrays

    model.eval()
    device = _device_of(model)
    predictor = Predictor(model, builder, meta, precision=precision, convert=False, lexical=lexical, device=device)
    preds = predict_records(predictor, dev)
    meta = fit_calibration(meta, dev, preds)  # recalibrates preds in place
    topics = meta.get("topics")
    thresholds = None
    if topics and topics["multi_label"]:
        y, _ = label_arrays(dev, meta)
        labeled = y[:, 0] != IGNORE
        probs = np.array([p.topic_probs for p in preds])
        if labeled.any():
            values = tune_thresholds(probs[labeled], y[labeled])
            thresholds = dict(zip(topics["names"], values, strict=True))
            meta = {**meta, "topics": {**topics, "thresholds": thresholds}}
            predictor = Predictor(model, builder, meta, precision=precision, convert=False, lexical=lexical,
                                  device=device)
            for p in preds:
                p.topics = predictor.decide_topics(p.topic_probs)
    return score_predictions(meta, dev, preds), meta


def _device_of(model) -> str:
    return str(next(model.parameters()).device)


# ---------------------------------------------------------------- the recipe


def train(cfg: Config, *, resume: bool = False, progress: bool = True, log=print) -> TrainResult:
    """Fine-tune according to ``cfg`` and save a self-contained model directory in ``cfg.output_dir``.

    Launched by torchrun/accelerate, every rank trains (DDP); rank 0 alone does what follows
    (lexical model, dev scoring, saving) and logs, and every rank returns rank 0's result.
    """
    from transformers import AutoModel, set_seed

    log = main_only(log)

    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    set_seed(cfg.train.seed)
    train_recs, dev_recs, data_info = load_splits(cfg)
    log(f"data: {len(train_recs)} train, {len(dev_recs)} dev records")
    backbone = resolve_backbone_spec(cfg.model.backbone)
    tokenizer = load_tokenizer(backbone)
    meta = meta_from_config(cfg)
    builder = feature_builder(tokenizer, meta)
    model = build_model(AutoModel.from_pretrained(backbone, trust_remote_code=False), meta)
    set_loss_weights(model, train_recs, meta, cfg)
    if cfg.model.freeze_word_embeddings:
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
    train_ex = encode_records(train_recs, builder, meta)
    dev_ex = encode_records(dev_recs, builder, meta)
    _warn_unmentioned(train_ex, log)

    trainer = make_trainer(cfg, model, meta, train_ex, dev_ex, tokenizer.pad_token_id or 0, progress, log=log)
    checkpoint = _resume_point(cfg) if resume else None
    start = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - start
    result = None
    if is_main():
        result = _finish(cfg, trainer, out, seconds, builder, tokenizer, meta, train_recs, dev_recs, data_info, log)
    return share_from_main(result)  # the other ranks wait here until the model dir is written


def _finish(cfg, trainer, out, seconds, builder, tokenizer, meta, train_recs, dev_recs, data_info, log) -> TrainResult:
    """After training, on rank 0: lexical model and blend, dev scores and thresholds, the model directory."""
    precision = "bf16" if trainer.args.bf16 else "fp32"
    round_to_saved_dtype(trainer.model, cfg.model.save_dtype)  # measure what the model dir will hold
    lexical = None
    if cfg.train.lexical:
        from sikap.training.lexical import fit_lexical

        lexical = fit_lexical(train_recs, meta, seed=cfg.train.seed)
        if lexical is None:
            log("note: too few labeled records for the lexical model; the encoder decides alone")
    if lexical is not None:
        blend = choose_blend(
            trainer.model,
            builder,
            meta,
            lexical,
            dev_recs,
            precision,
            cfg.train.blend_weight,
            temperature=cfg.train.lexical_temperature,
        )
        meta["blend"] = blend
        log(
            f"blend: encoder share topics {blend['topics']:.1f}, stance {blend['stance']:.1f} "
            f"(lexical model: the rest; {blend['chosen_by']})"
        )
    dev_metrics, meta = tune_and_score(trainer.model, builder, meta, dev_recs, precision, lexical)
    meta["int8_calibration"] = attach_calibration(
        trainer.model, [article_text(r.title, r.text) for r in train_recs], builder, meta
    )
    meta["precision_check"] = check_precisions(
        trainer.model, builder, meta, dev_recs, lexical, known={precision: dev_metrics}
    )
    log(describe_precision_check(meta["precision_check"]))
    if lexical is not None and dev_recs:  # the saved lexical model also learns from the dev records
        refit = fit_lexical(list(train_recs) + list(dev_recs), meta, seed=cfg.train.seed)
        if refit is not None:
            from sikap.lexical import set_temperature

            for head, t in meta["blend"].get("lexical_temperature", {}).items():
                set_temperature(refit, head, t)
            lexical = refit
    meta.update(
        config=config_to_dict(cfg),
        data=data_info,
        dev_metrics=dev_metrics,
        training={
            "seconds": round(seconds, 1),
            "steps": out.global_step,
            "precision": precision,
            "processes": world_size(),  # data-parallel ranks; the global batch is batch_size x processes x accumulation
            "best_checkpoint": trainer.state.best_model_checkpoint,
        },
    )
    save_model_dir(trainer.model, tokenizer, meta, cfg.output_dir, dtype=cfg.model.save_dtype, lexical=lexical)
    if not cfg.train.keep_checkpoints:
        shutil.rmtree(cfg.output_dir / CHECKPOINTS, ignore_errors=True)
    return TrainResult(cfg.output_dir, dev_metrics, seconds, out.global_step, len(train_recs), len(dev_recs))


def _resume_point(cfg: Config) -> str:
    from transformers.trainer_utils import get_last_checkpoint

    ckpt_dir = cfg.output_dir / CHECKPOINTS
    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    if last is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {ckpt_dir}; start without --resume")
    return last


def _warn_unmentioned(examples, log) -> None:
    """Stance labels for actors no alias matches cannot train the stance head: say how many."""
    n = sum(1 for e in examples for k, v in enumerate(e.stance_labels) if v != IGNORE and k not in e.features.stance)
    if n:
        log(
            f"note: {n} labeled article-actor pairs have no alias mention and are skipped for the stance loss; "
            "add aliases to labels.stance.actors to use them"
        )
