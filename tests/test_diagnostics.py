"""The memory-capacity probe on networks whose capacity is known in closed form.

For a linear network h_t = A h_{t-1} + b x_t driven by i.i.d. input, sum_k r2_k over all delays is
the rank of the controllability matrix [b, Ab, A^2 b, ...] (Jaeger 2001): the state is a linear
function of the past inputs and the r2 of the best linear readouts add up to its dimension."""

from __future__ import annotations

import pytest
import torch

from src.diagnostics import memory_capacity, timescales
from src.models import cells


def linear_states(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    h = torch.zeros(x.shape[0], a.shape[0], dtype=torch.float64)
    out = []
    for t in range(x.shape[1]):
        h = h @ a.T + x[:, t : t + 1] * b
        out.append(h)
    return torch.stack(out, dim=1)


def controllability_rank(a: torch.Tensor, b: torch.Tensor) -> int:
    cols = [b]
    for _ in range(a.shape[0] - 1):
        cols.append(a @ cols[-1])
    return int(torch.linalg.matrix_rank(torch.stack(cols, dim=1)))


@pytest.fixture
def inputs() -> torch.Tensor:
    return torch.randn(400, 80, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_a_shift_register_remembers_exactly_its_length(inputs: torch.Tensor) -> None:
    n = 6
    a = torch.diag(torch.ones(n - 1, dtype=torch.float64), -1)  # h = [x_t, x_t-1, ..., x_t-5]
    b = torch.zeros(n, dtype=torch.float64)
    b[0] = 1.0
    probe = memory_capacity(linear_states(a, b, inputs), inputs, max_delay=12)
    assert probe["score"][:n] == pytest.approx([1.0] * n, abs=1e-6)
    assert max(probe["score"][n:]) < 0.01  # nothing older is held
    assert probe["capacity"] == pytest.approx(controllability_rank(a, b), abs=0.05)


@pytest.mark.parametrize("rank", [5, 3])
def test_a_random_linear_network_holds_the_rank_of_its_controllability_matrix(inputs, rank: int) -> None:
    """Full rank: a random stable A (spectral radius 0.6) with a random b. Rank 3 of 5: b lies in an
    A-invariant 3-dimensional subspace (A = P diag(J3, 0.5 I2) P^-1, b = P e_1), so two directions of
    the state are never excited."""
    g = torch.Generator().manual_seed(rank)
    n = 5
    if rank == n:
        a = torch.randn(n, n, generator=g, dtype=torch.float64)
        a *= 0.6 / torch.linalg.eigvals(a).abs().max()
        b = torch.randn(n, generator=g, dtype=torch.float64)
    else:
        p = torch.randn(n, n, generator=g, dtype=torch.float64)
        j = torch.zeros(n, n, dtype=torch.float64)
        j[1, 0] = j[2, 1] = 0.9  # a 3-step delay line inside
        j[3, 3] = j[4, 4] = 0.5
        a = p @ j @ torch.linalg.inv(p)
        b = p[:, 0].clone()
    assert controllability_rank(a, b) == rank
    probe = memory_capacity(linear_states(a, b, inputs), inputs, max_delay=40)
    assert probe["capacity"] == pytest.approx(rank, abs=0.15)


def test_symbols_held_one_hot_count_one_per_remembered_step() -> None:
    """A state that is the one-hot code of the last 2 symbols recalls delays 0 and 1 exactly and
    nothing older: capacity 2 in chance-corrected accuracy."""
    vocab = 8
    x = torch.randint(0, vocab, (300, 30), generator=torch.Generator().manual_seed(1))
    one_hot = torch.nn.functional.one_hot(x, vocab).double()
    prev = torch.cat([torch.zeros_like(one_hot[:, :1]), one_hot[:, :-1]], dim=1)
    probe = memory_capacity(torch.cat([one_hot, prev], dim=-1), x, max_delay=5, vocab=vocab)
    assert probe["score"][:2] == [1.0, 1.0]
    assert max(probe["score"][2:]) < 1 / vocab + 0.03
    assert probe["capacity"] == pytest.approx(2.0, abs=0.1) and probe["kind"] == "accuracy"


def test_too_short_sequences_are_refused() -> None:
    with pytest.raises(ValueError, match="leave nothing to score"):
        memory_capacity(torch.zeros(4, 5, 3), torch.zeros(4, 5), max_delay=5)


def _net(cell: str, hidden: int = 8, **kw):
    from src.models.recurrent import RecurrentNet

    return RecurrentNet(
        cell, hidden, vocab=10, encoding="onehot", n_out=10, out_len=1, topology="last", context=6, **kw
    )


def _x() -> torch.Tensor:
    return torch.randint(0, 10, (64, 6), generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize(("bias", "low", "high"), [(12.0, 0.999, 1.0), (-12.0, 0.0, 0.001)])
def test_an_lstm_forget_gate_held_open_or_shut_sets_its_timescale(bias: float, low: float, high: float) -> None:
    net = _net("lstm")
    with torch.no_grad():
        n = net.topology.rnn.hidden_size
        for name in ("weight_ih_l0", "weight_hh_l0"):
            getattr(net.topology.rnn, name)[n : 2 * n] = 0.0  # the forget gate sees nothing but its bias
        net.topology.rnn.bias_ih_l0[n : 2 * n] = bias
        net.topology.rnn.bias_hh_l0[n : 2 * n] = 0.0
    ts = timescales(net, _x())
    assert ts["kind"] == "forget gate" and low <= ts["retention_median"] <= high
    expected = -1 / torch.log(torch.sigmoid(torch.tensor(bias, dtype=torch.float64))).item()
    assert ts["timescale_median"] == pytest.approx(expected, rel=0.05)  # float32 gates: 1 - a ~ 6e-6


def test_lru_eigenvalues_and_rnn_spectral_radius() -> None:
    lru = _net("lru")
    layer = lru.topology.rnn.blocks[0].recurrence
    with torch.no_grad():
        layer.nu_log.fill_(torch.log(-torch.log(torch.tensor(0.9))))  # |lambda| = exp(-exp(nu)) = 0.9
    ts = timescales(lru, _x())
    assert ts["kind"] == "|lambda|" and ts["retention_median"] == pytest.approx(0.9, rel=1e-5)
    assert ts["timescale_median"] == pytest.approx(-1 / torch.log(torch.tensor(0.9)).item(), rel=1e-4)
    rnn = _net("rnn")
    with torch.no_grad():
        rnn.topology.rnn.weight_hh_l0.copy_(0.5 * torch.eye(8))
    assert timescales(rnn, _x())["retention_median"] == pytest.approx(0.5, rel=1e-5)


@pytest.mark.parametrize("cell", cells.names())
def test_every_cell_reports_timescales_or_says_it_has_none(cell: str, monkeypatch) -> None:
    """The probe asks the cell (its `timescales`), so a new cell cannot be skipped silently: it
    reports one retention per unit of its first layer (the Elman network one spectral radius), or
    declares `timescales = None` and the probe says None."""
    net = _net(cell, layers=2)
    ts = timescales(net, _x())
    assert ts is not None and ts["units"] in (1, 8) and 0 < ts["retention_median"] < 1
    monkeypatch.setattr(type(net.topology.rnn), "timescales", None)
    assert timescales(net, _x()) is None


def test_without_recurrence_the_gradient_reaches_only_the_last_step() -> None:
    """An Elman net with a zero recurrent matrix: the loss at the last step depends on the last
    input only, so the gradient with respect to every earlier input is exactly zero."""
    from src.diagnostics import gradient_by_delay

    net = _net("rnn")
    with torch.no_grad():
        net.topology.rnn.weight_hh_l0.zero_()
    x = _x()
    y, mask = x[:, -1:], torch.ones(64, 1, dtype=torch.bool)

    def loss(out, y, mask):
        return torch.nn.functional.cross_entropy(out.flatten(0, 1), y.flatten())

    grads = gradient_by_delay(net, x, loss, y, mask)
    assert len(grads) == 6 and grads[0] > 0 and grads[1:] == [0.0] * 5
    with torch.no_grad():
        net.topology.rnn.weight_hh_l0.copy_(0.9 * torch.eye(8))
    assert all(g > 0 for g in gradient_by_delay(net, x, loss, y, mask))  # with memory it reaches back


def test_accuracy_by_position_finds_the_position_a_network_gets_wrong() -> None:
    """A network that copies the window's last three inputs but answers position 2 with input + 1:
    positions 0 and 1 are right, 2 is wrong; a masked position is not scored."""
    from src.diagnostics import accuracy_by_position

    class Copier(torch.nn.Module):
        def forward(self, x):
            y = x[:, -3:].clone()
            y[:, 2] = (y[:, 2] + 1) % 10
            return torch.nn.functional.one_hot(y, 10).float(), None

    x = torch.randint(0, 10, (64, 6))
    y = x[:, -3:]
    mask = torch.ones_like(y, dtype=torch.bool)
    assert accuracy_by_position(Copier(), x, y, mask) == [1.0, 1.0, 0.0]
    mask[:, 1] = False
    assert accuracy_by_position(Copier(), x, y, mask) == [1.0, None, 0.0]
    assert accuracy_by_position(Copier(), x, y[:, :1], mask[:, :1]) is None  # one target: nothing by position
