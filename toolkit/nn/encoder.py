"""Stacked (bi)directional recurrent encoders on torch's fused RNN kernels.

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

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
INITS = ("orthogonal", "torch")
MERGES = ("concat", "sum", "mean", "mul")
PADDING_MODES = ("reverse", "packed")


@dataclass
class EncoderConfig:
    """Hyper-parameters of a :class:`RecurrentEncoder`."""

    cell: str = "lstm"
    """Recurrent cell: ``rnn_tanh``, ``rnn_relu``, ``lstm`` or ``gru``."""
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
    """Initial LSTM forget-gate bias (Jozefowicz et al. 2015); ignored by other cells."""
    init: str = "orthogonal"
    """Weight initialisation: ``orthogonal`` (recurrent matrices orthogonal per gate, input matrices
    Glorot-uniform, biases zero: Keras' defaults, which keep simple RNNs trainable over long texts) or
    ``torch`` (PyTorch's uniform ±1/√hidden)."""
    padding: str = "reverse"
    """How mixed lengths stay exact: ``reverse`` (unpacked, oneDNN fast path) or ``packed``."""

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


def _orthogonal_init(rnn: nn.RNNBase, hidden_size: int) -> None:
    with torch.no_grad():
        for gate in range(rnn.weight_hh_l0.size(0) // hidden_size):
            block = slice(gate * hidden_size, (gate + 1) * hidden_size)
            nn.init.orthogonal_(rnn.weight_hh_l0[block])
            nn.init.xavier_uniform_(rnn.weight_ih_l0[block])
        rnn.bias_ih_l0.zero_()
        rnn.bias_hh_l0.zero_()


def make_rnn(cell: str, input_size: int, hidden_size: int, forget_bias: float = 1.0,
             init: str = "orthogonal") -> nn.RNNBase:
    """One single-layer, unidirectional, time-major fused RNN module."""
    if cell == "lstm":
        rnn: nn.RNNBase = nn.LSTM(input_size, hidden_size)
    elif cell == "gru":
        rnn = nn.GRU(input_size, hidden_size)
    elif cell in ("rnn_tanh", "rnn_relu"):
        rnn = nn.RNN(input_size, hidden_size, nonlinearity=cell.removeprefix("rnn_"))
    else:
        raise ValueError(f"unknown cell {cell!r}; choose one of {CELLS}")
    if init == "orthogonal":
        _orthogonal_init(rnn, hidden_size)
    if cell == "lstm":
        with torch.no_grad():
            # Gate order is (input, forget, cell, output); the two biases add up, so put it all in one.
            rnn.bias_ih_l0[hidden_size : 2 * hidden_size].fill_(forget_bias)
            rnn.bias_hh_l0[hidden_size : 2 * hidden_size].zero_()
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


class RecurrentLayer(nn.Module):
    """One layer: a forward RNN and, if bidirectional, a backward RNN with the same input."""

    def __init__(self, input_size: int, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.forward_rnn = make_rnn(config.cell, input_size, config.hidden_size, config.forget_bias, config.init)
        self.backward_rnn = (
            make_rnn(config.cell, input_size, config.hidden_size, config.forget_bias, config.init)
            if config.bidirectional
            else None
        )

    def _run(self, rnn: nn.RNNBase, x: Tensor, lengths: Tensor, packed: bool) -> Tensor:
        if not packed:
            return rnn(x)[0]
        sequence = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
        return pad_packed_sequence(rnn(sequence)[0], total_length=x.size(0))[0]

    def forward(self, x: Tensor, lengths: Tensor, reverse: Tensor | None, packed: bool) -> tuple[Tensor, Tensor]:
        """Run both directions over time-major input.

        Args:
            x: ``[time, batch, input_size]``, right-padded.
            lengths: ``[batch]`` valid lengths.
            reverse: ``[time, batch]`` from :func:`reverse_index` (None when all lengths equal ``time``).
            packed: pack instead of relying on right padding.

        Returns:
            ``(forward, backward)`` outputs, each ``[time, batch, hidden]``, aligned to input positions;
            ``backward`` is None for a unidirectional layer.
        """
        forward = self._run(self.forward_rnn, x, lengths, packed)
        if self.backward_rnn is None:
            return forward, None
        if reverse is None:  # every sequence fills the batch: a plain flip is exact
            backward = self._run(self.backward_rnn, x.flip(0), lengths, packed).flip(0)
        else:
            backward = gather_time(self._run(self.backward_rnn, gather_time(x, reverse), lengths, packed), reverse)
        return forward, backward


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
        sizes = [input_size] + [self.output_size] * (config.num_layers - 1)
        self.layers = nn.ModuleList(RecurrentLayer(size, config) for size in sizes)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, lengths: Tensor) -> EncoderOutput:
        """Encode a right-padded batch.

        Args:
            x: ``[batch, time, input_size]``.
            lengths: ``[batch]`` integer lengths, each in ``1..time``.

        Returns:
            :class:`EncoderOutput` with ``outputs`` ``[batch, time, output_size]`` (zero where padded) and
            ``last_hidden`` ``[num_layers, directions, batch, hidden]``.
        """
        batch, max_len = x.size(0), x.size(1)
        lengths = lengths.to(x.device)
        full = bool((lengths == max_len).all())
        if full and self._can_fuse():
            return self._fused_forward(x)
        packed = self.config.padding == "packed" and not full
        reverse = None if full else reverse_index(lengths, max_len)
        mask = None if full else (torch.arange(max_len, device=x.device).unsqueeze(1) < lengths).unsqueeze(-1)
        last_index = (lengths - 1).view(1, batch, 1)

        hidden = x.transpose(0, 1)  # time-major: the layout the fused kernels work in
        finals = []
        for depth, layer in enumerate(self.layers):
            if depth > 0:
                hidden = self.dropout(hidden)
            layer_input = hidden
            forward, backward = layer(hidden, lengths, reverse, packed)
            ends = [forward.gather(0, last_index.expand(1, batch, forward.size(-1))).squeeze(0)]
            if backward is None:
                hidden = forward
            else:
                ends.append(backward[0])
                hidden = merge_directions(forward, backward, self.config.merge)
            finals.append(torch.stack(ends))
            if mask is not None:
                hidden = hidden * mask  # padded positions hold garbage from running past the end
            if self.config.residual and depth > 0 and layer_input.size(-1) == hidden.size(-1):
                hidden = hidden + layer_input
        return EncoderOutput(hidden.transpose(0, 1), torch.stack(finals))

    def _can_fuse(self) -> bool:
        # One stacked call computes the same as the per-direction layers when nothing happens between
        # layers: concatenated directions, no residuals, no dropout in play.
        config = self.config
        dropout_active = self.training and config.dropout > 0
        plain = isinstance(self.layers[0].forward_rnn, nn.RNNBase)  # not e.g. int8-quantized replacements
        return plain and (config.merge == "concat" or not config.bidirectional) and not config.residual \
            and not dropout_active

    def _fused_forward(self, x: Tensor) -> EncoderOutput:
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
                weights += [rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0]
        zeros = x.new_zeros(config.num_layers * directions, x.size(0), config.hidden_size)
        arguments = (weights, True, config.num_layers, 0.0, self.training, config.bidirectional, True)
        if config.cell == "lstm":
            outputs, h_n, _ = torch.lstm(x, (zeros, zeros), *arguments)
        elif config.cell == "gru":
            outputs, h_n = torch.gru(x, zeros, *arguments)
        else:
            outputs, h_n = (torch.rnn_tanh if config.cell == "rnn_tanh" else torch.rnn_relu)(x, zeros, *arguments)
        return EncoderOutput(outputs, h_n.view(config.num_layers, directions, x.size(0), config.hidden_size))
