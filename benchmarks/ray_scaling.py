"""Classify throughput of the local engine against the Ray engine with 1, 2, ... workers.

    python benchmarks/ray_scaling.py --model-dir runs/demo --inputs examples/unlabeled --workers 1 2

Each variant classifies the whole folder into a fresh output, in its own process (a fresh Ray
instance each time), one after the other: ``local`` (torch's default threads), ``local x1``
(one thread) and ``ray N x T`` (N actors of T threads each on a local Ray instance). Each
variant also runs once on a folder of one article: that is its fixed cost (imports, Ray start,
model loads), and the rate is the other articles over the other time,
``(N - 1) / (T_all - T_one)`` (Ray hands results back in blocks, so timing from the first
record would not do). It prints both, the rate per core, and what the best per-core rate means
for ``--estimate`` articles on machines of ``--cores`` cores.
All outputs are checked to hold the same ids in the same order as the local one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = r"""
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
engine, model_dir, inputs, out, workers, threads, precision = sys.argv[1:8]
from sikap.inference.classify import open_output
from sikap.modelmeta import check_model_dir
meta = check_model_dir(Path(model_dir))
target = open_output(Path(inputs), Path(out), overwrite=True)
if engine == "ray":
    from sikap.inference.ray_engine import classify_folder_ray
    s = classify_folder_ray(Path(model_dir), Path(inputs), target, meta=meta, workers=int(workers),
                            threads=int(threads), precision=precision)
else:
    import torch
    from sikap.inference.classify import classify_folder
    from sikap.modeldir import load_model_dir
    from sikap.predict import Predictor
    if int(threads):
        torch.set_num_threads(int(threads))
    m = load_model_dir(model_dir)
    p = Predictor(m.model, m.builder, m.meta, precision=precision, lexical=m.lexical)
    s = classify_folder(p, Path(inputs), Path(out), target=target)
print(json.dumps({"articles": s.articles, "seconds": time.perf_counter() - t0}))
"""


def run_variant(
    engine: str, model_dir: Path, inputs: Path, out: Path, workers: int, threads: int, precision: str
) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN,
            engine,
            str(model_dir),
            str(inputs),
            str(out),
            str(workers),
            str(threads),
            precision,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        sys.exit(f"{engine} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall"] = time.perf_counter() - start
    return res


def one_article_folder(inputs: Path, folder: Path) -> Path:
    """A folder holding the first readable article of ``inputs`` (for the fixed cost of a run)."""
    from sikap.inference.readers import iter_articles

    art = next(a for a in iter_articles(inputs) if a.error is None)
    folder.mkdir()
    (folder / "one.txt").write_text(f"{art.title}\n{art.text}", encoding="utf-8")
    return folder


def ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, required=True)
    ap.add_argument("--inputs", type=Path, required=True, help="a folder of articles")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray pool sizes to time")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per Ray worker (and for 'local x1')")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "int8"])
    ap.add_argument("--estimate", type=float, default=10e6, help="articles for the on-paper estimate")
    ap.add_argument("--cores", type=int, nargs="+", default=[16, 64], help="cores per machine for the estimate")
    ap.add_argument("--machines", type=int, nargs="+", default=[1, 10])
    args = ap.parse_args()

    variants = [("local", 0, 0), ("local", 0, args.threads)] + [("ray", n, args.threads) for n in args.workers]
    rows, ref = [], None
    with tempfile.TemporaryDirectory() as tmp:
        one = one_article_folder(args.inputs, Path(tmp) / "one")
        for engine, workers, threads in variants:
            out = Path(tmp) / f"{engine}-{workers}-{threads}.jsonl"
            fixed = run_variant(engine, args.model_dir, one, out, workers, threads, args.precision)["seconds"]
            r = run_variant(engine, args.model_dir, args.inputs, out, workers, threads, args.precision)
            r["fixed"] = fixed
            # nan when the one-article run took longer (noise larger than the work: use a bigger folder)
            r["rate"] = (r["articles"] - 1) / (r["seconds"] - fixed) if r["seconds"] > fixed else float("nan")
            got = ids(out)
            ref = ref if ref is not None else got
            if got != ref:
                sys.exit(f"{engine} {workers}x{threads}: other records or order than the local engine")
            cores = workers * threads if engine == "ray" else (threads or os.cpu_count())
            name = f"ray {workers} x {threads}" if engine == "ray" else f"local x{threads}" if threads else "local"
            rows.append((name, cores, r))
            print(f"done: {name}", file=sys.stderr)

    print(f"\n{len(ref)} records from {args.inputs}, precision {args.precision}, {os.cpu_count()} CPUs here\n")
    print("| variant | cores | wall s (all) | fixed s (one article) | articles/s | per core |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, cores, r in rows:
        print(f"| {name} | {cores} | {r['wall']:.1f} | {r['fixed']:.1f} | {r['rate']:.1f} | {r['rate'] / cores:.2f} |")
    rates = [r["rate"] / cores for name, cores, r in rows if name.startswith("ray") and r["rate"] == r["rate"]]
    if not rates:
        print("\nThe fixed costs varied more than the work took: classify a larger folder (or a real-size model).")
        return
    per_core = max(rates)
    core_hours = args.estimate / per_core / 3600
    print(
        f"\nOn paper, at {per_core:.2f} articles/s per core (best Ray variant, fixed cost left out): "
        f"{args.estimate:,.0f} articles = {core_hours:,.0f} core-hours"
    )
    for cores in args.cores:
        for machines in args.machines:
            print(f"- {machines} machine(s) x {cores} cores: {core_hours / (cores * machines):,.1f} h")


if __name__ == "__main__":
    main()
