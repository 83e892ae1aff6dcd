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
        Task("sib200", "SIB-200 ind topics", "sib200",
             {"train": "sib-200-ind/train.tsv", "dev": "sib-200-ind/dev.tsv"}, 0.85, eval_split="dev"),
        Task("id-stance", "id-stance", "id-stance", {"all": "id-stance/*.csv"}, 0.78, protocol="cv"),
        Task("casa", "CASA aspect sentiment", "indonlu-absa",
             {"train": "indonlu/casa_absa-prosa/train_preprocess.csv",
              "valid": "indonlu/casa_absa-prosa/valid_preprocess.csv"}, 0.90, eval_split="valid"),
        Task("hoasa", "HoASA aspect sentiment", "indonlu-absa",
             {"train": "indonlu/hoasa_absa-airy/train_preprocess.csv",
              "valid": "indonlu/hoasa_absa-airy/valid_preprocess.csv"}, 0.88, eval_split="valid"),
    )
}
N_FOLDS = 5
FOLD_SEED = 0
QUICK = {"train": 48, "eval": 24, "cv_rows": 40, "folds": 1}
QUICK_OVERRIDES = ["train.epochs=1", "train.patience=0"]


# ---------------------------------------------------------------- data


def find_file(root: Path, pattern: str) -> Path:
    hits = sorted(root.glob(pattern))
    if not hits:
        raise SystemExit(f"error: {root / pattern} not found; point --data-root (or $SIKAP_DATA_ROOT) at a folder "
                         "laid out like shared/data")
    return hits[0]


def import_task(task: Task, root: Path, log) -> dict[str, Path]:
    """Import the task's raw files into ``benchmarks/data/<task>-<split>.jsonl``."""
    from sikap.training.importers import import_dataset

    out = {}
    for split, pattern in task.files.items():
        src = find_file(root, pattern)
        dst = DATA_OUT / (f"{task.name}.jsonl" if split == "all" else f"{task.name}-{split}.jsonl")
        rep = import_dataset(task.kind, src, dst)
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


# ---------------------------------------------------------------- runs: (train rows, eval rows) pairs


@dataclass
class Run:
    name: str  # e.g. "sib200" or "id-stance-fold3"
    train: Path
    eval: Path
    eval_split: str
    results: dict = field(default_factory=dict)


def make_runs(task: Task, files: dict[str, Path], quick: bool) -> list[Run]:
    sub = DATA_OUT / "quick" if quick else DATA_OUT
    if task.protocol == "split":
        if not quick:
            return [Run(task.name, files["train"], files[task.eval_split], task.eval_split)]
        rows_tr, rows_ev = read_jsonl(files["train"]), read_jsonl(files[task.eval_split])
        rng = random.Random(0)
        rng.shuffle(rows_tr)
        return [Run(task.name, write_jsonl(sub / f"{task.name}-train.jsonl", rows_tr[: QUICK["train"]]),
                    write_jsonl(sub / f"{task.name}-{task.eval_split}.jsonl", rows_ev[: QUICK["eval"]]),
                    task.eval_split)]
    rows = read_jsonl(files["all"])
    if quick:
        rows = rows[: QUICK["cv_rows"]]
    runs = []
    for k, (tr, te) in enumerate(cv_folds(rows), start=1):
        if quick and k > QUICK["folds"]:
            break
        runs.append(Run(f"{task.name}-fold{k}",
                        write_jsonl(sub / f"{task.name}-fold{k}-train.jsonl", [rows[i] for i in tr]),
                        write_jsonl(sub / f"{task.name}-fold{k}-test.jsonl", [rows[i] for i in te]),
                        f"fold {k}"))
    return runs


# ---------------------------------------------------------------- sikap (in a subprocess)


def _child(raw: dict, overrides: list[str], eval_path: str, log_path: str, queue) -> None:
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
        metrics = evaluate_model_dir(cfg.output_dir, Path(eval_path), cfg.output_dir / "eval", progress=False)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        queue.put({
            "ok": True,
            "train_seconds": res.train_seconds,
            "setup_and_train_seconds": setup_and_train,
            "total_seconds": time.perf_counter() - start,
            "steps": res.steps,
            "n_train": res.n_train,
            "n_dev": res.n_dev,
            "inner_dev_score": res.dev_metrics.get("score"),
            "metrics": metrics,
            "peak_rss_mb": usage.ru_maxrss / 1024,
            "setup_and_train_cpu_seconds": train_cpu,
            "process_cpu_seconds": usage.ru_utime + usage.ru_stime,
            "torch_threads": __import__("torch").get_num_threads(),
        })
    except BaseException as e:  # report the failure to the parent instead of hanging it
        traceback.print_exc()
        queue.put({"ok": False, "error": f"{type(e).__name__}: {e}"})
    finally:
        log.flush()


def run_sikap(raw: dict, overrides: list[str], eval_path: Path, log_path: Path) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("", encoding="utf-8")
    proc = ctx.Process(target=_child, args=(raw, overrides, str(eval_path), str(log_path), queue))
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


def sikap_score(task: Task, metrics: dict) -> float:
    return metrics["topics"]["macro_f1"] if task.kind in ("sib200", "indonlu-smsa") else metrics["stance"]["macro_f1"]


# ---------------------------------------------------------------- baseline


def _tfidf():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion([
        ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=1, lowercase=True)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, lowercase=True)),
    ])


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
    grid = GridSearchCV(svc, {"C": list(BASELINE_C)}, scoring="f1_macro",
                        cv=StratifiedKFold(n_cv, shuffle=True, random_state=0), n_jobs=1)
    grid.fit(x, y)
    return grid.best_estimator_, grid.best_params_["C"]


class _Constant:
    def __init__(self, label):
        self.label = label

    def predict(self, x):
        return np.array([self.label] * x.shape[0])


def run_baseline(task: Task, train_path: Path, eval_path: Path) -> dict:
    """TF-IDF + LinearSVC on the same split, scored with sikap's metric functions."""
    from sikap.text import article_text
    from sikap.training.metrics import stance_metrics, topic_metrics

    start = time.perf_counter()
    tr, ev = read_jsonl(train_path), read_jsonl(eval_path)
    text = lambda r: article_text(r.get("title"), r.get("text"))  # noqa: E731
    vec = _tfidf()
    x_tr = vec.fit_transform([text(r) for r in tr])
    x_ev = vec.transform([text(r) for r in ev])
    chosen_c = {}
    if any(r.get("topics") for r in tr):
        names = sorted({t for r in tr for t in r["topics"]} | {t for r in ev for t in r.get("topics", [])})
        clf, chosen_c["topics"] = _fit_svc(x_tr, np.array([r["topics"][0] for r in tr]))
        pred = clf.predict(x_ev)
        y_true = np.array([[float(n in r["topics"]) for n in names] for r in ev])
        y_pred = np.array([[float(n == p) for n in names] for p in pred])
        score = topic_metrics(y_true, y_pred, names)["macro_f1"]
    else:
        actors = sorted({a for r in tr + ev for a in r["stances"]})
        classes = [c for c in ("favor", "against", "neutral") if any(c in r["stances"].values() for r in tr + ev)]
        pred_rows = [["not_mentioned"] * len(actors) for _ in ev]
        for k, actor in enumerate(actors):
            idx = [i for i, r in enumerate(tr) if actor in r["stances"]]
            if not idx:
                continue
            clf, chosen_c[actor] = _fit_svc(x_tr[idx], np.array([tr[i]["stances"][actor] for i in idx]))
            for i, p in enumerate(clf.predict(x_ev)):
                pred_rows[i][k] = str(p)
        gold_rows = [[r["stances"].get(a) for a in actors] for r in ev]
        score = stance_metrics(gold_rows, pred_rows, actors, classes)["macro_f1"]
    return {"score": score, "seconds": time.perf_counter() - start, "C": chosen_c}


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

    return (f"{cpu}; {os.cpu_count()} CPUs visible, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"bf16 {'native' if cpu_supports_bf16() else 'not native'}; python {platform.python_version()}")


def summarize(task: Task, runs: list[Run]) -> dict:
    ours = [r.results["sikap"] for r in runs]
    ok = all(o.get("ok") for o in ours)
    ours_scores = [r.results["sikap_score"] for r in runs] if ok else []
    base_scores = [r.results["baseline"]["score"] for r in runs]
    return {
        "task": task.name,
        "ok": ok,
        "ours": ours_scores,
        "baseline": base_scores,
        "train_seconds": sum(o.get("train_seconds", 0) for o in ours),
        "wall_seconds": sum(o.get("wall_seconds", 0) for o in ours),
        "cpu_seconds": sum(o.get("setup_and_train_cpu_seconds", 0) for o in ours),
        "peak_rss_mb": max((o.get("peak_rss_mb", 0) for o in ours), default=0),
        "baseline_seconds": sum(r.results["baseline"]["seconds"] for r in runs),
        "errors": [o.get("error") for o in ours if not o.get("ok")],
    }


def mean_std(xs: list[float], missing: str = "failed") -> str:
    if not xs:
        return missing
    if len(xs) == 1:
        return f"{xs[0]:.3f}"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}"


def table(summaries: list[dict], quick: bool, skipped: bool = False) -> str:
    lines = [
        "| task | split | sikap macro-F1 | TF-IDF + LinearSVC | target | met | sikap training time (wall) "
        "| training CPU time | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        task = TASKS[s["task"]]
        split = {"split": f"train → {task.eval_split}", "cv": f"{N_FOLDS}-fold CV"}[task.protocol]
        if quick:
            split += " (quick subset)"
        ours = statistics.mean(s["ours"]) if s["ours"] else float("nan")
        met = "yes" if s["ours"] and ours >= task.target else ("—" if quick or skipped else "no")
        t, cpu, rss = "—", "—", "—"
        if s["ours"]:
            t, cpu, rss = fmt_time(s["train_seconds"]), fmt_time(s["cpu_seconds"]), f"{s['peak_rss_mb'] / 1024:.2f} GiB"
            if task.protocol == "cv" and len(s["ours"]) > 1:
                n = len(s["ours"])
                t += f" ({n} folds, {fmt_time(s['train_seconds'] / n)} per fold)"
                cpu += f" ({fmt_time(s['cpu_seconds'] / n)} per fold)"
        lines.append(
            f"| {task.title} | {split} | {mean_std(s['ours'], 'skipped' if skipped else 'failed')} | "
            f"{mean_std(s['baseline'])} | ≥ {task.target:.2f} | {met} | {t} | {cpu} | {rss} |"
        )
    return "\n".join(lines)


def fold_table(task: Task, runs: list[Run]) -> str:
    lines = ["| fold | train / inner dev / test | sikap macro-F1 | baseline macro-F1 | training time | steps |",
             "|---|---|---|---|---|---|"]
    for r in runs:
        o = r.results["sikap"]
        n_test = len(read_jsonl(r.eval))
        lines.append(f"| {r.eval_split} | {o.get('n_train', '?')} / {o.get('n_dev', '?')} / {n_test} | "
                     f"{r.results.get('sikap_score', float('nan')):.3f} | {r.results['baseline']['score']:.3f} | "
                     f"{fmt_time(o.get('train_seconds', 0))} | {o.get('steps', '?')} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def default_data_root() -> Path:
    env = os.environ.get("SIKAP_DATA_ROOT")
    return Path(env) if env else REPO.parent / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=default_data_root(),
                   help="folder laid out like shared/data (default: $SIKAP_DATA_ROOT, else ../shared/data)")
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {','.join(TASKS)}")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: {QUICK['train']} train / {QUICK['eval']} eval records "
                        f"(id-stance: first {QUICK['cv_rows']} rows, fold 1 only), 1 epoch")
    p.add_argument("--configs", type=Path, default=REPO / "configs", help="folder with <task>.yaml")
    p.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "benchmarks",
                   help="model dirs and training logs go to RUNS_DIR/<task>[-foldK] (--quick: RUNS_DIR/quick/...)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   help="dotted config override for every task, e.g. train.epochs=3 (repeatable)")
    p.add_argument("--no-sikap", action="store_true", help="baseline only")
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
    for name in names:
        task = TASKS[name]
        log(f"\n== {task.title} ({name})")
        cfg_path = args.configs / f"{name}.yaml"
        raw = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
        files = import_task(task, root, log)
        runs = make_runs(task, files, args.quick)
        for run in runs:
            run.results["baseline"] = run_baseline(task, run.train, run.eval)
            b = run.results["baseline"]
            log(f"  {run.name}: baseline macro-F1 {b['score']:.3f} ({b['seconds']:.0f}s, C={b['C']})")
            if args.no_sikap:
                run.results["sikap"] = {"ok": False, "error": "skipped (--no-sikap)"}
                continue
            out_dir = args.runs_dir / ("quick" if args.quick else "") / run.name
            overrides = [f"data.train={run.train}", "data.dev=null", f"data.test={run.eval}", f"output_dir={out_dir}"]
            overrides += (QUICK_OVERRIDES if args.quick else []) + args.overrides
            o = run_sikap(raw, overrides, run.eval, out_dir.parent / f"{run.name}.log")
            run.results["sikap"] = o
            if o["ok"]:
                run.results["sikap_score"] = sikap_score(task, o["metrics"])
                log(f"  {run.name}: sikap macro-F1 {run.results['sikap_score']:.3f} "
                    f"(inner dev {o['inner_dev_score']:.3f}; training {fmt_time(o['train_seconds'])}, "
                    f"{o['steps']} steps, CPU {fmt_time(o['setup_and_train_cpu_seconds'])}; process wall "
                    f"{fmt_time(o['wall_seconds'])}, peak RSS {o['peak_rss_mb']:.0f} MB; "
                    f"5-min load average after {o['load_average_after'][1]:.1f})")
            else:
                log(f"  {run.name}: sikap FAILED: {o['error']} (log: {out_dir.parent / (run.name + '.log')})")
        summaries.append(summarize(task, runs))
        all_runs[name] = runs

    log("\n" + table(summaries, args.quick, args.no_sikap))
    for name, runs in all_runs.items():
        if TASKS[name].protocol == "cv" and not args.no_sikap:
            log(f"\n{TASKS[name].title} per fold:\n\n" + fold_table(TASKS[name], runs))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "machine": machine_line(), "argv": sys.argv, "quick": args.quick, "summaries": summaries,
            "runs": {n: [{"name": r.name, "train": str(r.train), "eval": str(r.eval), **r.results} for r in rs]
                     for n, rs in all_runs.items()},
        }
        args.json.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return 0 if all(s["ok"] for s in summaries) or args.no_sikap else 1


if __name__ == "__main__":
    sys.exit(main())
