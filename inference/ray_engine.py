"""`sikap classify --engine ray`: the same records as the local engine, predicted on a Ray cluster.

The driver walks the input (:func:`iter_sources`, the local engine's walk) and lists the files
as a Ray Dataset; in ``map_batches`` a fixed pool of actors, each holding one model, reads them
(:func:`read_source`, the local readers), drops the ids an earlier run already wrote, and
predicts. Ray Data keeps the order (``preserve_order``), so the driver appends the records
batch by batch in input order, exactly as the local engine does: the output is the same file,
``--resume`` works the same way, and a killed driver loses at most the batches in flight.
Actors and tasks that die are restarted and retried by Ray.

On a cluster, the input folder and the model directory must be readable at the same path on
every node (a shared filesystem), and sikap must be installed there; the output is written by
the driver. Ray is optional (``pip install "sikap[ray]"``) and imported only here.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sikap.inference.classify import ClassifySummary, CsvWriter, JsonlWriter, OutputTarget, _append
from sikap.inference.readers import ArticleInput, ScanStats, iter_sources, read_source

INSTALL_HINT = 'the ray engine needs Ray Data: pip install "sikap[ray]" (or pip install "ray[data]")'


DEFAULT_THREADS = 4  # torch threads per CPU worker when neither --workers nor --threads is given


class RayEngineError(RuntimeError):
    """Ray is missing or the cluster cannot run the job; the message says what to do."""


def require_ray():
    """The ``ray`` module, or RayEngineError with the install command."""
    try:
        import ray
        import ray.data  # noqa: F401  (the data extra: pandas, pyarrow, fsspec)
    except ImportError as e:
        raise RayEngineError(f"{INSTALL_HINT} ({e})") from None
    return ray


@dataclass
class RaySummary(ClassifySummary):
    workers: int = 0
    threads: int = 0  # torch threads per worker
    gpus: float = 0.0  # per worker
    precision: str = ""


@dataclass(frozen=True)
class Plan:
    """How many actors, with how many threads and GPUs each."""

    workers: int
    threads: int
    gpus: float


def plan_workers(cpus: float, gpus: float, workers: int | None, threads: int | None) -> Plan:
    """Actor pool size and per-actor threads from the cluster's CPUs and GPUs.

    GPU cluster: one actor per GPU by default. CPU: ``workers * threads`` fills the CPUs;
    ``--workers`` alone splits the CPUs between the workers, ``--threads`` alone sets how many
    workers fit, and neither gives workers of up to ``DEFAULT_THREADS`` threads (one model copy
    per 4 cores, not one per core, keeps memory in check on a big machine).
    """
    cpus = max(1, int(cpus))
    if gpus >= 1:
        n = workers or int(gpus)
        return Plan(n, threads or max(1, cpus // n), 1.0 if n <= gpus else gpus / n)
    if workers is None:
        t = threads or min(DEFAULT_THREADS, cpus)
        return Plan(max(1, cpus // t), t, 0.0)
    return Plan(workers, threads or max(1, cpus // workers), 0.0)


class _Classify:
    """One model per actor (Ray Data constructs it once per actor): reads listed files, predicts, yields records.

    Reading sits in the actor so a file's articles never travel twice; as in the local engine, a
    thread reads and tokenizes the next batch while the model runs, and a JSONL file of a million
    lines streams through in batches of ``batch_articles``.
    """

    def __init__(self, job: _Job, threads: int, device: str, done_ref: list):
        import ray
        import torch

        from sikap.modeldir import add_actors, load_model_dir
        from sikap.predict import Predictor

        torch.set_num_threads(threads)
        loaded = add_actors(load_model_dir(job.model_dir, allow_pickle=job.allow_pickle), job.actors)
        self.predictor = Predictor(
            loaded.model.to(device),
            loaded.builder,
            loaded.meta,
            batch_size=job.batch_size,
            precision=job.precision,
            device=device,
            lexical=loaded.lexical,
            min_confidence=job.min_confidence,
            evidence=job.evidence,
        )
        self.done = ray.get(done_ref[0]) if done_ref else frozenset()  # ids an earlier run wrote (resume)
        self.reader_options, self.batch_articles = job.reader_options, job.batch_articles

    def _articles(self, items) -> Iterator[ArticleInput]:
        for b in items:
            item = pickle.loads(b)
            arts = [item] if isinstance(item, ArticleInput) else read_source(item, **self.reader_options)
            yield from (a for a in arts if a.id not in self.done)

    def __call__(self, batch: dict) -> Iterator[dict]:
        import numpy as np

        from sikap.inference.classify import batched, classify_batch, prefetch, prepare_batch

        p = self.predictor
        articles = self._articles(batch["item"])
        for prepared in prefetch(prepare_batch(b, p) for b in batched(articles, self.batch_articles)):
            records = classify_batch(prepared, p)
            yield {"item": np.array([pickle.dumps(r) for r in records], dtype=object)}


class _Labels:
    """What the writers need to know of a model: topic names, actors (trained + added), classes."""

    def __init__(self, meta: dict, actors: list[tuple[str, list[str]]], evidence: bool = False):
        self.evidence = evidence  # the CSV writer adds the evidence columns
        topics, stance = meta.get("topics"), meta.get("stance")
        self.topic_names = topics["names"] if topics else []
        self.classes = stance["classes"] if stance else []
        self.actors = [a["name"] for a in stance["actors"]] + [n for n, _ in actors] if stance else []


def start_ray(address: str | None, *, cpus: int | None = None):
    """Join ``address`` (``auto``, ``ray://HOST:10001``) or start a local instance; returns (ray, started)."""
    ray = require_ray()
    if ray.is_initialized():
        return ray, False
    try:
        if address:
            ray.init(address=address, logging_level="warning")
        else:  # a private instance for this run: no dashboard, no notes about cluster security
            ray.init(num_cpus=cpus or os.cpu_count() or 1, include_dashboard=False, logging_level="error")
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise RayEngineError(f"cannot start or join {where}: {e}") from None
    return ray, True


def classify_folder_ray(
    model_dir: Path,
    inputs: Path,
    target: OutputTarget,
    *,
    meta: dict,
    actors: list[tuple[str, list[str]]] | None = None,
    allow_pickle: bool = False,
    batch_size: int = 16,
    batch_articles: int = 32,
    precision: str = "auto",
    reader_options: dict | None = None,
    address: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    min_confidence: float | None = None,
    evidence: bool = True,
    on_progress=None,
) -> RaySummary:
    """Classify every article under ``inputs`` into the locked, checked ``target`` on Ray.

    ``meta``: the model's checked ``sikap.json`` (the driver never loads the weights). A local
    Ray instance started here is shut down at the end; a joined cluster is left running.
    """
    actors = actors or []
    with target:
        local_cpus = None
        if not address:
            local_cpus = os.cpu_count() or 1
            if workers and threads:
                local_cpus = max(local_cpus, workers * threads)  # logical CPUs: --workers 2 on one core
            elif workers:
                local_cpus = max(local_cpus, workers)
        ray, started = start_ray(address, cpus=local_cpus)
        job = _Job(
            str(model_dir),
            Path(inputs),
            meta,
            actors,
            allow_pickle,
            batch_size,
            batch_articles,
            precision,
            reader_options or {},
            workers,
            threads,
            min_confidence,
            evidence,
        )
        try:
            return _run(ray, target, job, on_progress)
        finally:
            if started:
                ray.shutdown()


@dataclass(frozen=True)
class _Job:
    model_dir: str
    inputs: Path
    meta: dict
    actors: list
    allow_pickle: bool
    batch_size: int
    batch_articles: int
    precision: str
    reader_options: dict
    workers: int | None
    threads: int | None
    min_confidence: float | None = None
    evidence: bool = True


def _run(ray, target: OutputTarget, job: _Job, on_progress) -> RaySummary:
    resources = ray.cluster_resources()
    plan = plan_workers(resources.get("CPU", 1), resources.get("GPU", 0), job.workers, job.threads)
    device = "cuda" if plan.gpus else "cpu"
    labels = _Labels(job.meta, job.actors, job.evidence)
    writer = (CsvWriter if target.fmt == "csv" else JsonlWriter)(target.path, labels)
    if target.done:
        writer.check_compatible(target.existing)
    summary = RaySummary(
        output=target.path,
        resumed=len(target.done),
        workers=plan.workers,
        threads=plan.threads,
        gpus=plan.gpus,
        precision=job.precision,
    )
    start = time.perf_counter()
    stats = ScanStats()
    listing = [{"item": pickle.dumps(s)} for s in iter_sources(job.inputs, stats=stats, exclude=target.exclude)]
    summary.skipped = dict(stats.skipped)
    if not listing:
        summary.seconds = time.perf_counter() - start
        return summary

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # not a line per dataset start and finish
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "bars disabled": the CLI has one
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # records come back in input order
    ctx.enable_progress_bars = False  # the CLI shows its own
    done_ref = [ray.put(frozenset(target.done))] if target.done else []  # shipped once, not per batch
    # many small blocks: the pool stays busy to the end and the driver writes as results come
    blocks = min(len(listing), max(4 * plan.workers, len(listing) // (4 * job.batch_articles)))
    ds = ray.data.from_items(listing, override_num_blocks=blocks)
    ds = ds.map_batches(
        _Classify,
        batch_size=job.batch_articles,  # listed sources per call (a JSONL file yields many batches)
        fn_constructor_args=(job, plan.threads, device, done_ref),
        compute=ray.data.ActorPoolStrategy(size=plan.workers),  # a fixed pool, one model load per actor
        num_cpus=plan.threads if not plan.gpus else 1,
        num_gpus=plan.gpus or None,
    )
    for batch in ds.iter_batches(batch_size=job.batch_articles, batch_format="numpy", prefetch_batches=1):
        records = [pickle.loads(b) for b in batch["item"]]
        _append(target.path, writer.format(records))
        n_err = sum(r["error"] is not None for r in records)
        summary.errors += n_err
        summary.predicted += len(records) - n_err
        summary.articles += len(records)
        if on_progress:
            on_progress(len(records))
    summary.seconds = time.perf_counter() - start
    return summary
