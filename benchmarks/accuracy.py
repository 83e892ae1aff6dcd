"""Accuracy of sikap against a TF-IDF + linear baseline on public Indonesian datasets.

    python benchmarks/accuracy.py --data-root ../shared/data               # all four tasks
    python benchmarks/accuracy.py --tasks sib200,casa                      # a subset
    python benchmarks/accuracy.py --quick                                  # tiny smoke run (minutes)
    SIKAP_DATA_ROOT=/data/id python benchmarks/accuracy.py                 # data elsewhere

Run from the repository root. ``--data-root`` (default: ``$SIKAP_DATA_ROOT``, else ``../shared/data``
next to the repository) is a folder laid out like ``shared/data``: ``sib-200-ind/{train,dev}.tsv``,
``id-stance/*.csv``, ``indonlu/{casa_absa-prosa,hoasa_absa-airy}/{train,valid}_preprocess.csv``.

Each task: the raw files are imported with ``sikap.training.importers`` into JSONL under
``benchmarks/data/`` (derived data, git-ignored), the task's shipped config ``configs/<task>.yaml``
is loaded and its data paths are overridden per split or fold, and sikap is fine-tuned in a fresh
subprocess (its peak RSS is that process's ``ru_maxrss``: backbone, training and scoring). Epochs
are picked on the trainer's own seeded stratified split of the training part (``data.dev`` unset),
never on the split that is scored. The saved model directory is then scored on the held-out split
with ``evaluate_model_dir`` (the `sikap evaluate` path). The baseline (TF-IDF word 1-2-grams +
char 2-5-grams, LinearSVC with C picked by 3-fold CV on the training part) is trained and scored on
the same splits, with the same metric functions.

Tasks and protocols (macro-F1 in all cases):

- ``sib200``: SIB-200 ``ind_Latn`` topics (7, single-label), train -> dev.
- ``id-stance``: stance toward a politician (favor/against), 5-fold CV:
  ``StratifiedKFold(5, shuffle=True, random_state=0)`` over the rows in file order after the 2
  ``no`` rows are dropped; mean and sample std over folds.
- ``casa``, ``hoasa``: IndoNLU aspect sentiment, train -> valid, macro-F1 over favor/against/neutral
  flattened over all labeled (text, aspect) pairs, as IndoNLU scores it (HoASA's 9 ``neg_pos`` pairs
  are left unlabeled by the importer and not scored).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import resource
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
DATA_OUT = REPO / "benchmarks" / "data"  # derived JSONL (git-ignored)


@dataclass(frozen=True)
class Task:
    name: str
    title: str
    kind: str  # importer kind
    files: dict[str, str]  # split -> path under the data root ("*" globs allowed)
    target: float
    protocol: str = "split"  # "split" (train -> eval split) or "cv" (5-fold over one file)
    eval_split: str = "dev"


TASKS = {
    t.name: t
    for t in (
        Task(
            "sib200",
            "SIB-200 ind topics",
            "sib200",
            {"train": "sib-200-ind/train.tsv", "dev": "sib-200-ind/dev.tsv"},
            0.88,
            eval_split="dev",
        ),
        Task("id-stance", "id-stance", "id-stance", {"all": "id-stance/*.csv"}, 0.72, protocol="cv"),
        Task(
            "casa",
            "CASA aspect sentiment",
            "indonlu-absa",
            {
                "train": "indonlu/casa_absa-prosa/train_preprocess.csv",
                "valid": "indonlu/casa_absa-prosa/valid_preprocess.csv",
            },
            0.90,
            eval_split="valid",
        ),
        Task(
            "hoasa",
            "HoASA aspect sentiment",
            "indonlu-absa",
            {
                "train": "indonlu/hoasa_absa-airy/train_preprocess.csv",
                "valid": "indonlu/hoasa_absa-airy/valid_preprocess.csv",
            },
            0.90,
            eval_split="valid",
        ),
        Task("demo", "demo corpus (topics / stance)", "demo", {}, 0.70, eval_split="test"),
        Task("id-stance-topics", "id-stance posts: which politician, names masked (long-article topics)",
             "id-stance-topics", {"all": "id-stance/*.csv"}, 0.0, eval_split="fold 1"),
        Task("smsa", "SmSA document sentiment (intermediate task)", "indonlu-smsa",
             {"train": "indonlu/smsa_doc-sentiment-prosa/train_preprocess.tsv",
              "valid": "indonlu/smsa_doc-sentiment-prosa/valid_preprocess.tsv"}, 0.85, eval_split="valid"),
        Task(
            "id-stance-unseen",
            "id-stance, target unseen in training (--actor)",
            "id-stance",
            {"all": "id-stance/*.csv"},
            0.65,
            protocol="holdout",
        ),
    )
}
CONFIG_OF = {"id-stance-unseen": "id-stance"}  # tasks that reuse another task's config
N_FOLDS = 5
FOLD_SEED = 0
QUICK = {"train": 48, "eval": 24, "cv_rows": 40, "folds": 1}
QUICK_OVERRIDES = ["train.epochs=1", "train.patience=0"]


# ---------------------------------------------------------------- data


def find_file(root: Path, pattern: str) -> Path:
    hits = sorted(root.glob(pattern))
    if not hits:
        raise SystemExit(
            f"error: {root / pattern} not found; point --data-root (or $SIKAP_DATA_ROOT) at a folder "
            "laid out like shared/data"
        )
    return hits[0]


def import_task(task: Task, root: Path, log) -> dict[str, Path]:
    """Import the task's raw files into ``benchmarks/data/<task>-<split>.jsonl``."""
    from sikap.training.importers import import_dataset

    out = {}
    if task.kind == "demo":  # shipped with the repository: examples/demo/{train,dev,test}.jsonl
        return {split: REPO / "examples" / "demo" / f"{split}.jsonl" for split in ("train", "dev", "test")}
    for split, pattern in task.files.items():
        src = find_file(root, pattern)
        dst = DATA_OUT / (f"{task.name}.jsonl" if split == "all" else f"{task.name}-{split}.jsonl")
        rep = import_dataset("id-stance" if task.kind == "id-stance-topics" else task.kind, src, dst)
        extra = "; ".join(f"{k}: {v}" for k, v in {**rep.dropped, **rep.notes}.items())
        extra = f" ({extra})" if extra else ""
        log(f"  imported {src} -> {dst.relative_to(REPO)}: {rep.written}/{rep.read} rows{extra}")
        out[split] = dst
    return out


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def cv_folds(rows: list[dict], n_folds: int = N_FOLDS) -> list[tuple[list[int], list[int]]]:
    """StratifiedKFold(5, shuffle=True, random_state=0) over rows in file order, stratified on the label."""
    from sklearn.model_selection import StratifiedKFold

    y = [next(iter(r["stances"].values())) for r in rows]
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=FOLD_SEED)
    return [(list(tr), list(te)) for tr, te in skf.split(np.zeros(len(y)), y)]


def masked_target_topic(row: dict) -> dict:
    """An id-stance row as a topic record: the target is the topic, every alias of every target in the title
    and text is replaced by ``tokoh`` (so the task is to tell whom a post is about from what it says)."""
    from sikap.text import find_mentions
    from sikap.training.importers import ID_STANCE_ALIASES

    aliases = [a for al in ID_STANCE_ALIASES.values() for a in al]

    def mask(text: str | None) -> str | None:
        if not text:
            return text
        for start, end in sorted(find_mentions(text, aliases), reverse=True):
            text = text[:start] + "tokoh" + text[end:]
        return text

    target = next(iter(row["stances"]))
    return {"id": row["id"], "title": mask(row.get("title")), "text": mask(row.get("text")), "topics": [target]}


# ---------------------------------------------------------------- runs: (train rows, eval rows) pairs


@dataclass
class Run:
    name: str  # e.g. "sib200" or "id-stance-fold3"
    train: Path
    eval: Path
    eval_split: str
    results: dict = field(default_factory=dict)
    dev: Path | None = None  # an inner dev file shipped with the task (demo); else a split of train
    held_out: str | None = None  # holdout protocol: the target left out of training, added with --actor


def make_runs(task: Task, files: dict[str, Path], quick: bool) -> list[Run]:
    sub = DATA_OUT / "quick" if quick else DATA_OUT
    if task.kind == "demo":
        return [Run(task.name, files["train"], files["test"], "test", dev=files["dev"])]
    if task.kind == "id-stance-topics":  # long posts; the label is the post's politician, whose names are masked
        rows = [masked_target_topic(r) for r in read_jsonl(files["all"])]
        tr, te = cv_folds([{**r, "stances": {"t": r["topics"][0]}} for r in rows])[0]
        if quick:
            tr, te = tr[: QUICK["train"]], te[: QUICK["eval"]]
        return [Run(task.name, write_jsonl(sub / f"{task.name}-train.jsonl", [rows[i] for i in tr]),
                    write_jsonl(sub / f"{task.name}-test.jsonl", [rows[i] for i in te]), "fold 1")]
    if task.protocol == "holdout":
        rows = read_jsonl(files["all"])
        targets = sorted({t for r in rows for t in r["stances"]})
        runs = []
        for t in targets:
            tr = [r for r in rows if t not in r["stances"]]
            te = [r for r in rows if t in r["stances"]]
            if quick:
                tr, te = tr[: QUICK["cv_rows"]], te[: QUICK["eval"]]
            slug = t.lower().replace(" ", "-")
            runs.append(
                Run(
                    f"{task.name}-{slug}",
                    write_jsonl(sub / f"{task.name}-{slug}-train.jsonl", tr),
                    write_jsonl(sub / f"{task.name}-{slug}-test.jsonl", te),
                    f"unseen {t}",
                    held_out=t,
                )
            )
            if quick:
                break
        return runs
    if task.protocol == "split":
        if not quick:
            return [Run(task.name, files["train"], files[task.eval_split], task.eval_split)]
        rows_tr, rows_ev = read_jsonl(files["train"]), read_jsonl(files[task.eval_split])
        rng = random.Random(0)
        rng.shuffle(rows_tr)
        return [
            Run(
                task.name,
                write_jsonl(sub / f"{task.name}-train.jsonl", rows_tr[: QUICK["train"]]),
                write_jsonl(sub / f"{task.name}-{task.eval_split}.jsonl", rows_ev[: QUICK["eval"]]),
                task.eval_split,
            )
        ]
    rows = read_jsonl(files["all"])
    if quick:
        rows = rows[: QUICK["cv_rows"]]
    runs = []
    for k, (tr, te) in enumerate(cv_folds(rows), start=1):
        if quick and k > QUICK["folds"]:
            break
        runs.append(
            Run(
                f"{task.name}-fold{k}",
                write_jsonl(sub / f"{task.name}-fold{k}-train.jsonl", [rows[i] for i in tr]),
                write_jsonl(sub / f"{task.name}-fold{k}-test.jsonl", [rows[i] for i in te]),
                f"fold {k}",
            )
        )
    return runs


# ---------------------------------------------------------------- sikap (in a subprocess)


def score_variants(model_dir: Path, eval_path: Path, held_out: tuple[str, list[str]] | None = None) -> dict:
    """Scores of one trained model dir on the eval file, for the ablation: the saved blend, the encoder
    alone and the lexical model alone (same weights, same data). ``held_out``: (target, aliases) added
    with ``--actor`` semantics and scored alone."""
    from sikap.config import config_from_dict
    from sikap.inference.predict import Predictor
    from sikap.modeldir import add_actors, load_model_dir
    from sikap.text import article_text
    from sikap.training.data import load_records
    from sikap.training.evaluate import score_predictions
    from sikap.training.metrics import stance_metrics
    from sikap.training.trainer import predict_records

    loaded = load_model_dir(model_dir)
    if held_out:
        loaded = add_actors(loaded, [held_out])
    variants = {"blend": (loaded.lexical, loaded.meta), "encoder": (None, loaded.meta)}
    if loaded.lexical is not None:
        variants["lexical"] = (loaded.lexical, {**loaded.meta, "blend": {"topics": 0.0, "stance": 0.0}})
    out = {}
    if held_out:
        rows = read_jsonl(eval_path)
        texts = [article_text(r.get("title"), r.get("text")) for r in rows]
        gold = [[r["stances"][held_out[0]]] for r in rows]
        classes = loaded.meta["stance"]["classes"]
        for name, (lex, meta) in variants.items():
            preds = Predictor(loaded.model, loaded.builder, meta, lexical=lex).predict(texts)
            m = stance_metrics(gold, [[p.stances[-1]] for p in preds], [held_out[0]], classes)
            out[name] = {"stance": m["macro_f1"]}
        return out
    cfg = config_from_dict(loaded.meta["config"])
    records = load_records(Path(eval_path), cfg)
    for name, (lex, meta) in variants.items():
        preds = predict_records(Predictor(loaded.model, loaded.builder, meta, lexical=lex), records)
        m = score_predictions(meta, records, preds)
        out[name] = {k: m[k]["macro_f1"] for k in ("topics", "stance") if k in m}
    return out


def _child(raw: dict, overrides: list[str], eval_path: str, log_path: str, queue, held_out=None) -> None:
    """Train + score in a fresh process; send back metrics, times and this process's peak RSS."""
    log = open(log_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    try:
        from transformers.utils import logging as hf_logging

        from sikap.config import config_from_dict
        from sikap.training.evaluate import evaluate_model_dir
        from sikap.training.trainer import train

        hf_logging.set_verbosity_warning()
        start = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_SELF)
        cfg = config_from_dict(raw, overrides)
        print(f"overrides: {overrides}")
        res = train(cfg, progress=False, log=print)
        setup_and_train = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        train_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        metrics = None
        if not held_out:  # the `sikap evaluate` path
            metrics = evaluate_model_dir(cfg.output_dir, Path(eval_path), cfg.output_dir / "eval", progress=False)
        variants = score_variants(cfg.output_dir, Path(eval_path), held_out)
        print(f"variants: {variants}")
        usage = resource.getrusage(resource.RUSAGE_SELF)
        meta = json.loads((cfg.output_dir / "sikap.json").read_text(encoding="utf-8"))
        queue.put(
            {
                "ok": True,
                "train_seconds": res.train_seconds,
                "setup_and_train_seconds": setup_and_train,
                "total_seconds": time.perf_counter() - start,
                "steps": res.steps,
                "n_train": res.n_train,
                "n_dev": res.n_dev,
                "inner_dev_score": res.dev_metrics.get("score"),
                "metrics": metrics,
                "variants": variants,
                "blend": {k: v for k, v in (meta.get("blend") or {}).items() if k in ("topics", "stance")},
                "peak_rss_mb": usage.ru_maxrss / 1024,
                "setup_and_train_cpu_seconds": train_cpu,
                "process_cpu_seconds": usage.ru_utime + usage.ru_stime,
                "torch_threads": __import__("torch").get_num_threads(),
            }
        )
    except BaseException as e:  # report the failure to the parent instead of hanging it
        traceback.print_exc()
        queue.put({"ok": False, "error": f"{type(e).__name__}: {e}"})
    finally:
        log.flush()


def run_sikap(raw: dict, overrides: list[str], eval_path: Path, log_path: Path, held_out=None) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("", encoding="utf-8")
    proc = ctx.Process(target=_child, args=(raw, overrides, str(eval_path), str(log_path), queue, held_out))
    start = time.perf_counter()
    proc.start()
    out = None
    while out is None:
        try:
            out = queue.get(timeout=5)
        except Exception:  # queue.Empty: check the child is alive
            if not proc.is_alive():
                out = {"ok": False, "error": f"training process exited with code {proc.exitcode}; see {log_path}"}
    proc.join()
    out["wall_seconds"] = time.perf_counter() - start
    out["load_average_after"] = os.getloadavg()  # (1, 5, 15 min): other work on the machine
    return out


def main_head(task: Task) -> str:
    """The head a task is scored on (demo: stance; its topics are reported beside)."""
    return "topics" if task.kind in ("sib200", "indonlu-smsa", "id-stance-topics") else "stance"


# ---------------------------------------------------------------- baseline


def _tfidf():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion(
        [
            ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=1, lowercase=True)),
            (
                "char",
                TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, lowercase=True),
            ),
        ]
    )


BASELINE_C = (0.1, 0.3, 1.0, 3.0)


def _fit_svc(x, y):
    """LinearSVC (balanced class weights) with C picked by 3-fold CV macro-F1 on the training part only."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.svm import LinearSVC

    classes, counts = np.unique(y, return_counts=True)
    if len(classes) == 1:
        return _Constant(classes[0]), None
    svc = LinearSVC(class_weight="balanced", max_iter=5000)
    n_cv = int(min(3, counts.min()))
    if n_cv < 2:
        return svc.set_params(C=1.0).fit(x, y), 1.0
    grid = GridSearchCV(
        svc,
        {"C": list(BASELINE_C)},
        scoring="f1_macro",
        cv=StratifiedKFold(n_cv, shuffle=True, random_state=0),
        n_jobs=1,
    )
    grid.fit(x, y)
    return grid.best_estimator_, grid.best_params_["C"]


class _Constant:
    def __init__(self, label):
        self.label = label

    def predict(self, x):
        return np.array([self.label] * x.shape[0])


def run_baseline(task: Task, train_path: Path, eval_path: Path, held_out: str | None = None) -> dict:
    """TF-IDF + LinearSVC on the same split, scored with sikap's metric functions.

    Topics: one classifier over the first topic (single-label data) or one per topic (multi-label
    data, e.g. the demo). Stance: one classifier per actor; ``held_out``: one classifier on the
    pooled labels of the other targets, applied to the unseen one."""
    from sikap.text import article_text
    from sikap.training.metrics import stance_metrics, topic_metrics

    start = time.perf_counter()
    tr, ev = read_jsonl(train_path), read_jsonl(eval_path)
    text = lambda r: article_text(r.get("title"), r.get("text"))  # noqa: E731
    vec = _tfidf()
    x_tr = vec.fit_transform([text(r) for r in tr])
    x_ev = vec.transform([text(r) for r in ev])
    chosen_c, scores = {}, {}
    if any(r.get("topics") for r in tr):
        names = sorted({t for r in tr for t in r["topics"]} | {t for r in ev for t in r.get("topics", [])})
        y_true = np.array([[float(n in r["topics"]) for n in names] for r in ev])
        if any(len(r["topics"]) > 1 for r in tr):  # multi-label: one binary classifier per topic
            y_pred = np.zeros_like(y_true)
            for j, n in enumerate(names):
                clf, chosen_c[n] = _fit_svc(x_tr, np.array([int(n in r["topics"]) for r in tr]))
                y_pred[:, j] = clf.predict(x_ev)
        else:
            clf, chosen_c["topics"] = _fit_svc(x_tr, np.array([r["topics"][0] for r in tr]))
            pred = clf.predict(x_ev)
            y_pred = np.array([[float(n == p) for n in names] for p in pred])
        scores["topics"] = topic_metrics(y_true, y_pred, names)["macro_f1"]
    if any(r.get("stances") for r in tr):
        classes = [c for c in ("favor", "against", "neutral") if any(c in r["stances"].values() for r in tr + ev)]
        if held_out:
            clf, chosen_c["pooled"] = _fit_svc(x_tr, np.array([next(iter(r["stances"].values())) for r in tr]))
            pred_rows = [[str(p)] for p in clf.predict(x_ev)]
            gold_rows = [[r["stances"][held_out]] for r in ev]
            scores["stance"] = stance_metrics(gold_rows, pred_rows, [held_out], classes)["macro_f1"]
        else:
            actors = sorted({a for r in tr + ev for a in r["stances"]})
            pred_rows = [["not_mentioned"] * len(actors) for _ in ev]
            for k, actor in enumerate(actors):
                idx = [i for i, r in enumerate(tr) if actor in r["stances"]]
                if not idx:
                    continue
                clf, chosen_c[actor] = _fit_svc(x_tr[idx], np.array([tr[i]["stances"][actor] for i in idx]))
                for i, p in enumerate(clf.predict(x_ev)):
                    pred_rows[i][k] = str(p)
            gold_rows = [[r["stances"].get(a) for a in actors] for r in ev]
            scores["stance"] = stance_metrics(gold_rows, pred_rows, actors, classes)["macro_f1"]
    return {"score": scores[main_head(task)], "scores": scores, "seconds": time.perf_counter() - start, "C": chosen_c}


# ---------------------------------------------------------------- report


def fmt_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def machine_line() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from sikap.inference.predict import cpu_supports_bf16

    return (
        f"{cpu}; {os.cpu_count()} CPUs visible, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"bf16 {'native' if cpu_supports_bf16() else 'not native'}; python {platform.python_version()}"
    )


def _seed_means(runs: list[Run], seeds: list[int], head: str, variant: str = "blend") -> list[float]:
    """Per seed, the task's score (the mean over folds / held-out targets) for one head and variant."""
    out = []
    for seed in seeds:
        xs = [
            r.results["seeds"][seed]["variants"].get(variant, {}).get(head)
            for r in runs
            if r.results["seeds"].get(seed, {}).get("ok")
        ]
        if xs and len(xs) == len(runs) and all(x is not None for x in xs):
            out.append(statistics.mean(xs))
    return out


def summarize(task: Task, runs: list[Run], seeds: list[int]) -> dict:
    outs = [r.results["seeds"][s] for r in runs for s in seeds if s in r.results.get("seeds", {})]
    ok = bool(outs) and all(o.get("ok") for o in outs)
    heads = ["stance", "topics"] if task.kind == "demo" else [main_head(task)]
    summary = {
        "task": task.name,
        "ok": ok,
        "seeds": seeds,
        "heads": heads,
        "ours": {h: _seed_means(runs, seeds, h) for h in heads} if ok else {},
        "variants": {v: {h: _seed_means(runs, seeds, h, v) for h in heads} for v in ("encoder", "lexical")}
        if ok
        else {},
        "baseline": {h: statistics.mean(r.results["baseline"]["scores"][h] for r in runs) for h in heads},
        "train_seconds": sum(o.get("train_seconds", 0) for o in outs) / max(len(seeds), 1),
        "cpu_seconds": sum(o.get("setup_and_train_cpu_seconds", 0) for o in outs) / max(len(seeds), 1),
        "peak_rss_mb": max((o.get("peak_rss_mb", 0) for o in outs), default=0),
        "errors": [o.get("error") for o in outs if not o.get("ok")],
    }
    if ok and len(runs) > 1:  # per fold / target: mean over seeds against the baseline
        per = []
        for r in runs:
            ours = statistics.mean(r.results["seeds"][s]["variants"]["blend"][heads[0]] for s in seeds)
            per.append(
                {
                    "run": r.eval_split,
                    "ours": ours,
                    "baseline": r.results["baseline"]["scores"][heads[0]],
                    "blend": [r.results["seeds"][s].get("blend") for s in seeds],
                }
            )
        summary["per_run"] = per
        summary["runs_above_baseline"] = sum(p["ours"] > p["baseline"] for p in per)
    return summary


def mean_spread(xs: list[float], missing: str = "failed") -> str:
    """``mean (min–max)`` over seeds."""
    if not xs:
        return missing
    if len(xs) == 1:
        return f"{xs[0]:.3f}"
    return f"{statistics.mean(xs):.3f} ({min(xs):.3f}–{max(xs):.3f}, spread {max(xs) - min(xs):.3f})"


def table(summaries: list[dict], quick: bool, skipped: bool = False) -> str:
    lines = [
        "| task | split | sikap macro-F1, mean over seeds (min–max) | encoder alone | lexical alone "
        "| TF-IDF + LinearSVC | goal | met | training time per seed (wall) | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        task = TASKS[s["task"]]
        split = {"split": f"train → {task.eval_split}", "cv": f"{N_FOLDS}-fold CV", "holdout": "each target held out"}[
            task.protocol
        ]
        if quick:
            split += " (quick subset)"
        for h in s["heads"]:
            ours = s["ours"].get(h, [])
            goal = task.target if h == "stance" or task.kind != "demo" else 0.85
            met = "yes" if ours and statistics.mean(ours) >= goal else ("—" if quick or skipped else "no")
            t = fmt_time(s["train_seconds"]) if ours else "—"
            rss = f"{s['peak_rss_mb'] / 1024:.2f} GiB" if ours else "—"
            enc = mean_spread(s["variants"].get("encoder", {}).get(h, []), "—")
            lex = mean_spread(s["variants"].get("lexical", {}).get(h, []), "—")
            name = f"{task.title} ({h})" if len(s["heads"]) > 1 else task.title
            lines.append(
                f"| {name} | {split} | {mean_spread(ours, 'skipped' if skipped else 'failed')} | {enc} | {lex} | "
                f"{s['baseline'][h]:.3f} | ≥ {goal:.2f} | {met} | {t} | {rss} |"
            )
    return "\n".join(lines)


def fold_table(s: dict) -> str:
    lines = [
        "| fold / target | sikap (mean over seeds) | baseline | above | encoder share of the blend (topics, stance) "
        "per seed |",
        "|---|---|---|---|---|",
    ]
    for p in s.get("per_run", []):
        shares = ", ".join(f"{b.get('topics', 1.0):.1f}/{b.get('stance', 1.0):.1f}" if b else "—" for b in p["blend"])
        lines.append(
            f"| {p['run']} | {p['ours']:.3f} | {p['baseline']:.3f} | "
            f"{'yes' if p['ours'] > p['baseline'] else 'no'} | {shares} |"
        )
    lines.append(f"\nabove the baseline on {s.get('runs_above_baseline', 0)} of {len(s.get('per_run', []))}")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def default_data_root() -> Path:
    env = os.environ.get("SIKAP_DATA_ROOT")
    return Path(env) if env else REPO.parent / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data-root",
        type=Path,
        default=default_data_root(),
        help="folder laid out like shared/data (default: $SIKAP_DATA_ROOT, else ../shared/data)",
    )
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {','.join(TASKS)}")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK['train']} train / {QUICK['eval']} eval records "
        f"(id-stance: first {QUICK['cv_rows']} rows, fold 1 only), 1 epoch",
    )
    p.add_argument("--configs", type=Path, default=REPO / "configs", help="folder with <task>.yaml")
    p.add_argument(
        "--runs-dir",
        type=Path,
        default=REPO / "runs" / "benchmarks",
        help="model dirs and training logs go to RUNS_DIR/<task>[-foldK] (--quick: RUNS_DIR/quick/...)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="dotted config override for every task, e.g. train.epochs=3 (repeatable)",
    )
    p.add_argument("--no-sikap", action="store_true", help="baseline only")
    p.add_argument(
        "--seeds", default="13,1,2", help="training seeds; every figure is the mean over them (default 13,1,2)"
    )
    p.add_argument("--json", type=Path, default=None, help="also write all results to this JSON file")
    args = p.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        p.error(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    root = args.data_root.expanduser().resolve()
    if not root.is_dir():
        p.error(f"--data-root {root} is not a folder (set --data-root or $SIKAP_DATA_ROOT)")

    log = lambda msg: print(msg, flush=True)  # noqa: E731
    log(f"machine: {machine_line()}")
    log(f"data root: {root}")
    summaries, all_runs = [], {}
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    for name in names:
        task = TASKS[name]
        log(f"\n== {task.title} ({name})")
        cfg_path = args.configs / f"{CONFIG_OF.get(name, name)}.yaml"
        raw = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
        files = import_task(task, root, log)
        runs = make_runs(task, files, args.quick)
        for run in runs:
            run.results["baseline"] = run_baseline(task, run.train, run.eval, run.held_out)
            b = run.results["baseline"]
            log(f"  {run.name}: baseline macro-F1 {b['scores']} ({b['seconds']:.0f}s)")
            run.results["seeds"] = {}
            if args.no_sikap:
                continue
            run_raw, held = raw, None
            if run.held_out:  # train without the target; add it back at prediction time (classify --actor)
                actors = raw["labels"]["stance"]["actors"]
                spec = next(a for a in actors if a["name"] == run.held_out)
                held = (spec["name"], list(spec.get("aliases", [])))
                run_raw = {
                    **raw,
                    "labels": {
                        **raw["labels"],
                        "stance": {
                            **raw["labels"]["stance"],
                            "actors": [a for a in actors if a["name"] != run.held_out],
                        },
                    },
                }
            for seed in seeds:
                out_dir = args.runs_dir / ("quick" if args.quick else "") / f"{run.name}-s{seed}"
                dev = f"data.dev={run.dev}" if run.dev else "data.dev=null"
                overrides = [
                    f"data.train={run.train}",
                    dev,
                    f"data.test={run.eval}",
                    f"output_dir={out_dir}",
                    f"train.seed={seed}",
                ]
                overrides += (QUICK_OVERRIDES if args.quick else []) + args.overrides
                o = run_sikap(run_raw, overrides, run.eval, out_dir.parent / f"{run.name}-s{seed}.log", held)
                run.results["seeds"][seed] = o
                if o["ok"]:
                    log(
                        f"  {run.name} seed {seed}: {o['variants']} (blend {o['blend']}; inner dev "
                        f"{o['inner_dev_score']:.3f}; training {fmt_time(o['train_seconds'])}, {o['steps']} steps; "
                        f"peak RSS {o['peak_rss_mb']:.0f} MB; load {o['load_average_after'][1]:.1f})"
                    )
                else:
                    log(f"  {run.name} seed {seed}: sikap FAILED: {o['error']}")
        summaries.append(summarize(task, runs, seeds))
        all_runs[name] = runs
        log("\n" + table(summaries[-1:], args.quick, args.no_sikap))
        if len(runs) > 1 and not args.no_sikap:
            log("\n" + fold_table(summaries[-1]))

    log("\n" + table(summaries, args.quick, args.no_sikap))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "machine": machine_line(),
            "argv": sys.argv,
            "quick": args.quick,
            "summaries": summaries,
            "runs": {
                n: [{"name": r.name, "train": str(r.train), "eval": str(r.eval), **r.results} for r in rs]
                for n, rs in all_runs.items()
            },
        }
        args.json.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return 0 if all(s["ok"] for s in summaries) or args.no_sikap else 1


if __name__ == "__main__":
    sys.exit(main())
