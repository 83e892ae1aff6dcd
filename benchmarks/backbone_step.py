"""Fine-tuning step time and saved size of a backbone on CPU, and what saving weights in 16 bits does.

    python benchmarks/backbone_step.py                       # step times + sizes (offline e5-small)
    python benchmarks/backbone_step.py --predictions ../shared/data/sib-200-ind

Step: batch x length tokens, forward + backward + AdamW step with a mean-pooled linear head, median
over `--steps` steps after one warm-up step, for fp32 / bf16 autocast, with and without frozen word
embeddings. `--predictions` fine-tunes briefly on SIB-200 (Indonesian topics) and compares dev
predictions of the fp32 weights with the same weights stored as bfloat16 / float16 and loaded back.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from sikap.backbone import freeze_word_embeddings, resolve_backbone

console = Console()
VARIANTS = {  # name -> (bf16 autocast, frozen word embeddings)
    "fp32": (False, False),
    "fp32 + frozen word emb": (False, True),
    "bf16 autocast": (True, False),
    "bf16 autocast + frozen word emb": (True, True),
}


class Classifier(torch.nn.Module):
    """Encoder + mean pooling + linear head, the shape of sikap's topic head."""

    def __init__(self, encoder, n_labels: int):
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Linear(encoder.config.hidden_size, n_labels)

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, tokens, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1)  # (batch, hidden)
        return self.head(pooled).float()


def autocast(bf16: bool):
    """bf16 autocast on CPU, or nothing."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def make_variant(backbone: str, frozen: bool) -> tuple[Classifier, torch.optim.Optimizer]:
    """A fresh fp32 model (word embeddings frozen or not) and its AdamW."""
    torch.manual_seed(0)
    model = Classifier(AutoModel.from_pretrained(backbone, dtype=torch.float32), n_labels=7).train()
    if frozen:
        freeze_word_embeddings(model.encoder)
    return model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5)


def one_step(model: Classifier, optimizer, batch: dict, bf16: bool) -> float:
    """Wall seconds for forward + backward + optimizer step."""
    start = time.perf_counter()
    with autocast(bf16):
        logits = model(batch["input_ids"], batch["attention_mask"])
    loss = torch.nn.functional.cross_entropy(logits, batch["labels"])
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def step_times(backbone: str, batch: int, length: int, steps: int) -> dict[str, list[float]]:
    """Seconds per step for every variant, taken round-robin (one step of each in turn) so that
    load from other processes on a shared machine hits all variants alike; warm-up step dropped."""
    variants = {name: make_variant(backbone, frozen) for name, (_, frozen) in VARIANTS.items()}
    vocab = next(iter(variants.values()))[0].encoder.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, min(vocab, 250_000), (batch, length), generator=gen)
    data = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": torch.randint(0, 7, (batch,), generator=gen),
    }
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(steps + 1):
        for name, (model, optimizer) in variants.items():
            times[name].append(one_step(model, optimizer, data, bf16=VARIANTS[name][0]))
    return {name: t[1:] for name, t in times.items()}


def saved_sizes(backbone: str) -> dict[str, float]:
    """MB of model.safetensors when the whole backbone is saved in each dtype."""
    model = AutoModel.from_pretrained(backbone, dtype=torch.float32)
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            out = Path(tmp) / str(dtype)
            model.to(dtype).save_pretrained(out)
            sizes[str(dtype).removeprefix("torch.")] = (out / "model.safetensors").stat().st_size / 1e6
    return sizes


def report_steps(backbone: str, batch: int, length: int, steps: int) -> None:
    """Print the step-time table, parameter counts and saved sizes."""
    model = AutoModel.from_pretrained(backbone, dtype=torch.float32)
    total = sum(p.numel() for p in model.parameters())
    word = model.get_input_embeddings().weight.numel()
    console.print(
        f"backbone {backbone}\nparameters: {total / 1e6:.1f}M, of which word embeddings "
        f"{word / 1e6:.1f}M; threads {torch.get_num_threads()}; batch {batch} x {length} tokens"
    )
    table = Table("variant", "median s/step", "min", "max", "trainable params")
    for name, wall in step_times(backbone, batch, length, steps).items():
        trainable = total - (word if VARIANTS[name][1] else 0)
        table.add_row(
            name,
            f"{statistics.median(wall):.2f}",
            f"{min(wall):.2f}",
            f"{max(wall):.2f}",
            f"{trainable / 1e6:.1f}M",
        )
    console.print(table)
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    busy = " - other processes competed for the cores: trust the min column" if load > cpus else ""
    console.print(f"load average after the runs: {load:.1f} on {cpus} CPUs{busy}")
    sizes = saved_sizes(backbone)
    non_embedding_mb = (total - word) * 4 / 1e6
    console.print(
        "saved model.safetensors (MB): "
        + ", ".join(f"{k} {v:.0f}" for k, v in sizes.items())
        + f"; fp32 without the word embeddings {non_embedding_mb:.0f}"
    )


# --------------------------------------------------------------------------- predictions after 16-bit save


def read_sib(folder: Path, split: str) -> tuple[list[str], list[str]]:
    """SIB-200 TSV (index_id, category, text) -> texts, labels."""
    with (folder / f"{split}.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [r["text"] for r in rows], [r["category"] for r in rows]


def fine_tune(backbone: str, folder: Path, epochs: int, length: int) -> tuple[Classifier, object, list]:
    """A short bf16 fine-tune on SIB-200 train, word embeddings frozen -> (model, tokenizer, label names)."""
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    texts, labels = read_sib(folder, "train")
    names = sorted(set(labels))
    torch.manual_seed(0)
    model = Classifier(AutoModel.from_pretrained(backbone, dtype=torch.float32), len(names)).train()
    freeze_word_embeddings(model.encoder)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5)
    y = torch.tensor([names.index(label) for label in labels])
    for epoch in range(epochs):
        order = torch.randperm(len(texts))
        for i in range(0, len(texts), 16):
            idx = order[i : i + 16]
            enc = tokenizer(
                [texts[j] for j in idx], padding=True, truncation=True, max_length=length, return_tensors="pt"
            )
            with autocast(True):
                loss = torch.nn.functional.cross_entropy(model(enc["input_ids"], enc["attention_mask"]), y[idx])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        console.print(f"epoch {epoch + 1}: last loss {loss.item():.3f}")
    return model.eval(), tokenizer, names


@torch.inference_mode()
def predict(model: Classifier, tokenizer, texts: list[str], length: int) -> torch.Tensor:
    """fp32 logits (n, labels)."""
    out = []
    for i in range(0, len(texts), 32):
        enc = tokenizer(texts[i : i + 32], padding=True, truncation=True, max_length=length, return_tensors="pt")
        out.append(model(enc["input_ids"], enc["attention_mask"]))
    return torch.cat(out)


def report_predictions(backbone: str, folder: Path, epochs: int, length: int) -> None:
    """Dev agreement and logit drift when the fine-tuned weights are stored in 16 bits."""
    model, tokenizer, names = fine_tune(backbone, folder, epochs, length)
    texts, labels = read_sib(folder, "dev")
    gold = torch.tensor([names.index(label) for label in labels])
    reference = predict(model, tokenizer, texts, length)
    fp32_state = {k: v.clone() for k, v in model.state_dict().items()}
    table = Table("stored as", "dev accuracy", "argmax agreement", "max |Δlogit|", "max |Δprob|")
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        model.load_state_dict({k: v.to(dtype).to(torch.float32) for k, v in fp32_state.items()})
        logits = predict(model, tokenizer, texts, length)
        drift = (logits - reference).abs().max().item()
        prob_drift = (logits.softmax(-1) - reference.softmax(-1)).abs().max().item()
        agree = (logits.argmax(-1) == reference.argmax(-1)).float().mean().item()
        accuracy = (logits.argmax(-1) == gold).float().mean().item()
        table.add_row(
            str(dtype).removeprefix("torch."),
            f"{accuracy:.3f}",
            f"{agree:.3f}",
            f"{drift:.4f}",
            f"{prob_drift:.4f}",
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="offline:multilingual-e5-small")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--predictions", type=Path, default=None, help="SIB-200 folder (train.tsv, dev.tsv)")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    backbone = resolve_backbone(args.backbone)
    if args.predictions:
        report_predictions(backbone, args.predictions, args.epochs, length=args.length)
    else:
        report_steps(backbone, args.batch, args.length, args.steps)


if __name__ == "__main__":
    main()
