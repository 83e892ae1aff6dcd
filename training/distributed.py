"""Data-parallel training under ``torchrun`` / ``accelerate launch``: devices, ranks, waiting for rank 0.

The transformers Trainer does the DDP work (process group, sharded batches, gradient
all-reduce) from the launcher's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); sikap
only chooses the device and backend and keeps what comes after training (the lexical model,
dev scoring, threshold tuning, the model directory) on rank 0 while the others wait.
"""

from __future__ import annotations

import os

import torch


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """True in a single process and on rank 0 of a launched group."""
    return rank() == 0


def resolve_device(setting: str) -> str:
    """``auto`` -> cuda when torch sees a GPU, else cpu; ``cuda`` without one is an error."""
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "train.device is cuda but torch sees no GPU (a CPU-only torch build, or CUDA_VISIBLE_DEVICES empty); "
            "set train.device: auto or cpu"
        )
    return setting


def ddp_backend(device: str) -> str | None:
    """gloo for processes on CPU, NCCL for one process per GPU; None in a single process."""
    if world_size() == 1:
        return None
    return "nccl" if device == "cuda" else "gloo"


def main_only(log):
    """``log`` on rank 0, a no-op on the other ranks (one copy of every message)."""
    return log if is_main() else (lambda *_a, **_k: None)


def share_from_main(value):
    """Rank 0's ``value`` on every rank, once rank 0 has got there (a barrier); ``value`` alone in one process."""
    import torch.distributed as dist

    if world_size() == 1 or not dist.is_available() or not dist.is_initialized():
        return value
    box = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
