import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.nn.cells import SCRIPTED_CELLS
from toolkit.nn.encoder import CELLS, FUSED_CELLS, MERGES, EncoderConfig, RecurrentEncoder, reverse_index


def make(cell="lstm", merge="concat", layers=2, bidirectional=True, padding="reverse", **kw) -> RecurrentEncoder:
    torch.manual_seed(0)
    config = EncoderConfig(cell=cell, hidden_size=6, num_layers=layers, bidirectional=bidirectional, merge=merge,
                           padding=padding, **kw)
    return RecurrentEncoder(5, config).eval()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("merge", MERGES)
def test_output_shapes(cell, merge):
    encoder = make(cell, merge, layers=3)
    out = encoder(torch.randn(4, 7, 5), torch.tensor([7, 3, 1, 5]))
    width = 12 if merge == "concat" else 6
    assert encoder.output_size == width
    assert out.outputs.shape == (4, 7, width)
    assert out.last_hidden.shape == (3, 2, 4, 6)


def test_unidirectional_shapes_and_merge_values():
    encoder = make(bidirectional=False, layers=1)
    out = encoder(torch.randn(2, 4, 5), torch.tensor([4, 2]))
    assert out.outputs.shape == (2, 4, 6) and out.last_hidden.shape == (1, 1, 2, 6)
    # Merge modes combine the same two directions: concat halves give sum/mean/mul exactly.
    x, lengths = torch.randn(3, 5, 5), torch.tensor([5, 4, 2])
    concat = make(merge="concat", layers=1)(x, lengths).outputs
    forward, backward = concat[..., :6], concat[..., 6:]
    torch.testing.assert_close(make(merge="sum", layers=1)(x, lengths).outputs, forward + backward)
    torch.testing.assert_close(make(merge="mean", layers=1)(x, lengths).outputs, (forward + backward) / 2)
    torch.testing.assert_close(make(merge="mul", layers=1)(x, lengths).outputs, forward * backward)


@pytest.mark.parametrize("padding", ["reverse", "packed"])
@pytest.mark.parametrize("cell", CELLS)
@settings(max_examples=8, deadline=None)
@given(lengths=st.lists(st.integers(1, 9), min_size=1, max_size=5), merge=st.sampled_from(MERGES),
       residual=st.booleans())
def test_padding_never_changes_a_result(padding, cell, lengths, merge, residual):
    """Each sequence's output alone equals its output inside a padded batch (and padding is zero)."""
    if padding == "packed" and cell in SCRIPTED_CELLS:
        pytest.skip("packed padding is for the fused cells (the config refuses it for scripted ones)")
    encoder = make(cell, merge, layers=3, padding=padding, residual=residual)
    lengths_t = torch.tensor(lengths)
    x = torch.randn(len(lengths), max(lengths), 5)
    with torch.no_grad():
        batch = encoder(x, lengths_t)
        for row, length in enumerate(lengths):
            alone = encoder(x[row : row + 1, :length], lengths_t[row : row + 1])
            torch.testing.assert_close(batch.outputs[row, :length], alone.outputs[0], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(batch.last_hidden[:, :, row], alone.last_hidden[:, :, 0], atol=1e-5, rtol=1e-4)
            assert torch.all(batch.outputs[row, length:] == 0)


def test_padding_modes_share_weights_and_agree():
    reverse, packed = make(padding="reverse"), make(padding="packed")
    packed.load_state_dict(reverse.state_dict())
    x, lengths = torch.randn(4, 8, 5), torch.tensor([8, 2, 5, 1])
    with torch.no_grad():
        torch.testing.assert_close(reverse(x, lengths).outputs, packed(x, lengths).outputs, atol=1e-5, rtol=1e-4)


def test_backward_direction_reads_right_to_left():
    """The backward half at position 0 depends on the last token; the forward half does not."""
    encoder = make(layers=1)
    x = torch.randn(1, 6, 5)
    changed = x.clone()
    changed[0, 5] += 1.0
    with torch.no_grad():
        a, b = encoder(x, torch.tensor([6])).outputs, encoder(changed, torch.tensor([6])).outputs
    assert torch.allclose(a[0, 0, :6], b[0, 0, :6])
    assert not torch.allclose(a[0, 0, 6:], b[0, 0, 6:])


def test_forget_gate_bias_initialisation():
    encoder = make("lstm", forget_bias=1.0)
    for name, parameter in encoder.named_parameters():
        if name.endswith("bias_ih_l0"):
            assert torch.all(parameter[6:12] == 1.0)
        if name.endswith("bias_hh_l0"):
            assert torch.all(parameter[6:12] == 0.0)
    custom = make("lstm", forget_bias=2.5)
    assert torch.all(custom.layers[1].backward_rnn.bias_ih_l0[6:12] == 2.5)


def test_residual_connections_add_the_layer_input():
    plain, residual = make(layers=2), make(layers=2, residual=True)
    residual.load_state_dict(plain.state_dict())
    x, lengths = torch.randn(2, 4, 5), torch.tensor([4, 3])
    with torch.no_grad():
        first = plain.layers[0]
        f, b, _ = first(x.transpose(0, 1), lengths, reverse_index(lengths, 4), False)
        layer1 = (torch.cat([f, b], -1) * (torch.arange(4).unsqueeze(1) < lengths).unsqueeze(-1)).transpose(0, 1)
        difference = residual(x, lengths).outputs - plain(x, lengths).outputs
    torch.testing.assert_close(difference, layer1, atol=1e-6, rtol=1e-5)


def test_dropout_only_between_layers_and_only_in_training():
    encoder = make(layers=2, dropout=0.5)
    x, lengths = torch.randn(3, 5, 5), torch.tensor([5, 5, 2])
    with torch.no_grad():
        assert torch.equal(encoder(x, lengths).outputs, encoder(x, lengths).outputs)  # eval: deterministic
        encoder.train()
        assert not torch.equal(encoder(x, lengths).outputs, encoder(x, lengths).outputs)
    single = make(layers=1, dropout=0.5).train()
    assert torch.equal(single(x, lengths).outputs, single(x, lengths).outputs)  # no dropout after the last layer


def test_invalid_config_names_the_field():
    with pytest.raises(ValueError, match=r"encoder\.cell"):
        RecurrentEncoder(5, EncoderConfig(cell="lstmm"))
    with pytest.raises(ValueError, match=r"encoder\.merge"):
        RecurrentEncoder(5, EncoderConfig(merge="avg"))


def test_gradients_flow_through_every_layer():
    encoder = make(layers=2).train()
    out = encoder(torch.randn(3, 4, 5), torch.tensor([4, 2, 1]))
    out.outputs.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


@pytest.mark.parametrize("cell", FUSED_CELLS)
@pytest.mark.parametrize("bidirectional", [True, False])
def test_fused_call_for_full_length_batches_equals_layer_by_layer(cell, bidirectional, monkeypatch):
    encoder = make(cell, layers=3, bidirectional=bidirectional)
    x, lengths = torch.randn(3, 6, 5), torch.tensor([6, 6, 6])
    assert encoder._can_fuse()
    with torch.no_grad():
        fused = encoder(x, lengths)
        monkeypatch.setattr(encoder, "_can_fuse", lambda: False)
        layered = encoder(x, lengths)
    torch.testing.assert_close(fused.outputs, layered.outputs, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fused.last_hidden, layered.last_hidden, atol=1e-6, rtol=1e-5)
    assert not make(merge="sum")._can_fuse() and not make(residual=True)._can_fuse()


def test_orthogonal_initialisation():
    encoder = make("gru", layers=1, init="orthogonal")
    weight = encoder.layers[0].forward_rnn.weight_hh_l0
    for gate in range(3):
        block = weight[gate * 6 : (gate + 1) * 6]
        torch.testing.assert_close(block @ block.T, torch.eye(6), atol=1e-5, rtol=0)
    assert torch.all(encoder.layers[0].forward_rnn.bias_ih_l0 == 0)
    default = make("gru", layers=1, init="torch").layers[0].forward_rnn.weight_hh_l0[:6]
    assert not torch.allclose(default @ default.T, torch.eye(6), atol=1e-2)


@pytest.mark.parametrize("cell", SCRIPTED_CELLS)
def test_scripted_cells_stack_with_dropout_residuals_and_gradients(cell):
    """Every feature the fused cells have: 3 layers, sum merge, residuals, locked dropout, DropConnect."""
    encoder = make(cell, "sum", layers=3, residual=True, dropout=0.3, locked_dropout=True, weight_drop=0.2).train()
    assert not encoder._can_fuse()
    out = encoder(torch.randn(3, 6, 5), torch.tensor([6, 4, 1]))
    assert out.outputs.shape == (3, 6, 6)
    assert torch.all(out.outputs[2, 1:] == 0)
    out.outputs.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


@settings(max_examples=6, deadline=None)
@given(lengths=st.lists(st.integers(1, 8), min_size=1, max_size=4), residual=st.booleans())
def test_separate_stacks_are_a_forward_and_a_backward_encoder_side_by_side(lengths, residual):
    """Each direction of ``separate_directions`` reads only its own stack: the forward half equals a unidirectional
    encoder with the forward weights, the backward half the same over each sequence reversed (padding exact)."""
    separate = make(layers=3, separate_directions=True, residual=residual)
    assert not separate._can_fuse()
    forward_only, backward_only = (make(layers=3, bidirectional=False, residual=residual) for _ in range(2))
    for depth, layer in enumerate(separate.layers):
        forward_only.layers[depth].forward_rnn.load_state_dict(layer.forward_rnn.state_dict())
        backward_only.layers[depth].forward_rnn.load_state_dict(layer.backward_rnn.state_dict())
    lengths_t = torch.tensor(lengths)
    x = torch.randn(len(lengths), max(lengths), 5)
    reversed_x = torch.zeros_like(x)
    for row, length in enumerate(lengths):
        reversed_x[row, :length] = x[row, :length].flip(0)
    with torch.no_grad():
        both = separate(x, lengths_t).outputs
        ahead = forward_only(x, lengths_t).outputs
        behind = backward_only(reversed_x, lengths_t).outputs
    for row, length in enumerate(lengths):
        torch.testing.assert_close(both[row, :length, :6], ahead[row, :length], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(both[row, :length, 6:], behind[row, :length].flip(0), atol=1e-5, rtol=1e-4)
    assert separate.layers[1].forward_rnn.weight_ih_l0.shape[1] == 6  # a layer ≥ 2 reads one direction's units
