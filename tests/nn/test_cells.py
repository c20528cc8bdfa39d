"""The scripted cells: the generic loop reproduces torch's LSTM/GRU; each variant's step follows its equations."""

import pytest
import torch
from torch import nn

from toolkit.nn import cells
from toolkit.nn.cell_steps import CHUNK
from toolkit.nn.cells import GATES, SCRIPTED_CELLS, CellRNN
from toolkit.nn.encoder import EncoderConfig, RecurrentEncoder

HIDDEN = 5


def _copy_into(cell: CellRNN, reference: nn.RNNBase) -> None:
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(reference, name).copy_(getattr(cell, name))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_generic_loop_reproduces_torch_outputs_and_gradients(kind):
    torch.manual_seed(0)
    cell = CellRNN(kind, 4, HIDDEN).double()
    reference = (nn.LSTM if kind == "lstm" else nn.GRU)(4, HIDDEN).double()
    _copy_into(cell, reference)
    x = torch.randn(7, 3, 4, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 3, HIDDEN, dtype=torch.float64)
    state = (h0, torch.randn(1, 3, HIDDEN, dtype=torch.float64)) if kind == "lstm" else h0

    ours, our_state = cell(x, state)
    theirs, their_state = reference(x, state)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    for mine, torchs in zip(our_state if kind == "lstm" else (our_state,),
                            their_state if kind == "lstm" else (their_state,), strict=True):
        torch.testing.assert_close(mine, torchs, rtol=1e-12, atol=1e-12)

    upstream = torch.randn_like(ours)
    our_grads = torch.autograd.grad((ours * upstream).sum(), [x, *cell.parameters()])
    their_grads = torch.autograd.grad((theirs * upstream).sum(),
                                      [x] + [getattr(reference, n) for n, _ in cell.named_parameters()])
    for mine, torchs in zip(our_grads, their_grads, strict=True):
        torch.testing.assert_close(mine, torchs, rtol=1e-10, atol=1e-10)


def _blocks(tensor: torch.Tensor, count: int) -> list[torch.Tensor]:
    return list(tensor.split(HIDDEN, 0))[:count]


def _hand_step(cell: CellRNN, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
    """One step written straight from the equations in toolkit/nn/cells.py (x [B, I], h/c [B, H])."""
    sig, tanh = torch.sigmoid, torch.tanh
    W = _blocks(cell.weight_ih_l0, GATES[cell.kind])
    b = _blocks(cell.bias_ih_l0, GATES[cell.kind])
    lin = [x @ w.T + bias for w, bias in zip(W, b, strict=True)]
    x_tilde = cell.project(x) if cell.project is not None else x
    if cell.kind == "sru":
        wx, fx, rx = lin
        f = sig(fx + cell.v_f * c)
        r = sig(rx + cell.v_r * c)
        c_next = f * c + (1 - f) * wx
        return r * c_next + (1 - r) * x_tilde, c_next
    U = list(cell.weight_hh_l0.split(HIDDEN, 0))
    u = list(cell.bias_hh_l0.split(HIDDEN, 0))
    rec = [h @ w.T + bias for w, bias in zip(U, u, strict=True)]
    if cell.kind == "lstm_f":  # gates (i, g, o)
        i, g, o = (lin[k] + rec[k] for k in range(3))
        c_next = c + sig(i) * tanh(g)
        return sig(o) * tanh(c_next), c_next
    if cell.kind == "lstm_i":  # gates (f, g, o)
        f, g, o = (lin[k] + rec[k] for k in range(3))
        c_next = sig(f) * c + tanh(g)
        return sig(o) * tanh(c_next), c_next
    if cell.kind == "lstm_o":  # gates (i, f, g)
        i, f, g = (lin[k] + rec[k] for k in range(3))
        c_next = sig(f) * c + sig(i) * tanh(g)
        return tanh(c_next), c_next
    if cell.kind == "mut1":  # input (z, r); recurrent (r, h)
        z = sig(lin[0])
        r = sig(lin[1] + rec[0])
        candidate = tanh((r * h) @ U[1].T + u[1] + tanh(x_tilde))
    elif cell.kind == "mut2":  # input (z, h); recurrent (z, r, h)
        z = sig(lin[0] + rec[0])
        r = sig(x_tilde + rec[1])
        candidate = tanh((r * h) @ U[2].T + u[2] + lin[1])
    else:  # mut3: input (z, r, h); recurrent (z, r, h); z reads tanh(h)
        z = sig(lin[0] + tanh(h) @ U[0].T + u[0])
        r = sig(lin[1] + rec[1])
        candidate = tanh((r * h) @ U[2].T + u[2] + lin[2])
    return candidate * z + h * (1 - z), c


@pytest.mark.parametrize("input_size", [HIDDEN, 3])
@pytest.mark.parametrize("kind", SCRIPTED_CELLS)
def test_each_variant_steps_as_its_equations_say(kind, input_size):
    """Three steps of the scripted loop equal three hand-computed steps (a projection when sizes differ)."""
    torch.manual_seed(1)
    cell = CellRNN(kind, input_size, HIDDEN).double()
    assert (cell.project is None) == (input_size == HIDDEN or kind not in ("mut1", "mut2", "sru"))
    x = torch.randn(3, 2, input_size, dtype=torch.float64)
    h = torch.randn(2, HIDDEN, dtype=torch.float64)
    c = torch.randn(2, HIDDEN, dtype=torch.float64)
    state = (h[None], c[None]) if cell.has_cell_state else h[None]
    with torch.no_grad():
        outputs, final = cell(x, state)
        for t in range(3):
            h, c = _hand_step(cell, x[t], h, c)
            torch.testing.assert_close(outputs[t], h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close((final[0] if cell.has_cell_state else final)[0], h, rtol=1e-12, atol=1e-12)
    if cell.has_cell_state:
        torch.testing.assert_close(final[1][0], c, rtol=1e-12, atol=1e-12)


def test_removed_gates_change_the_computation():
    """The ablations are not the LSTM in disguise: same shared weights, different outputs."""
    torch.manual_seed(2)
    x = torch.randn(4, 2, HIDDEN)
    outputs = {}
    for kind in ("lstm_f", "lstm_i", "lstm_o"):
        torch.manual_seed(3)
        outputs[kind] = CellRNN(kind, HIDDEN, HIDDEN)(x)[0]
    assert not torch.allclose(outputs["lstm_f"], outputs["lstm_i"])
    assert not torch.allclose(outputs["lstm_i"], outputs["lstm_o"])


def test_weight_drop_masks_the_recurrent_matrix_only_in_training():
    torch.manual_seed(4)
    cell = CellRNN("mut3", HIDDEN, HIDDEN, weight_drop=0.5)
    x = torch.randn(5, 2, HIDDEN)
    cell.train()
    assert not torch.equal(cell(x)[0], cell(x)[0])
    cell.eval()
    assert torch.equal(cell(x)[0], cell(x)[0])


@pytest.mark.parametrize("kind", SCRIPTED_CELLS)
def test_encoder_initialisation_and_forget_bias_follow_the_gate_layout(kind):
    encoder = RecurrentEncoder(4, EncoderConfig(cell=kind, hidden_size=HIDDEN, forget_bias=2.0))
    rnn = encoder.layers[0].forward_rnn
    forget = {"lstm_i": 0, "lstm_o": 1, "sru": 1}.get(kind)
    for block, bias in enumerate(rnn.bias_ih_l0.detach().split(HIDDEN)):
        assert torch.all(bias == (2.0 if block == forget else 0.0)), (kind, block)
    if hasattr(rnn, "weight_hh_l0"):
        for block in rnn.weight_hh_l0.detach().split(HIDDEN):
            torch.testing.assert_close(block @ block.T, torch.eye(HIDDEN), atol=1e-5, rtol=0)


def test_scripted_cells_refuse_packed_padding_with_a_clear_message():
    with pytest.raises(ValueError, match=r"encoder\.padding.*reverse"):
        RecurrentEncoder(4, EncoderConfig(cell="sru", padding="packed"))


@pytest.mark.parametrize("kind", ["mut1", "sru", "lstm_o"])
def test_carried_state_continues_the_sequence(kind):
    """Truncated BPTT for the LM: reading a sequence in two halves with the carried state equals one read."""
    torch.manual_seed(5)
    encoder = RecurrentEncoder(4, EncoderConfig(cell=kind, hidden_size=HIDDEN, num_layers=2, bidirectional=False))
    encoder.eval()
    x = torch.randn(2, 8, 4)
    full = torch.full((2,), 8)
    half = torch.full((2,), 4)
    with torch.no_grad():
        whole = encoder(x, full)
        first = encoder(x[:, :4], half)
        second = encoder(x[:, 4:], half, first.state)
    torch.testing.assert_close(torch.cat([first.outputs, second.outputs], 1), whole.outputs, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ("lstm", "gru", *SCRIPTED_CELLS))
def test_the_torchscript_loop_equals_the_python_loop(kind, monkeypatch):
    torch.manual_seed(6)
    cell = CellRNN(kind, 3, HIDDEN).double()
    x = torch.randn(9, 2, 3, dtype=torch.float64)
    results = {}
    for backend in ("eager", "script"):
        cells.use_loop_backend(backend)
        results[backend] = cell(x)
    cells.use_loop_backend("eager")
    torch.testing.assert_close(results["script"], results["eager"], rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_the_compiled_loop_equals_the_python_loop_across_chunks_and_carried_state(monkeypatch):
    """torch.compile runs fixed-length pieces, the last one padded: outputs, final state and gradients must be
    those of the plain loop for a length that is not a multiple of the piece (and a carried state).

    The graph is captured by dynamo and differentiated by AOT autograd as in real use, but run by ``aot_eager``
    rather than inductor: inductor's C++ code generation cost 1–4 minutes of CI per cell, and its kernels are
    exercised by benchmarks/cell_speed.py and the cell comparison (same figures as the eager loop)."""
    monkeypatch.setattr(cells, "COMPILE_OPTIONS", {"dynamic": True, "backend": "aot_eager"})
    monkeypatch.setattr(cells, "_compiled", {})
    torch.manual_seed(7)
    cell = CellRNN("sru", 3, HIDDEN)
    x = torch.randn(CHUNK + 5, 2, 3, requires_grad=True)
    state = (torch.randn(1, 2, HIDDEN), torch.randn(1, 2, HIDDEN))
    results = {}
    for backend in ("eager", "compile"):
        cells.use_loop_backend(backend)
        outputs, (h, c) = cell(x, state)
        loss = (outputs * torch.linspace(-1, 1, outputs.numel()).view_as(outputs)).sum() + c.sum()
        results[backend] = (outputs, h, c, *torch.autograd.grad(loss, [x, *cell.parameters()]))
    cells.use_loop_backend("eager")
    assert "sru" in cells._compiled and cells._compiled["sru"] is not cells.stepwise  # it did compile
    for compiled, eager in zip(results["compile"], results["eager"], strict=True):
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


def test_a_bad_loop_backend_is_named():
    with pytest.raises(ValueError, match="must be one of"):
        cells.use_loop_backend("jit")
