"""STID (the deep baseline): shapes on grids, learns a fixed batch, time identities, shape errors."""
from __future__ import annotations

import pytest
import torch

from stvfm.baselines.stid import STID


@pytest.mark.parametrize("grid,channels", [((16, 8), 2), ((10, 20), 2), ((5, 3), 1)])
def test_stid_output_shape(grid, channels):
    m = STID(grid, channels, 6, 6, embed_dim=16, node_dim=8, tod_dim=4, dow_dim=4, num_layers=2)
    x = torch.randn(3, 6, channels, *grid)
    out = m(x, torch.zeros_like(x))
    assert out.st.shape == (3, 6, channels, *grid)
    assert out.flow is None


def test_stid_node_identity_maps_to_the_right_cell():
    torch.manual_seed(0)
    m = STID((2, 3), 1, 6, 6, embed_dim=4, node_dim=4, tod_dim=2, dow_dim=2, num_layers=1, dropout=0.0).eval()
    x = torch.zeros(1, 6, 1, 2, 3)
    base = m(x).st
    with torch.no_grad():
        m.node_emb[1 * 3 + 2] += 5.0  # node of cell (y=1, x=2)
    changed = (m(x).st - base).abs().sum(dim=(0, 1, 2)) > 0
    assert changed.tolist() == [[False, False, False], [False, False, True]]


def test_stid_time_identities_change_the_output():
    torch.manual_seed(0)
    m = STID((4, 4), 2, steps_per_day=48, dropout=0.0).eval()
    x = torch.randn(2, 6, 2, 4, 4)
    a = m(x, tod=torch.tensor([0, 0]), dow=torch.tensor([0, 0])).st
    b = m(x, tod=torch.tensor([10, 10]), dow=torch.tensor([0, 0])).st
    c = m(x, tod=torch.tensor([0, 0]), dow=torch.tensor([3, 3])).st
    assert not torch.allclose(a, b) and not torch.allclose(a, c)


def test_stid_learns_a_fixed_batch():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny MLP: one thread is fastest, and robust on a busy 2-core box
    try:
        m = STID((4, 5), 2, embed_dim=32, node_dim=16, num_layers=2, dropout=0.0)
        x = torch.randn(8, 6, 2, 4, 5)
        y = x[:, -1:].repeat(1, 6, 1, 1, 1) * 0.5 + 0.1
        opt = torch.optim.AdamW(m.parameters(), lr=5e-3)
        losses = []
        for _ in range(80):
            loss = torch.nn.functional.mse_loss(m(x).st, y)
            losses.append(float(loss.detach()))
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    assert losses[-1] < 0.1 * losses[0]


def test_stid_rejects_wrong_input():
    m = STID((4, 4), 2)
    with pytest.raises(ValueError, match="grid"):
        m(torch.randn(1, 6, 2, 4, 5))
