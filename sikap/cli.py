"""The `sikap` command line: thin typer commands over plain functions.

Heavy imports (torch, transformers) happen inside commands so ``sikap --help`` is instant.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sikap import __version__
from sikap.inference.dates import DATE_FIELDS, Period

app = typer.Typer(
    help="Fine-tune IndoBERT-family encoders on labeled Indonesian news and batch-classify topics and "
    "stance toward actors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _mount_subapps() -> None:
    from sikap.cli_backbone import app as backbone_app
    from sikap.cli_data import app as data_app

    app.add_typer(backbone_app, name="backbone", help="Build and inspect the offline pretrained backbone.")
    app.add_typer(data_app, name="data", help="Import public Indonesian datasets as sikap records.")


class OutputFormat(str, Enum):
    jsonl = "jsonl"
    csv = "csv"


class Engine(str, Enum):
    local = "local"
    ray = "ray"


class PrecisionChoice(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    int8 = "int8"


def fail(message: str, code: int = 1):
    err_console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


@app.callback(invoke_without_command=True)
def main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        console.print(f"sikap {__version__}")
        raise typer.Exit()


# ---------------------------------------------------------------- train


@app.command()
def train(
    config: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="YAML training config.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Dotted override applied before validation, e.g. train.epochs=2 (repeatable)."),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in output_dir.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
) -> None:
    """Fine-tune a model from CONFIG and save a self-contained model directory."""
    from sikap.config import ConfigError, load_config
    from sikap.training.data import DataError, check_data_files

    try:
        cfg = load_config(config, set_)
        check_data_files(cfg)  # every problem of every data file at once, before the backbone loads
    except (ConfigError, DataError) as e:
        fail(str(e))
    from sikap.training.trainer import train as run_train

    try:
        result = run_train(cfg, resume=resume, progress=progress, log=lambda m: console.print(escape(m)))
    except (DataError, FileNotFoundError, ValueError) as e:
        fail(str(e))
    except OSError as e:  # e.g. a hub id with no network: say what to do instead
        fail(
            f"{e}\nIf the Hugging Face Hub is unreachable, set model.backbone to a local model directory or "
            "to offline:multilingual-e5-small"
        )
    from sikap.training.distributed import is_main

    if not is_main():  # torchrun/accelerate: rank 0 reports
        return
    console.print(metrics_table(result.dev_metrics, title=f"dev scores ({result.n_dev} records)"))
    console.print(
        f"trained {result.steps} steps on {result.n_train} records in {result.train_seconds:.0f} s; "
        f"model saved to [bold]{escape(str(result.output_dir))}[/bold]"
    )


# ---------------------------------------------------------------- distill


@app.command()
def distill(
    teacher_dir: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="The model directory to distill (`sikap train`).")
    ],
    unlabeled: Annotated[
        Path, typer.Option(exists=True, help="Articles to learn the teacher's predictions on: a folder or a file.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", file_okay=False, help="Student model directory.")],
    layers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Student encoder layers (default: a third of the teacher's; as many as the teacher for a "
            "same-size student of a seed ensemble).",
        ),
    ] = None,
    train_data: Annotated[
        Path | None,
        typer.Option("--train", exists=True, dir_okay=False, help="Labeled records to add (hard-label loss too)."),
    ] = None,
    dev: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Labeled dev records (default: the teacher's dev data if unchanged, else held-out articles "
            "labeled by the teacher).",
        ),
    ] = None,
    temperature: Annotated[float, typer.Option(min=0.1, help="Softening temperature of the teacher's logits.")] = 2.0,
    hard_weight: Annotated[float, typer.Option(min=0.0, help="Weight of the hard-label loss on --train.")] = 0.5,
    augment: Annotated[
        int,
        typer.Option(
            min=0,
            help="Add this many synthetic articles, each two training articles stitched together, labeled by "
            "the teacher (more to learn from when unlabeled articles are few).",
        ),
    ] = 0,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Dotted override of the teacher's training config, e.g. train.epochs=3."),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
) -> None:
    """Train a smaller, faster student on TEACHER_DIR's soft predictions; the student is a model directory."""
    from sikap.config import ConfigError
    from sikap.inference.readers import iter_articles
    from sikap.modeldir import ModelDirError
    from sikap.training.data import DataError
    from sikap.training.distill import distill as run_distill

    try:
        result = run_distill(
            teacher_dir,
            unlabeled,
            output,
            layers=layers,
            train=train_data,
            dev=dev,
            temperature=temperature,
            hard_weight=hard_weight,
            augment=augment,
            overrides=set_,
            read_articles=iter_articles,
            progress=progress,
            log=lambda m: console.print(escape(m)),
        )
    except (ConfigError, DataError, ModelDirError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    title = f"student dev scores ({result.n_dev} records: {result.dev_source})"
    console.print(metrics_table(result.dev_metrics, title=title))
    console.print(
        f"distilled {result.teacher_layers} -> {len(result.student_layers)} layers in {result.steps} steps on "
        f"{result.n_unlabeled} unlabeled + {result.n_labeled} labeled articles ({result.train_seconds:.0f} s); "
        f"student saved to [bold]{escape(str(result.output_dir))}[/bold]"
    )


# ---------------------------------------------------------------- evaluate


@app.command()
def ensemble(
    members: Annotated[
        list[Path],
        typer.Argument(
            exists=True, file_okay=False, help="2 to 5 model dirs trained with the same config but different seeds."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", file_okay=False, help="Ensemble model directory.")],
) -> None:
    """Pack seed-varied model dirs into one model dir that averages their logits (3 members: 3x the cost)."""
    from sikap.modeldir import ModelDirError
    from sikap.training.data import DataError
    from sikap.training.ensemble import pack_ensemble

    try:
        meta = pack_ensemble(members, output, log=lambda m: console.print(escape(m)))
    except (ModelDirError, DataError, OSError) as e:
        fail(str(e))
    for i, m in enumerate(meta["ensemble"]["members"]):
        scores = ", ".join(f"{h} {v:.3f}" for h, v in m["dev_metrics"].items() if v is not None)
        console.print(escape(f"member {i}: {m['source']} (seed {m['seed']}): dev macro-F1 {scores or 'n/a'}"))
    if meta.get("dev_metrics"):
        console.print(metrics_table(meta["dev_metrics"], title="ensemble dev scores"))
    console.print(f"ensemble of {len(members)} saved to [bold]{escape(str(output))}[/bold]")


@app.command()
def evaluate(
    model_dir: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="A model directory from `sikap train`.")
    ],
    data: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Labeled records (JSONL, CSV, Parquet).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder for metrics.json and report.md [default: MODEL_DIR/eval]."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per forward pass.")] = 16,
    precision: Annotated[PrecisionChoice, typer.Option(help="Inference precision.")] = PrecisionChoice.auto,
) -> None:
    """Score MODEL_DIR on labeled DATA: per-label tables, macro/micro F1, F_avg, confusion matrices."""
    from sikap.modeldir import ModelDirError
    from sikap.training.data import DataError
    from sikap.training.evaluate import evaluate_model_dir

    try:
        metrics = evaluate_model_dir(model_dir, data, out, batch_size=batch_size, precision=precision.value)
    except (ModelDirError, DataError) as e:
        fail(str(e))
    console.print(metrics_table(metrics, title=f"{data} ({metrics['data']['records']} records)"))
    folder = out or model_dir / "eval"
    console.print(f"wrote {escape(str(folder))}/metrics.json, report.md, report.html and figures")


def metrics_table(metrics: dict, title: str) -> Table:
    """Per-label rows for topics and stance classes, plus headline scores."""
    table = Table(title=title)
    for col in ("task", "label", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="left" if col in ("task", "label") else "right")
    if "topics" in metrics:
        t = metrics["topics"]
        for name, v in t["per_label"].items():
            table.add_row(
                "topic", name, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", str(v["support"])
            )
        table.add_row(
            "topic", "[b]macro / micro F1[/b]", "", "", f"{t['macro_f1']:.3f} / {t['micro_f1']:.3f}", str(t["n"])
        )
    if "stance" in metrics:
        s = metrics["stance"]
        for name, v in s["per_class"].items():
            table.add_row(
                "stance", name, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", str(v["support"])
            )
        for actor, v in s["per_actor"].items():
            table.add_row("stance", f"{actor} macro-F1", "", "", f"{v['macro_f1']:.3f}", str(v["n"]))
        fa = f" (F_avg {s['f_avg']:.3f})" if "f_avg" in s else ""
        table.add_row("stance", f"[b]macro-F1{fa}[/b]", "", "", f"{s['macro_f1']:.3f}", str(s["n"]))
    return table


# ---------------------------------------------------------------- classify


@app.command()
def classify(
    model_dir: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="A model directory from `sikap train`.")
    ],
    inputs: Annotated[
        Path, typer.Argument(exists=True, help="A folder (searched recursively) or one file of articles.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", dir_okay=False, help="Output file.")] = Path(
        "predictions.jsonl"
    ),
    fmt: Annotated[
        OutputFormat | None, typer.Option("--format", help="Output format [default: from the suffix].")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Complete an interrupted OUTPUT without duplicates.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing OUTPUT.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per forward pass.")] = 16,
    batch_articles: Annotated[int, typer.Option(min=1, help="Articles per written batch.")] = 32,
    precision: Annotated[
        PrecisionChoice,
        typer.Option(
            help="auto: bf16 where the CPU runs it natively, else int8 if the model's training-time dev check "
            "found it within 0.01 macro-F1 of fp32, else fp32; int8: dynamic quantization."
        ),
    ] = PrecisionChoice.auto,
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads for torch, per worker with --engine ray (default: torch's).")
    ] = None,
    text_field: Annotated[str, typer.Option(help="Text field in .json/.jsonl articles.")] = "text",
    title_field: Annotated[str, typer.Option(help="Title field in .json/.jsonl articles.")] = "title",
    max_bytes: Annotated[int, typer.Option(min=1, help="Read at most this many bytes per file (flagged).")] = 5_000_000,
    date_field: Annotated[
        str | None,
        typer.Option(help="Publication-date field in .json/.jsonl articles [default: date, published, tanggal]."),
    ] = None,
    keep_field: Annotated[
        list[str] | None,
        typer.Option(help="Copy this .json/.jsonl field (e.g. outlet) into each record's 'fields' (repeatable)."),
    ] = None,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Allow a pickle checkpoint (unsafe).")] = False,
    actor: Annotated[
        list[str] | None,
        typer.Option(
            "--actor",
            help="Also score stance toward an actor the model was not trained on, for this run: "
            "'NAME=alias1,alias2' (repeatable; 'NAME' alone: no aliases, present in every text).",
        ),
    ] = None,
    min_confidence: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Label a stance, or a single-label topic, 'uncertain' when its top calibrated probability is "
            "under P (probabilities kept), to route it to a person; multi-label topics are unaffected.",
            metavar="P",
        ),
    ] = None,
    evidence: Annotated[
        bool,
        typer.Option(
            "--evidence/--no-evidence",
            help="Record the passage behind each predicted topic and stance (offsets and a snippet).",
        ),
    ] = True,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    engine: Annotated[
        Engine, typer.Option(help="local: this process; ray: an actor pool on Ray (needs the ray extra of sikap).")
    ] = Engine.local,
    address: Annotated[
        str | None,
        typer.Option(help="--engine ray: join this cluster, 'auto' or 'ray://HOST:10001' (default: a local one)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="--engine ray: predictor actors (default: one per GPU, else CPUs / 4 threads)."),
    ] = None,
) -> None:
    """Classify every article under INPUTS: exactly one output record (prediction or error) per article."""
    if engine is Engine.ray:
        from sikap.inference.ray_engine import RayEngineError, require_ray

        try:
            require_ray()
        except RayEngineError as e:
            fail(str(e))
    import torch

    from sikap.calibration import check_uncertain_label
    from sikap.inference.classify import OutputError, check_inputs, classify_folder, open_output
    from sikap.modeldir import ModelDirError, add_actors, check_added_actors, load_model_dir, parse_actor_spec
    from sikap.modelmeta import check_model_dir
    from sikap.precision import choose_precision
    from sikap.predict import Predictor

    if resume and overwrite:
        fail("--resume and --overwrite exclude each other")
    try:
        added = [parse_actor_spec(a) for a in actor or []]
    except ValueError as e:
        fail(str(e))
    if threads and engine is Engine.local:
        torch.set_num_threads(threads)
    fmt = fmt or (OutputFormat.csv if output.suffix.lower() == ".csv" else OutputFormat.jsonl)
    try:  # the user's mistakes first, in a second: model files, input, output (locked from here on)
        meta = check_model_dir(model_dir, allow_pickle=allow_pickle)
        check_added_actors(meta, added)
        if min_confidence is not None:
            check_uncertain_label(meta)
        check_inputs(inputs)
        target = open_output(inputs, output, fmt=fmt.value, resume=resume, overwrite=overwrite)
    except (ModelDirError, OutputError) as e:
        fail(str(e))
    reader_options = {"text_field": text_field, "title_field": title_field, "max_bytes": max_bytes}
    reader_options |= _date_options(date_field, keep_field)
    chosen = choose_precision(meta, precision.value)
    if precision is PrecisionChoice.auto:
        console.print(f"precision: {chosen.precision} ({escape(chosen.reason)})")
    if engine is Engine.ray:
        from sikap.inference.ray_engine import classify_folder_ray

        opts = dict(meta=meta, actors=added, allow_pickle=allow_pickle, batch_size=batch_size, address=address,
                    batch_articles=batch_articles, precision=chosen.precision, reader_options=reader_options,
                    workers=workers, threads=threads, min_confidence=min_confidence, evidence=evidence)
        try:
            summary = _run_with_progress(
                progress, lambda tick: classify_folder_ray(model_dir, inputs, target, on_progress=tick, **opts)
            )
        except (OutputError, RayEngineError) as e:
            fail(str(e))
        workers_txt = f"{summary.workers} Ray workers x {summary.threads} threads" + (" + GPU" if summary.gpus else "")
        return _print_summary(summary, output, f"{workers_txt}, precision {summary.precision}")
    try:
        loaded = add_actors(load_model_dir(model_dir, allow_pickle=allow_pickle), added)
    except ModelDirError as e:
        target.close()
        fail(str(e))
    predictor = Predictor(
        loaded.model,
        loaded.builder,
        loaded.meta,
        batch_size=batch_size,
        precision=chosen.precision,
        lexical=loaded.lexical,
        min_confidence=min_confidence,
        evidence=evidence,
    )
    try:
        summary = _run_with_progress(
            progress,
            lambda tick: classify_folder(
                predictor,
                inputs,
                output,
                fmt=fmt.value,
                resume=resume,
                overwrite=overwrite,
                batch_articles=batch_articles,
                reader_options=reader_options,
                on_progress=tick,
                target=target,
            ),
        )
    except OutputError as e:
        fail(str(e))
    _print_summary(summary, output, f"precision {predictor.precision}")


def _print_summary(summary, output: Path, how: str) -> None:
    skipped = sum(summary.skipped.values())
    skipped_txt = f", {skipped} non-article files skipped ({_fmt_counts(summary.skipped)})" if skipped else ""
    resumed = f", {summary.resumed} already done" if summary.resumed else ""
    console.print(
        f"{summary.articles} articles ({summary.predicted} classified, {summary.errors} errors{resumed}){skipped_txt} "
        f"in {summary.seconds:.1f} s ({summary.rate:.2f} articles/s, {how}); "
        f"predictions in [bold]{escape(str(output))}[/bold]"
    )


def _date_options(date_field: str | None, keep_field: list[str] | None) -> dict:
    return {"date_fields": (date_field,) if date_field else DATE_FIELDS, "keep_fields": tuple(keep_field or ())}


def _run_with_progress(enabled: bool, fn):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = [SpinnerColumn(), TextColumn("classifying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err_console, disable=not enabled or not sys.stderr.isatty()) as bar:
        task = bar.add_task("classify", total=None)
        return fn(lambda n: bar.advance(task, n))


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k or '(none)'}: {v}" for k, v in sorted(counts.items()))


# ---------------------------------------------------------------- demo


@app.command()
def demo(
    config: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Training config.")] = Path(
        "configs/demo.yaml"
    ),
    inputs: Annotated[Path, typer.Option(exists=True, help="Articles to classify.")] = Path("examples/unlabeled"),
    output: Annotated[Path | None, typer.Option(help="[default: OUTPUT_DIR/predictions.jsonl]")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Dotted config override (repeatable).")] = None,
) -> None:
    """The main job in one go: train CONFIG, score its test set, classify INPUTS, print where results are."""
    from sikap.config import ConfigError, load_config

    try:
        cfg = load_config(config, set_)
    except ConfigError as e:
        fail(str(e))
    train(config, set_, resume=False, progress=True)
    if cfg.data.test is not None and cfg.data.test.is_file():
        evaluate(cfg.output_dir, cfg.data.test, None, 16, PrecisionChoice.auto)
    output = output or cfg.output_dir / "predictions.jsonl"
    classify(
        cfg.output_dir,
        inputs,
        output=output,
        fmt=None,
        resume=False,
        overwrite=True,
        batch_size=16,
        batch_articles=32,
        precision=PrecisionChoice.auto,
        threads=None,
        text_field="text",
        title_field="title",
        max_bytes=5_000_000,
        date_field=None,
        keep_field=None,
        allow_pickle=False,
        actor=None,
        min_confidence=None,
        progress=True,
    )
    summarize(output, out=output.parent / "summary", by=Period.month, group=None, min_articles=5)
    if cfg.data.test is not None and cfg.data.test.is_file():
        report = cfg.output_dir / "eval" / "report.html"
        console.print(f"evaluation report: [bold]{escape(str(report))}[/bold]", soft_wrap=True)


# ---------------------------------------------------------------- summarize


@app.command()
def summarize(
    predictions: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A JSONL output of `sikap classify`.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", file_okay=False, help="Folder for the summary.")] = Path(
        "summary"
    ),
    by: Annotated[Period, typer.Option(help="Period: YYYY-MM, ISO week YYYY-Www, or YYYY-MM-DD.")] = Period.month,
    group: Annotated[
        str | None,
        typer.Option(help="Record field to group by: source, a field kept with --keep-field (outlet), meta.format."),
    ] = None,
    min_articles: Annotated[
        int, typer.Option(min=1, help="Periods with fewer articles are left out of the biggest shifts.")
    ] = 5,
) -> None:
    """Topics and stance per period (and group): summary.csv, line and bar plots, summary.md with the biggest shifts."""
    from sikap.inference.summarize import summarize as run_summarize

    try:
        result = run_summarize(predictions, out, by=by, group=group, min_articles=min_articles)
    except OSError as e:
        fail(f"cannot summarize {predictions}: {e.strerror or e}")
    except ValueError as e:  # PredictionsError: not a classify output
        fail(str(e))
    undated = f", {result.undated} without a date (counted as 'undated')" if result.undated else ""
    bad = f", {len(result.bad_lines)} lines skipped (not classify records)" if result.bad_lines else ""
    console.print(
        f"{result.records} records ({result.classified} classified, {result.errors} error records{undated}{bad}); "
        f"summary in [bold]{escape(str(result.markdown))}[/bold] ({len(result.figures)} figures, "
        f"{escape(result.csv.name)})"
    )


# ---------------------------------------------------------------- config


@app.command("check-config")
def check_config(
    config: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="YAML training config.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Dotted override (repeatable).")] = None,
) -> None:
    """Validate CONFIG (with overrides) and every data file it names; print the resolved config as JSON.

    Exits 1 listing every problem (config fields, then file, line, field and fix for the data).
    """
    from sikap.config import ConfigError, config_to_dict, load_config
    from sikap.training.data import DataError, check_data_files

    try:
        cfg = load_config(config, set_)
        splits = check_data_files(cfg)
    except (ConfigError, DataError) as e:
        fail(str(e))
    console.print_json(json.dumps(config_to_dict(cfg)))
    counts = ", ".join(f"{name} {len(recs)} records" for name, recs in splits.items())
    err_console.print(f"config and data are valid: {counts}")


_mount_subapps()
