"""Stacked (bi)directional recurrent encoders on torch's fused RNN kernels (and the scripted cells of
:mod:`toolkit.nn.cells`: the LSTM ablations, MUT1–3 and SRU).

Each layer holds one single-layer unidirectional ``nn.RNN``/``nn.LSTM``/``nn.GRU`` per direction
instead of one ``bidirectional=True`` module, for three reasons:

* the two directions can be merged with ``concat | sum | mean | mul`` between layers, and layers can
  have residual (skip) connections and dropout between them, which stacked ``nn.LSTM`` cannot do;
* padding stays exact *without* packing: a forward-running RNN over right-padded input computes the
  valid positions exactly (padding comes after them), and the backward direction runs forward over each
  sequence reversed *within its own length*. Unpacked input takes PyTorch's oneDNN fast path on CPU,
  which packed input never does (docs/benchmarks.md, encoder speed); ``padding="packed"`` keeps the classic route;
* the state dict is the same in both padding modes, so the mode is an inference-time choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from toolkit.nn.cells import SCRIPTED_CELLS, CellRNN
from toolkit.nn.dropout import LockedDropout

FUSED_CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
"""Cells with torch's fused kernels (oneDNN/cuDNN); the only ones ONNX export and int8 quantization handle."""
CELLS = FUSED_CELLS + SCRIPTED_CELLS
FORGET_GATE_BLOCK = {"lstm": 1, "lstm_i": 0, "lstm_o": 1, "sru": 1}
"""Which ``hidden_size`` block of ``bias_ih_l0`` is the forget gate, for cells that have one."""
INITS = ("orthogonal", "torch")
MERGES = ("concat", "sum", "mean", "mul")
PADDING_MODES = ("reverse", "packed")


@dataclass
class EncoderConfig:
    """Hyper-parameters of a :class:`RecurrentEncoder`."""

    cell: str = "lstm"
    """Recurrent cell: ``rnn_tanh``, ``rnn_relu``, ``lstm`` or ``gru`` (fused kernels), or ``lstm_f``,
    ``lstm_i``, ``lstm_o`` (the LSTM without its forget, input or output gate), ``mut1``, ``mut2``, ``mut3``
    (Jozefowicz et al. 2015) or ``sru`` (Lei et al. 2018): equations in docs/cells.md."""
    hidden_size: int = 128
    """Units per direction and layer."""
    num_layers: int = 1
    """Number of stacked recurrent layers."""
    bidirectional: bool = True
    """Run a second RNN right-to-left and merge both directions."""
    merge: str = "concat"
    """How the two directions are combined: ``concat`` (2×hidden), ``sum``, ``mean`` or ``mul`` (hidden)."""
    dropout: float = 0.0
    """Dropout between stacked layers (not after the last one)."""
    residual: bool = False
    """Add each layer's input to its output where their sizes agree (layers ≥ 2)."""
    forget_bias: float = 1.0
    """Initial forget-gate bias (Jozefowicz et al. 2015: 1 is their LSTM-b, 0 their plain LSTM); applies to
    ``lstm``, ``lstm_i``, ``lstm_o`` and ``sru``, ignored by cells without a forget gate."""
    init: str = "orthogonal"
    """Weight initialisation: ``orthogonal`` (recurrent matrices orthogonal per gate, input matrices
    Glorot-uniform, biases zero: Keras' defaults, which keep simple RNNs trainable over long texts) or
    ``torch`` (PyTorch's uniform ±1/√hidden)."""
    padding: str = "reverse"
    """How mixed lengths stay exact: ``reverse`` (unpacked, oneDNN fast path) or ``packed``."""
    locked_dropout: bool = False
    """Dropout between layers drops the same features at every time step (variational, as in AWD-LSTM)
    instead of independently per position."""
    weight_drop: float = 0.0
    """DropConnect on the hidden-to-hidden weights while training (AWD-LSTM): one mask per batch, so the
    fused kernels still run. Needs ``padding: reverse``."""
    separate_directions: bool = False
    """Bidirectional with several layers: each direction is its own stack and the two merge only after the last
    layer (ELMo, TagLM, ULMFiT's forward + backward models) instead of after every layer. This is the shape of a
    forward and a backward language model side by side, so both can initialise it (``init_from``)."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field."""
        if self.cell not in CELLS:
            raise ValueError(f"encoder.cell must be one of {CELLS}, got {self.cell!r}")
        if self.merge not in MERGES:
            raise ValueError(f"encoder.merge must be one of {MERGES}, got {self.merge!r}")
        if self.init not in INITS:
            raise ValueError(f"encoder.init must be one of {INITS}, got {self.init!r}")
        if self.padding not in PADDING_MODES:
            raise ValueError(f"encoder.padding must be one of {PADDING_MODES}, got {self.padding!r}")
        if self.hidden_size < 1 or self.num_layers < 1:
            raise ValueError("encoder.hidden_size and encoder.num_layers must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"encoder.dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.weight_drop < 1.0:
            raise ValueError(f"encoder.weight_drop must be in [0, 1), got {self.weight_drop}")
        if self.cell in SCRIPTED_CELLS and self.padding == "packed":
            raise ValueError(f"encoder.padding: packed works with the fused cells {FUSED_CELLS} only; "
                             f"use padding: reverse (exact too) with cell {self.cell!r}")
        if self.weight_drop and self.padding == "packed":
            raise ValueError("encoder.weight_drop needs encoder.padding: reverse (packed input has no weight hook)")

    def output_size(self) -> int:
        """Feature size of the encoder's outputs."""
        if self.bidirectional and self.merge == "concat":
            return 2 * self.hidden_size
        return self.hidden_size


class EncoderOutput(NamedTuple):
    """What :meth:`RecurrentEncoder.forward` returns."""

    outputs: Tensor
    """``[batch, time, output_size]``; zero at padded positions."""
    last_hidden: Tensor
    """``[num_layers, directions, batch, hidden]``: each direction's hidden state after reading the
    whole sequence (forward: at position ``length-1``; backward: at position 0). Exact under padding."""
    state: tuple[Tensor, ...] | None = None
    """Unidirectional encoders: the recurrent state after the last time step, ``(h,)`` or ``(h, c)`` for an
    LSTM, each ``[num_layers, batch, hidden]``; pass it back in to go on reading (truncated back-propagation
    through time). Exact when every sequence fills the batch (it is the state after any padding)."""


def _orthogonal_init(rnn: nn.Module, hidden_size: int) -> None:
    """Per gate block: orthogonal recurrent matrices, Glorot-uniform input matrices; biases zero."""
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0"):
            weight = getattr(rnn, name, None)
            if weight is None:  # SRU has no recurrent matrix
                continue
            initialise = nn.init.orthogonal_ if name == "weight_hh_l0" else nn.init.xavier_uniform_
            for block in weight.split(hidden_size):
                initialise(block)
        for name in ("bias_ih_l0", "bias_hh_l0"):
            if hasattr(rnn, name):
                getattr(rnn, name).zero_()
        if isinstance(rnn, CellRNN) and rnn.project is not None:
            nn.init.xavier_uniform_(rnn.project.weight)


def make_rnn(cell: str, input_size: int, hidden_size: int, forget_bias: float = 1.0,
             init: str = "orthogonal", weight_drop: float = 0.0) -> nn.Module:
    """One single-layer, unidirectional, time-major RNN module: torch's fused one or a :class:`CellRNN`.

    ``weight_drop`` is applied by the scripted cells themselves; for fused cells the layer does it.
    """
    if cell in SCRIPTED_CELLS:
        rnn: nn.Module = CellRNN(cell, input_size, hidden_size, weight_drop)
    elif cell == "lstm":
        rnn = nn.LSTM(input_size, hidden_size)
    elif cell == "gru":
        rnn = nn.GRU(input_size, hidden_size)
    elif cell in ("rnn_tanh", "rnn_relu"):
        rnn = nn.RNN(input_size, hidden_size, nonlinearity=cell.removeprefix("rnn_"))
    else:
        raise ValueError(f"unknown cell {cell!r}; choose one of {CELLS}")
    if init == "orthogonal":
        _orthogonal_init(rnn, hidden_size)
    if cell in FORGET_GATE_BLOCK:
        forget = slice(FORGET_GATE_BLOCK[cell] * hidden_size, (FORGET_GATE_BLOCK[cell] + 1) * hidden_size)
        with torch.no_grad():
            # LSTM gate order is (input, forget, cell, output); the two biases add up, so put it all in one.
            rnn.bias_ih_l0[forget].fill_(forget_bias)
            if hasattr(rnn, "bias_hh_l0"):
                rnn.bias_hh_l0[forget].zero_()
    return rnn


def reverse_index(lengths: Tensor, max_len: int) -> Tensor:
    """Time indices ``[time, batch]`` that reverse each sequence within its own length.

    Positions past a sequence's length map to themselves, so applying the gather twice is the identity.
    """
    steps = torch.arange(max_len, device=lengths.device).unsqueeze(1)  # [T, 1]
    lengths = lengths.unsqueeze(0)  # [1, B]
    return torch.where(steps < lengths, lengths - 1 - steps, steps)


def gather_time(x: Tensor, index: Tensor) -> Tensor:
    """``x[index[t, b], b]`` for a time-major ``x`` of shape ``[time, batch, features]``."""
    return x.gather(0, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


def merge_directions(forward: Tensor, backward: Tensor, mode: str) -> Tensor:
    """Combine the two directions' features (last dimension) as ``concat | sum | mean | mul``."""
    if mode == "concat":
        return torch.cat([forward, backward], dim=-1)
    if mode == "sum":
        return forward + backward
    if mode == "mean":
        return (forward + backward) * 0.5
    if mode == "mul":
        return forward * backward
    raise ValueError(f"unknown merge {mode!r}; choose one of {MERGES}")


FUNCTIONAL = {"lstm": torch.lstm, "gru": torch.gru, "rnn_tanh": torch.rnn_tanh, "rnn_relu": torch.rnn_relu}


def rnn_weights(rnn: nn.RNNBase, weight_drop: float, training: bool) -> list[Tensor]:
    """A single-layer RNN's ``[w_ih, w_hh, b_ih, b_hh]``, with DropConnect on ``w_hh`` while training."""
    w_hh = rnn.weight_hh_l0
    if training and weight_drop > 0:
        w_hh = nn.functional.dropout(w_hh, weight_drop, training=True)
    return [rnn.weight_ih_l0, w_hh, rnn.bias_ih_l0, rnn.bias_hh_l0]


class RecurrentLayer(nn.Module):
    """One layer: a forward RNN and, if bidirectional, a backward RNN with the same input."""

    def __init__(self, input_size: int, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        arguments = (config.cell, input_size, config.hidden_size, config.forget_bias, config.init, config.weight_drop)
        self.forward_rnn = make_rnn(*arguments)
        self.backward_rnn = make_rnn(*arguments) if config.bidirectional else None

    def _run(self, rnn: nn.Module, x: Tensor, lengths: Tensor, packed: bool,
             hx: tuple[Tensor, ...] | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        """``(outputs [time, batch, hidden], final state (h,) or (h, c), each [1, batch, hidden])``."""
        if packed:
            sequence = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
            output, final = rnn(sequence, _module_state(hx))
            return pad_packed_sequence(output, total_length=x.size(0))[0], _as_tuple(final)
        if self.training and self.config.weight_drop > 0 and isinstance(rnn, nn.RNNBase):  # fused op, dropped w_hh
            if hx is None:
                zeros = x.new_zeros(1, x.size(1), self.config.hidden_size)
                hx = (zeros, zeros) if self.config.cell == "lstm" else (zeros,)
            weights = rnn_weights(rnn, self.config.weight_drop, True)
            output, *final = FUNCTIONAL[self.config.cell](x, hx if len(hx) == 2 else hx[0], weights, True, 1, 0.0,
                                                           True, False, False)
            return output, tuple(final)
        output, final = rnn(x, _module_state(hx))
        return output, _as_tuple(final)

    def forward(self, x: Tensor, lengths: Tensor, reverse: Tensor | None, packed: bool,
                hx: tuple[Tensor, ...] | None = None, x_backward: Tensor | None = None
                ) -> tuple[Tensor, Tensor | None, tuple[Tensor, ...]]:
        """Run both directions over time-major input.

        Args:
            x: ``[time, batch, input_size]``, right-padded.
            lengths: ``[batch]`` valid lengths.
            reverse: ``[time, batch]`` from :func:`reverse_index` (None when all lengths equal ``time``).
            packed: pack instead of relying on right padding.
            hx: the forward direction's initial state, ``(h,)`` or ``(h, c)``, each ``[1, batch, hidden]``.
            x_backward: the backward direction's own input (separate stacks); None reads ``x``.

        Returns:
            ``(forward, backward, forward state)``: outputs, each ``[time, batch, hidden]``, aligned to input
            positions (``backward`` is None for a unidirectional layer), and the forward RNN's final state.
        """
        forward, state = self._run(self.forward_rnn, x, lengths, packed, hx)
        if self.backward_rnn is None:
            return forward, None, state
        x = x if x_backward is None else x_backward
        if reverse is None:  # every sequence fills the batch: a plain flip is exact
            backward = self._run(self.backward_rnn, x.flip(0), lengths, packed)[0].flip(0)
        else:
            backward = gather_time(self._run(self.backward_rnn, gather_time(x, reverse), lengths, packed)[0],
                                   reverse)
        return forward, backward, state


def _masked(x: Tensor, mask: Tensor | None) -> Tensor:
    return x if mask is None else x * mask


def _module_state(hx: tuple[Tensor, ...] | None) -> Tensor | tuple[Tensor, Tensor] | None:
    """``(h,)``/``(h, c)`` → what ``nn.GRU``/``nn.LSTM`` take (``h`` or ``(h, c)``)."""
    if hx is None:
        return None
    return hx if len(hx) == 2 else hx[0]


def _as_tuple(final: Tensor | tuple[Tensor, Tensor]) -> tuple[Tensor, ...]:
    return tuple(final) if isinstance(final, tuple) else (final,)


class RecurrentEncoder(nn.Module):
    """Stacked recurrent encoder; padding never changes a sequence's result.

    Args:
        input_size: feature size of the input vectors.
        config: cell, sizes, merge mode, dropout, residuals, padding mode.
    """

    def __init__(self, input_size: int, config: EncoderConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.input_size = input_size
        self.output_size = config.output_size()
        self.separate = config.separate_directions and config.bidirectional
        between = config.hidden_size if self.separate else self.output_size  # what a layer ≥ 2 reads
        sizes = [input_size] + [between] * (config.num_layers - 1)
        self.layers = nn.ModuleList(RecurrentLayer(size, config) for size in sizes)
        self.dropout = (LockedDropout(config.dropout, time_dim=0) if config.locked_dropout
                        else nn.Dropout(config.dropout))

    def forward(self, x: Tensor, lengths: Tensor, state: tuple[Tensor, ...] | None = None) -> EncoderOutput:
        """Encode a right-padded batch.

        Args:
            x: ``[batch, time, input_size]``.
            lengths: ``[batch]`` integer lengths, each in ``1..time``.
            state: the recurrent state to start from (a unidirectional encoder's :attr:`EncoderOutput.state`);
                None starts from zeros.

        Returns:
            :class:`EncoderOutput` with ``outputs`` ``[batch, time, output_size]`` (zero where padded),
            ``last_hidden`` ``[num_layers, directions, batch, hidden]`` and, unidirectional, ``state``.
        """
        if state is not None and self.config.bidirectional:
            raise ValueError("a carried recurrent state needs a unidirectional encoder (bidirectional: false)")
        batch, max_len = x.size(0), x.size(1)
        lengths = lengths.to(x.device)
        full = bool((lengths == max_len).all())
        if full and self._can_fuse():
            return self._fused_forward(x, state)
        packed = self.config.padding == "packed" and not full
        reverse = None if full else reverse_index(lengths, max_len)
        mask = None if full else (torch.arange(max_len, device=x.device).unsqueeze(1) < lengths).unsqueeze(-1)
        last_index = (lengths - 1).view(1, batch, 1)

        hidden = x.transpose(0, 1)  # time-major: the layout the fused kernels work in
        backward_stream = hidden if self.separate else None  # separate stacks: the backward direction's input
        finals, states = [], []
        for depth, layer in enumerate(self.layers):
            if depth > 0:
                hidden = self.dropout(hidden)
                backward_stream = None if backward_stream is None else self.dropout(backward_stream)
            layer_input, backward_input = hidden, backward_stream
            layer_state = None if state is None else tuple(part[depth : depth + 1] for part in state)
            forward, backward, forward_state = layer(hidden, lengths, reverse, packed, layer_state, backward_stream)
            states.append(forward_state)
            ends = [forward.gather(0, last_index.expand(1, batch, forward.size(-1))).squeeze(0)]
            if backward is not None:
                ends.append(backward[0])
            finals.append(torch.stack(ends))
            if self.separate:  # each stack keeps its own output; they merge after the last layer
                forward, backward = (_masked(forward, mask), _masked(backward, mask))
                if self.config.residual and depth > 0:
                    forward, backward = forward + layer_input, backward + backward_input
                if depth < len(self.layers) - 1:
                    hidden, backward_stream = forward, backward
                else:
                    hidden = merge_directions(forward, backward, self.config.merge)
                continue
            hidden = forward if backward is None else merge_directions(forward, backward, self.config.merge)
            hidden = _masked(hidden, mask)  # padded positions hold garbage from running past the end
            if self.config.residual and depth > 0 and layer_input.size(-1) == hidden.size(-1):
                hidden = hidden + layer_input
        carried = None if self.config.bidirectional else tuple(torch.cat(parts) for parts in zip(*states,
                                                                                                  strict=True))
        return EncoderOutput(hidden.transpose(0, 1), torch.stack(finals), carried)

    def _can_fuse(self) -> bool:
        # One stacked call computes the same as the per-direction layers when nothing happens between
        # layers: concatenated directions, no residuals, no dropout in play (DropConnect on the recurrent
        # weights is fine: the fused call takes the dropped weights).
        config = self.config
        dropout_active = self.training and config.dropout > 0 and config.num_layers > 1
        plain = isinstance(self.layers[0].forward_rnn, nn.RNNBase)  # not e.g. int8-quantized replacements
        separate_stacks = self.separate and config.num_layers > 1
        return plain and (config.merge == "concat" or not config.bidirectional) and not config.residual \
            and not dropout_active and not separate_stacks

    def _fused_forward(self, x: Tensor, state: tuple[Tensor, ...] | None = None) -> EncoderOutput:
        """All layers and both directions in one fused kernel call (every sequence has the full length).

        This is the call ``nn.LSTM(num_layers=L, bidirectional=True)`` makes, fed this encoder's own
        per-direction weights, so there is nothing to keep in sync. At batch 1, or for batches bucketed
        by exact length, it saves the per-layer/per-direction call overhead (e.g. 2 calls instead of 4
        per sentence become 1 for a 2-layer BiLSTM).
        """
        config = self.config
        directions = 2 if config.bidirectional else 1
        weights: list[Tensor] = []
        for layer in self.layers:
            for rnn in (layer.forward_rnn, layer.backward_rnn)[:directions]:
                weights += rnn_weights(rnn, config.weight_drop, self.training)
        if state is None:
            zeros = x.new_zeros(config.num_layers * directions, x.size(0), config.hidden_size)
            state = (zeros, zeros) if config.cell == "lstm" else (zeros,)
        arguments = (weights, True, config.num_layers, 0.0, self.training, config.bidirectional, True)
        outputs, *final = FUNCTIONAL[config.cell](x, state if config.cell == "lstm" else state[0], *arguments)
        h_n = final[0]
        return EncoderOutput(outputs, h_n.view(config.num_layers, directions, x.size(0), config.hidden_size),
                             None if config.bidirectional else tuple(final))
