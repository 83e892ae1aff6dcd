"""Article-level aggregation of window logits (differentiable, used in training and inference)."""

from __future__ import annotations

import torch

from sikap.config import Aggregation


def resolve_aggregation(how: Aggregation | str, *, multi_label: bool) -> str:
    """``auto`` means max over windows for multi-label topics, mean of logits otherwise."""
    how = Aggregation(how)
    if how is Aggregation.auto:
        return "max" if multi_label else "mean"
    return how.value


def aggregate(window_logits: torch.Tensor, group: torch.Tensor, n_groups: int, how: str) -> torch.Tensor:
    """Combine window logits into group logits.

    Args:
        window_logits: (n_windows, k) logits per window.
        group: (n_windows,) index of the group (article, or article x actor) of each window.
        n_groups: number of groups; a group with no window gets zeros.
        how: "max" (elementwise max over the group's windows) or "mean".
    Returns:
        (n_groups, k) logits.
    """
    k = window_logits.shape[-1]
    out = window_logits.new_zeros((n_groups, k))
    if window_logits.shape[0] == 0:
        return out
    index = group.view(-1, 1).expand(-1, k)
    if how == "max":
        return out.scatter_reduce(0, index, window_logits, reduce="amax", include_self=False)
    if how == "mean":
        return out.scatter_reduce(0, index, window_logits, reduce="mean", include_self=False)
    raise ValueError(f"unknown aggregation {how!r}; use max or mean")
