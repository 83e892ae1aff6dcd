"""Window -> article aggregation, checked against numpy by hand, including gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sikap.aggregate import aggregate, resolve_aggregation
from sikap.config import Aggregation

# 5 windows, 3 classes; groups: 0 <- windows 0,1,2 ; 1 <- none ; 2 <- windows 3,4 ; 3 <- none
LOGITS = np.array(
    [
        [0.5, -2.0, 1.0],
        [1.5, -3.0, -1.0],
        [-0.5, -1.0, 0.0],
        [-4.0, -6.0, -2.5],  # all negative: a max that included the zero init would be wrong
        [-3.0, -7.0, -0.5],
    ]
)
GROUP = np.array([0, 0, 0, 2, 2])
N_GROUPS = 4


def by_hand(how: str) -> np.ndarray:
    out = np.zeros((N_GROUPS, LOGITS.shape[1]))
    for g in range(N_GROUPS):
        rows = LOGITS[GROUP == g]
        if len(rows):
            out[g] = rows.max(axis=0) if how == "max" else rows.mean(axis=0)
    return out


@pytest.mark.parametrize("how", ["max", "mean"])
def test_aggregate_matches_numpy(how):
    got = aggregate(torch.tensor(LOGITS), torch.tensor(GROUP), N_GROUPS, how)
    assert got.shape == (N_GROUPS, 3)
    np.testing.assert_allclose(got.numpy(), by_hand(how), rtol=0, atol=1e-12)


def test_hand_values_are_what_we_think():
    # guard the helper itself with a few values worked out on paper
    assert by_hand("max")[2].tolist() == [-3.0, -6.0, -0.5]
    assert by_hand("mean")[0].tolist() == pytest.approx([0.5, -2.0, 0.0])


@pytest.mark.parametrize("how", ["max", "mean"])
def test_groups_without_windows_get_zeros(how):
    got = aggregate(torch.tensor(LOGITS), torch.tensor(GROUP), N_GROUPS, how)
    assert torch.equal(got[1], torch.zeros(3, dtype=got.dtype))
    assert torch.equal(got[3], torch.zeros(3, dtype=got.dtype))


@pytest.mark.parametrize("how", ["max", "mean"])
def test_no_windows_at_all(how):
    got = aggregate(torch.zeros((0, 2)), torch.zeros(0, dtype=torch.long), 3, how)
    assert torch.equal(got, torch.zeros((3, 2)))


def test_unordered_groups():
    logits = torch.tensor([[1.0], [5.0], [3.0], [2.0]])
    group = torch.tensor([1, 0, 1, 0])
    assert aggregate(logits, group, 2, "max").flatten().tolist() == [5.0, 3.0]
    assert aggregate(logits, group, 2, "mean").flatten().tolist() == [3.5, 2.0]


def test_mean_gradient_is_one_over_group_size():
    x = torch.tensor(LOGITS, requires_grad=True)
    aggregate(x, torch.tensor(GROUP), N_GROUPS, "mean").sum().backward()
    expected = np.array([[1 / 3] * 3] * 3 + [[1 / 2] * 3] * 2)
    np.testing.assert_allclose(x.grad.numpy(), expected, atol=1e-12)


def test_max_gradient_goes_to_the_argmax_window():
    x = torch.tensor(LOGITS, requires_grad=True)
    aggregate(x, torch.tensor(GROUP), N_GROUPS, "max").sum().backward()
    expected = np.zeros_like(LOGITS)
    for g in (0, 2):
        rows = np.flatnonzero(GROUP == g)
        for c in range(LOGITS.shape[1]):
            expected[rows[np.argmax(LOGITS[rows, c])], c] = 1.0
    np.testing.assert_allclose(x.grad.numpy(), expected, atol=1e-12)


def test_gradient_flows_through_a_layer():
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 2)
    windows = torch.randn(6, 4)
    group = torch.tensor([0, 0, 1, 1, 1, 2])
    for how in ("max", "mean"):
        layer.zero_grad()
        logits = aggregate(layer(windows), group, 3, how)  # (3 groups, 2 classes)
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 0]))
        loss.backward()
        assert layer.weight.grad is not None
        assert torch.isfinite(layer.weight.grad).all() and layer.weight.grad.abs().sum() > 0


def test_unknown_aggregation_raises():
    with pytest.raises(ValueError, match="unknown aggregation 'median'"):
        aggregate(torch.ones((2, 2)), torch.tensor([0, 1]), 2, "median")


@pytest.mark.parametrize(
    ("how", "multi_label", "expected"),
    [
        (Aggregation.auto, True, "max"),
        (Aggregation.auto, False, "mean"),
        ("auto", True, "max"),
        ("auto", False, "mean"),
        (Aggregation.mean, True, "mean"),
        ("max", False, "max"),
        ("mean", False, "mean"),
    ],
)
def test_resolve_aggregation(how, multi_label, expected):
    assert resolve_aggregation(how, multi_label=multi_label) == expected


def test_resolve_aggregation_rejects_unknown():
    with pytest.raises(ValueError):
        resolve_aggregation("median", multi_label=True)
