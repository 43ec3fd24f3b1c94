"""The closed-form Fisher of linear chains (``bench.methods.fisher.linear_fisher_diagonal``, what
``fisher_diagonal`` uses for MLPs) equals the vmap path it replaced and the notebook's loop up to
float summation order, and is deterministic."""

from __future__ import annotations

import pytest
import torch
from bench.methods.fisher import (
    auto_chunk,
    fisher_diagonal,
    fisher_diagonal_loop,
    linear_fisher_diagonal,
    vmap_fisher_diagonal,
)
from torch import nn

from bench.nn.nets import MLP


def _rel(a, b):
    assert set(a) == set(b)
    return max(float((a[k] - b[k]).abs().max() / b[k].abs().max()) for k in b)


@pytest.mark.parametrize("dtype,tol", [(torch.double, 1e-10), (torch.float, 1e-5)])
def test_closed_form_equals_vmap_and_loop_on_an_mlp(dtype, tol):
    torch.manual_seed(0)
    model = MLP(12, (9, 7), 4).to(dtype)
    x = torch.randn(53, 12, dtype=dtype)
    new = fisher_diagonal(model, x, 16)
    assert _rel(new, vmap_fisher_diagonal(model, x, 8)) < tol
    assert _rel(new, fisher_diagonal_loop(model, x, 4)) < tol
    assert _rel(new, linear_fisher_diagonal(model, x, 5)) < tol  # the chunk changes the summation order only


def test_closed_form_handles_other_linear_chains():
    torch.manual_seed(1)
    for model in (nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3), nn.ReLU()).double(),
                  nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(6, 3)).double()):
        x = torch.randn(20, 6, dtype=torch.double)
        assert _rel(fisher_diagonal(model, x, 7, closed_form=True), fisher_diagonal_loop(model, x, 3)) < 1e-10


def test_closed_form_is_deterministic_and_used_only_for_linear_chains():
    torch.manual_seed(2)
    model = MLP(12, (8,), 4)
    x = torch.randn(40, 12)
    a, b = fisher_diagonal(model, x, auto_chunk(model, 4)), fisher_diagonal(model, x, auto_chunk(model, 4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = nn.Sequential(nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 4))
    with pytest.raises(ValueError, match="closed_form"):
        fisher_diagonal(other, x, 8, closed_form=True)
    assert _rel(fisher_diagonal(other, x, 8), vmap_fisher_diagonal(other, x, 8)) == 0.0  # falls back to vmap


def test_a_linear_chain_over_the_last_axis_of_3d_inputs_goes_the_vmap_way():
    """A Linear applied to (B, 4, 8) inputs and flattened afterwards: the closed form, which takes
    every Linear's input as (examples, features), crashed on it; the vmap path is exact there."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)).double()
    x = torch.randn(5, 4, 8, dtype=torch.double)
    assert _rel(fisher_diagonal(model, x, 64), fisher_diagonal_loop(model, x, 3)) < 1e-10
    with pytest.raises(ValueError, match="flatten inputs of more dimensions first"):
        fisher_diagonal(model, x, 64, closed_form=True)
