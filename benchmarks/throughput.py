"""Batch-classification throughput on CPU: `sikap classify` against a plain transformers pipeline.

    python benchmarks/throughput.py --model-dir runs/demo --data-root ../shared/data --n 200 --runs 3

Builds a folder of N articles with realistic lengths (id-stance blog bodies from
``--data-root``, or the demo corpus stitched into 300-1,500-word articles when it is absent),
then times, each in its own process (so peak RSS is per variant), interleaved over ``--runs``:

- baseline: ``pipeline("text-classification")`` over the same fine-tuned encoder and topic head
  exported as an ordinary sequence-classification model, fp32, truncation to the first 512
  tokens, batch size 8, topics only;
- sikap classify variants: the defaults (whole articles, topics + stance for every actor) and
  the levers (fp32, bf16, int8, ...).

Prints medians of articles/s, tokens/s and peak RSS, the ratio to the baseline, and the
encoder's achieved FLOP/s against a matmul peak measured in the same process and dtype.

``--model-dir`` may be a seed ensemble (``sikap ensemble``): sikap then runs every member (tokens and
FLOPs counted over all of them) while the baseline exports the first member only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# articles run once before timing in every worker: oneDNN builds kernels per new shape on first use,
# a one-off cost that an overnight run amortises but a short benchmark would be dominated by
WARMUP = 8


# ---------------------------------------------------------------- corpus


def article_bodies(data_root: Path | None) -> list[str]:
    """Long real bodies (id-stance) when available, else demo articles stitched to 300-1,500 words."""
    csv_path = data_root / "id-stance" / "dataset_stance_2_label_2018_building_by_rini.csv" if data_root else None
    if csv_path and csv_path.is_file():
        from sikap.training.importers import import_dataset

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "s.jsonl"
            import_dataset("id-stance", csv_path, out)
            return [json.loads(line)["text"] for line in out.read_text(encoding="utf-8").splitlines()]
    rng = random.Random(0)
    demo = short_bodies()
    bodies = []
    for _ in range(300):
        target, words = rng.randint(300, 1500), []
        while len(words) < target:
            words += rng.choice(demo).split()
        bodies.append(" ".join(words[:target]))
    return bodies


def short_bodies() -> list[str]:
    """The demo corpus's own short articles (about 100-250 words), for a folder of mixed lengths."""
    return [
        json.loads(x)["text"]
        for f in ("train", "dev", "test")
        for x in (REPO / "examples" / "demo" / f"{f}.jsonl").read_text(encoding="utf-8").splitlines()
    ]


def build_folder(folder: Path, n: int, bodies: list[str], short: list[str] | None = None) -> None:
    """N .txt articles (title line + body), cycling through the bodies with a varied title.

    With ``short``, every other file in reading order is a short article instead (mixed lengths).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sub = folder / f"batch{i % 10}"
        sub.mkdir(exist_ok=True)
        body = short[i % len(short)] if short and (i // 10) % 2 else bodies[i % len(bodies)]
        (sub / f"artikel-{i:06d}.txt").write_text(f"Artikel {i}\n{body}", encoding="utf-8")


# ---------------------------------------------------------------- baseline export


def export_sequence_classifier(model_dir: Path, out: Path) -> Path:
    """The fine-tuned encoder + topic head as an ordinary AutoModelForSequenceClassification directory.

    The topic head becomes ``classifier``; the pooler is the backbone's (CLS + dense + tanh), not
    sikap's mean pooling, so its outputs differ: this model is a speed baseline only.
    """
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from sikap.modeldir import read_meta

    meta = read_meta(model_dir)
    names = meta["topics"]["names"]
    config = AutoConfig.from_pretrained(
        model_dir, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}
    )
    model = AutoModelForSequenceClassification.from_config(config)
    state = {k: v.float() for k, v in load_file(str(model_dir / "model.safetensors")).items()}
    prefix = model.base_model_prefix  # "bert" / "roberta"
    mapped = {f"{prefix}.{k[len('encoder.') :]}": v for k, v in state.items() if k.startswith("encoder.")}
    mapped["classifier.weight"], mapped["classifier.bias"] = state["topic_head.weight"], state["topic_head.bias"]
    missing, _ = model.load_state_dict(mapped, strict=False)
    assert all("pooler" in m for m in missing), missing
    model.save_pretrained(out)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out


# ---------------------------------------------------------------- workers (one process each)


def peak_rss_mb() -> float:
    """Peak RSS of this process (VmHWM: ru_maxrss would carry over the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_baseline(args) -> dict:
    from transformers import AutoTokenizer, pipeline

    files = sorted(Path(args.folder).rglob("*.txt"))
    tok = AutoTokenizer.from_pretrained(args.export)
    clf = pipeline("text-classification", model=args.export, tokenizer=tok, device=-1, top_k=None)
    warm = [f.read_text(encoding="utf-8") for f in files[:WARMUP]]
    clf(warm, batch_size=8, truncation=True, max_length=512)  # first-call costs, as for sikap below
    start = time.perf_counter()
    texts = [f.read_text(encoding="utf-8") for f in files]
    out = clf(texts, batch_size=8, truncation=True, max_length=512)
    seconds = time.perf_counter() - start
    tokens = sum(min(512, len(ids)) for ids in tok(texts, truncation=True, max_length=512)["input_ids"])
    assert len(out) == len(files)
    return {"articles": len(files), "seconds": seconds, "tokens": tokens, "rss_mb": peak_rss_mb()}


def worker_sikap(args) -> dict:
    import torch

    from sikap.inference.classify import classify_folder
    from sikap.inference.predict import Predictor
    from sikap.modeldir import load_model_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = json.loads(args.variant_json)
    loaded = load_model_dir(args.model_dir)
    from sikap.precision import choose_precision

    # as classify decides: bf16 where native, else int8 when the model's recorded dev check allows it
    chosen = choose_precision(loaded.meta, overrides.get("precision", "auto"))
    predictor = Predictor(
        loaded.model,
        loaded.builder,
        loaded.meta,
        batch_size=overrides.get("batch_size", 16),
        precision=chosen.precision,
        sort_by_length=overrides.get("sort", True),
        lexical=None if overrides.get("no_lexical") else loaded.lexical,
        evidence=not overrides.get("no_evidence"),  # classify's default: evidence on
    )
    from sikap.text import article_text

    warm = sorted(Path(args.folder).rglob("*.txt"))[:WARMUP]
    predictor.predict([article_text("", f.read_text(encoding="utf-8")) for f in warm])  # kernel set-up
    encoded = {"tokens": 0, "windows": 0, "flops": 0.0}
    _count_encoder_work(predictor, encoded)
    out = Path(args.out)
    start = time.perf_counter()
    summary = classify_folder(
        predictor, Path(args.folder), out, overwrite=True, batch_articles=overrides.get("batch_articles", 32)
    )
    seconds = time.perf_counter() - start
    n = sum(1 for _ in out.open(encoding="utf-8"))
    return {
        "articles": n,
        "errors": summary.errors,
        "seconds": seconds,
        "tokens": encoded["tokens"],
        "windows": encoded["windows"],
        "flops": encoded["flops"],
        "rss_mb": peak_rss_mb(),
        "precision": predictor.precision,
        "peak_flops": matmul_peak(predictor.precision),
    }


def _count_encoder_work(predictor, acc: dict) -> None:
    """Wrap the encoder (each member's, for a seed ensemble) to count real tokens and forward FLOPs."""
    from sikap.ensemble import member_models

    for member in member_models(predictor.model):
        _count_one_encoder(member.encoder, acc)


def _count_one_encoder(enc, acc: dict) -> None:
    cfg = enc.config
    d, layers, ff = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size
    original = enc.forward

    def counted(*a, **kw):
        mask = kw.get("attention_mask")
        n_tok = int(mask.sum())
        lens = mask.sum(1).tolist()
        # per layer: QKV + output projections 8*d^2, FFN 4*d*ff per token; attention 4*d*L per token
        acc["flops"] += layers * (n_tok * (8 * d * d + 4 * d * ff) + sum(4 * d * x * x for x in lens))
        acc["tokens"] += n_tok
        acc["windows"] += mask.shape[0]
        return original(*a, **kw)

    enc.forward = counted


def matmul_peak(precision: str, n: int = 1024, reps: int = 20) -> float:
    """Achieved FLOP/s of a square matmul in the dtype the encoder runs in (int8 measured as fp32)."""
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start)


# ---------------------------------------------------------------- driver


# --isa avx2: every worker (baseline included) restricted to AVX2 kernels, as on an AVX2-only CPU
ISA_ENV = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}
WORKER_ENV: dict[str, str] = {}


def cpu_line() -> str:
    """The CPU model, its relevant flags, and the kernels torch uses in a worker (restriction included)."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    probe = "import torch; from sikap.predict import cpu_supports_bf16 as b; "
    probe += "print(torch.backends.cpu.get_cpu_capability(), b())"
    env = {**os.environ, **WORKER_ENV}
    cap = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env).stdout.split()
    kernels = f"torch kernels {cap[0]}, native bf16 {cap[1]}" if len(cap) == 2 else "torch kernels unknown"
    restricted = f" (restricted: {', '.join(f'{k}={v}' for k, v in WORKER_ENV.items())})" if WORKER_ENV else ""
    return f"CPU: {model}, {os.cpu_count()} logical CPUs, flags {' '.join(wanted)}; {kernels}{restricted}"


def run_worker(kind: str, extra: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "true", **WORKER_ENV}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, default=REPO / "runs" / "demo")
    ap.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--variants",
        default="default,fp32,int8",
        help="sikap variants: default, fp32, bf16, int8, unsorted, batch32, threads1, noevidence",
    )
    ap.add_argument("--mixed", action="store_true", help="every other article short (a demo article)")
    ap.add_argument("--scale", type=int, default=0, help="also run the default on N*SCALE files (memory growth)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument(
        "--isa", choices=["native", "avx2"], default="native", help="avx2: restrict every worker to AVX2 kernels"
    )
    ap.add_argument(
        "--student", type=Path, default=None, help="a distilled model dir: variants student, student-int8 use it"
    )
    # worker-only arguments
    ap.add_argument("--worker", choices=["baseline", "sikap"])
    ap.add_argument("--folder"), ap.add_argument("--export"), ap.add_argument("--out")
    ap.add_argument("--variant-json", default="{}"), ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    WORKER_ENV.update(ISA_ENV.get(args.isa, {}))
    if args.worker:
        print(json.dumps(worker_baseline(args) if args.worker == "baseline" else worker_sikap(args)))
        return
    drive(args)


VARIANTS = {
    "default": {},
    "fp32": {"precision": "fp32"},
    "bf16": {"precision": "bf16"},
    "int8": {"precision": "int8"},
    "unsorted": {"sort": False},
    "batch32": {"batch_size": 32},
    "threads1": {},
    "noevidence": {"no_evidence": True},  # what the evidence passages cost (classify --no-evidence)
    "student": {},  # --student DIR as the model dir, classify's defaults
    "student-int8": {"precision": "int8"},
}


def drive(args) -> None:
    work = args.work or Path(tempfile.mkdtemp(prefix="sikap-throughput-"))
    folder = work / "articles"
    if not folder.exists():
        bodies = article_bodies(args.data_root if args.data_root.exists() else None)
        build_folder(folder, args.n, bodies, short_bodies() if args.mixed else None)
    export = work / "baseline-model"
    if not export.exists():
        export_sequence_classifier(args.model_dir, export)
    names = [v for v in args.variants.split(",") if v]
    if any(v.startswith("student") for v in names) and args.student is None:
        raise SystemExit("the student variants need --student DIR (a model dir from `sikap distill`)")
    print(cpu_line(), file=sys.stderr)
    results: dict[str, list[dict]] = {"baseline": [], **{v: [] for v in names}}
    for r in range(args.runs):  # interleaved, so machine noise hits every variant alike
        results["baseline"].append(run_worker("baseline", ["--folder", str(folder), "--export", str(export)]))
        for v in names:
            extra = [
                "--folder",
                str(folder),
                "--model-dir",
                str(args.student if v.startswith("student") else args.model_dir),
                "--out",
                str(work / f"{v}.jsonl"),
                "--variant-json",
                json.dumps(VARIANTS.get(v, {})),
            ]
            if v == "threads1":
                extra += ["--threads", "1"]
            results[v].append(run_worker("sikap", extra))
        print(f"run {r + 1}/{args.runs} done", file=sys.stderr)
    if args.scale:
        big = work / f"articles-x{args.scale}"
        if not big.exists():
            build_folder(big, args.n * args.scale, article_bodies(args.data_root if args.data_root.exists() else None))
        results[f"default x{args.scale} files"] = [
            run_worker(
                "sikap", ["--folder", str(big), "--model-dir", str(args.model_dir), "--out", str(work / "big.jsonl")]
            )
        ]
    report(results, args)


def report(results: dict[str, list[dict]], args) -> None:
    base = statistics.median(x["articles"] / x["seconds"] for x in results["baseline"])
    rows = []
    for name, runs in results.items():
        aps = statistics.median(x["articles"] / x["seconds"] for x in runs)
        tps = statistics.median(x["tokens"] / x["seconds"] for x in runs)
        rss = statistics.median(x["rss_mb"] for x in runs)
        flops = ""
        if "flops" in runs[0]:
            achieved = statistics.median(x["flops"] / x["seconds"] for x in runs)
            peak = statistics.median(x["peak_flops"] for x in runs)
            share = 100 * achieved / peak
            flops = f"{achieved / 1e9:.1f} GFLOP/s = {share:.0f}% of {peak / 1e9:.0f} ({runs[0]['precision']})"
        rows.append((name, runs[0]["articles"], f"{aps:.2f}", f"{tps:.0f}", f"{rss:.0f}", f"{aps / base:.2f}x", flops))
    header = ("variant", "articles", "articles/s", "tokens/s", "peak RSS MB", "ratio", "encoder FLOP/s vs matmul peak")
    print(f"\nmedians over {args.runs} runs, model {args.model_dir} ({WARMUP} warm-up articles not timed)")
    print(cpu_line() + (f"; student {args.student}" if args.student else ""))
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


if __name__ == "__main__":
    main()
