"""Attentional recurrent decoder (Luong et al. 2015) with an explicit, immutable state.

One step::

    x_t   = [embed(y_{t-1}); h̃_{t-1}]             input feeding (h̃_{t-1} omitted when switched off)
    h_t   = RNN(x_t, h_{t-1})                      LSTM or GRU, one or more layers
    c_t   = attention(h_t, encoder outputs)        dot / general / additive scores
    h̃_t  = tanh(W_c [h_t; c_t])                   the attentional hidden state
    p(y_t) = softmax(W_o h̃_t + b)                 W_o = (target embedding) · P when tied

The decoder never stores per-sentence data on itself: :meth:`AttentionDecoder.step` takes a
:class:`DecoderState` and returns a new one, and the encoder side is a :class:`Memory`. Both are tuples
of tensors with the batch on a known axis, so a search can reorder (``index``) them freely and one model
can serve concurrent requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from toolkit.nn.attention import ATTENTIONS, Attention
from toolkit.nn.embeddings import WordEmbedding
from toolkit.nn.encoder import make_rnn

DECODER_CELLS = ("lstm", "gru")
BRIDGES = ("dense", "zero")


@dataclass
class DecoderConfig:
    """Hyper-parameters of an :class:`AttentionDecoder`."""

    cell: str = "lstm"
    """Recurrent cell: ``lstm`` or ``gru``."""
    hidden_size: int = 512
    """Units per layer (also the size of the attentional state h̃)."""
    num_layers: int = 1
    """Stacked recurrent layers."""
    attention: str = "general"
    """Scoring: ``dot`` or ``general`` (multiplicative, Luong) or ``additive`` (Bahdanau)."""
    attention_size: int = 256
    """Hidden size of the additive scorer (``additive`` only)."""
    input_feeding: bool = True
    """Feed the previous attentional state h̃_{t-1} into the next step (Luong). Off, the RNN reads only
    the target embeddings, which lets training run it over the whole sentence in one fused call."""
    dropout: float = 0.3
    """Dropout between layers and on h̃ before the output layer."""
    bridge: str = "dense"
    """Initial state: ``dense`` (h₀ = tanh(W_h [→h; ←h]) from the encoder's exact final states of the
    matching layer; the LSTM cell state c₀ = W_c [→h; ←h], because the encoder returns no exact cell
    state) or ``zero``."""
    tie_embeddings: bool = True
    """Output layer reuses the target embedding matrix (through a projection of h̃ to the embedding size)."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field."""
        if self.cell not in DECODER_CELLS:
            raise ValueError(f"decoder.cell must be one of {DECODER_CELLS}, got {self.cell!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"decoder.attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if self.bridge not in BRIDGES:
            raise ValueError(f"decoder.bridge must be one of {BRIDGES}, got {self.bridge!r}")
        if self.hidden_size < 1 or self.num_layers < 1:
            raise ValueError("decoder.hidden_size and decoder.num_layers must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"decoder.dropout must be in [0, 1), got {self.dropout}")


def _index(tensor: Tensor | None, rows: Tensor, dim: int) -> Tensor | None:
    return None if tensor is None else tensor.index_select(dim, rows)


class Memory(NamedTuple):
    """The encoded source, read by every decoding step."""

    values: Tensor
    """``[batch, src_len, memory_size]``: encoder outputs (zero at padding)."""
    keys: Tensor
    """``[batch, src_len, key_size]``: the attention's precomputed key projection."""
    mask: Tensor
    """``[batch, src_len]`` bool: True at real source positions."""

    def index(self, rows: Tensor) -> Memory:
        """Select / repeat / reorder sentences (``rows`` indexes the batch axis)."""
        return Memory(*(t.index_select(0, rows) for t in self))


class DecoderState(NamedTuple):
    """The decoder's recurrent state between steps."""

    hidden: Tensor
    """``[num_layers, batch, hidden]``."""
    cell: Tensor | None
    """``[num_layers, batch, hidden]`` LSTM cell state; None for a GRU."""
    feed: Tensor | None
    """``[batch, hidden]``: the previous attentional state h̃ (input feeding); None when off."""

    def index(self, rows: Tensor) -> DecoderState:
        """Select / repeat / reorder sentences (``rows`` indexes the batch axis)."""
        return DecoderState(_index(self.hidden, rows, 1), _index(self.cell, rows, 1), _index(self.feed, rows, 0))


class AttentionDecoder(nn.Module):
    """Target embedding, bridge, stacked RNN, attention and output layer.

    Args:
        config: architecture.
        vocab_size: target vocabulary size (the output layer's width).
        embedding_dim: target embedding size.
        memory_size: encoder output size.
        bridge_size: size of one encoder layer's final states, both directions concatenated.
        embedding_dropout: dropout on the target embeddings.
        word_dropout: training-time probability of replacing an input token by ``<unk>``.
    """

    def __init__(self, config: DecoderConfig, vocab_size: int, embedding_dim: int, memory_size: int,
                 bridge_size: int, embedding_dropout: float = 0.0, word_dropout: float = 0.0) -> None:
        super().__init__()
        config.validate()
        self.config = config
        hidden = config.hidden_size
        self.embed = WordEmbedding(vocab_size, embedding_dim, embedding_dropout, word_dropout)
        input_size = embedding_dim + (hidden if config.input_feeding else 0)
        self.layers = nn.ModuleList(
            make_rnn(config.cell, input_size if depth == 0 else hidden, hidden) for depth in range(config.num_layers)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.attention = Attention(config.attention, hidden, memory_size, config.attention_size)
        self.combine = nn.Linear(hidden + memory_size, hidden, bias=False)
        if config.bridge == "dense":
            self.bridge_hidden = nn.Linear(bridge_size, hidden)
            self.bridge_cell = nn.Linear(bridge_size, hidden) if config.cell == "lstm" else None
        if config.tie_embeddings:
            self.project = nn.Linear(hidden, embedding_dim)
            self.output_bias = nn.Parameter(torch.zeros(vocab_size))
        else:
            self.output = nn.Linear(hidden, vocab_size)

    # -- state ------------------------------------------------------------------------------------------

    def memory(self, outputs: Tensor, mask: Tensor) -> Memory:
        """Encoder ``outputs [batch, src_len, memory_size]`` and ``mask [batch, src_len]`` → :class:`Memory`."""
        return Memory(outputs, self.attention.keys(outputs), mask)

    def initial_state(self, last_hidden: Tensor) -> DecoderState:
        """The state before the first target token.

        Args:
            last_hidden: ``[enc_layers, directions, batch, enc_hidden]`` (``EncoderOutput.last_hidden``).
                Decoder layer ``l`` starts from encoder layer ``enc_layers - dec_layers + l`` (the top
                layers; the bottom one when the decoder is deeper).
        """
        enc_layers, _, batch, _ = last_hidden.shape
        layers, hidden = self.config.num_layers, self.config.hidden_size
        if self.config.bridge == "zero":
            h = last_hidden.new_zeros(layers, batch, hidden)
            c = h.clone() if self.config.cell == "lstm" else None
        else:
            chosen = [max(0, enc_layers - layers + depth) for depth in range(layers)]
            # index_select, not last_hidden[chosen]: ONNX export traces a one-element list index as an integer
            rows = torch.tensor(chosen, device=last_hidden.device)
            finals = last_hidden.index_select(0, rows).permute(0, 2, 1, 3).reshape(layers, batch, -1)  # [L, B, dirs*H]
            h = torch.tanh(self.bridge_hidden(finals))
            c = self.bridge_cell(finals) if self.bridge_cell is not None else None
        feed = last_hidden.new_zeros(batch, hidden) if self.config.input_feeding else None
        return DecoderState(h, c, feed)

    # -- computation ------------------------------------------------------------------------------------

    def _rnn(self, x: Tensor, state: DecoderState) -> tuple[Tensor, Tensor, Tensor | None]:
        """Run the stacked RNN over time-major ``x [time, batch, input]`` from ``state`` (fused kernels)."""
        hiddens, cells = [], []
        for depth, rnn in enumerate(self.layers):
            if depth > 0:
                x = self.dropout(x)
            h = state.hidden[depth : depth + 1].contiguous()
            if state.cell is not None:
                x, (h, c) = rnn(x, (h, state.cell[depth : depth + 1].contiguous()))
                cells.append(c)
            else:
                x, h = rnn(x, h)
            hiddens.append(h)
        return x, torch.cat(hiddens), torch.cat(cells) if cells else None

    def _input_projection(self, embedded: Tensor) -> Tensor:
        """The embedding part of the first layer's input transform, ``W_ih[:, :E] e + b_ih`` (``[..., gates]``).

        With input feeding, this is computed for all target positions in one matrix product; only the
        feed and recurrent parts remain per step.
        """
        rnn = self.layers[0]
        return nn.functional.linear(embedded, rnn.weight_ih_l0[:, : embedded.size(-1)], rnn.bias_ih_l0)

    def _cell(self, depth: int, projected: Tensor, h: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """One step of layer ``depth`` given its input already projected (``W_ih x + b_ih``, ``[batch, gates]``).

        The same equations as ``nn.LSTM``/``nn.GRU`` on the same parameters; for single steps plain matrix
        products are faster on CPU than the fused oneDNN kernel, which re-lays out its weights every call.
        """
        rnn = self.layers[depth]
        recurrent = nn.functional.linear(h, rnn.weight_hh_l0, rnn.bias_hh_l0)
        if c is not None:  # LSTM, gate order (input, forget, cell, output)
            i, f, g, o = (projected + recurrent).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        x_r, x_z, x_n = projected.chunk(3, dim=1)  # GRU, gate order (reset, update, new)
        h_r, h_z, h_n = recurrent.chunk(3, dim=1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        return (1 - z) * torch.tanh(x_n + r * h_n) + z * h, None

    def _step_rnn(self, projected: Tensor, feed: Tensor | None, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """All layers for one step; ``projected`` from :meth:`_input_projection` → (top output, new h/c)."""
        if feed is not None:
            embedding_dim = self.embed.dim
            projected = projected + nn.functional.linear(feed, self.layers[0].weight_ih_l0[:, embedding_dim:])
        hiddens, cells = [], []
        x = None
        for depth in range(len(self.layers)):
            if depth > 0:
                rnn = self.layers[depth]
                projected = nn.functional.linear(self.dropout(x), rnn.weight_ih_l0, rnn.bias_ih_l0)
            c = state.cell[depth] if state.cell is not None else None
            x, c = self._cell(depth, projected, state.hidden[depth], c)
            hiddens.append(x)
            cells.append(c)
        cell = torch.stack(cells) if state.cell is not None else None
        return x, DecoderState(torch.stack(hiddens), cell, state.feed)

    def _attend(self, queries: Tensor, memory: Memory) -> tuple[Tensor, Tensor]:
        """``queries [batch, time, hidden]`` → (h̃ ``[batch, time, hidden]``, weights ``[batch, time, src_len]``)."""
        context, weights = self.attention(queries, memory.keys, memory.values, memory.mask)
        return torch.tanh(self.combine(torch.cat([queries, context], dim=-1))), weights

    def logits(self, attentional: Tensor) -> Tensor:
        """h̃ ``[..., hidden]`` → vocabulary logits ``[..., vocab]`` (dropout applied in training)."""
        attentional = self.dropout(attentional)
        if self.config.tie_embeddings:
            return nn.functional.linear(self.project(attentional), self.embed.embedding.weight, self.output_bias)
        return self.output(attentional)

    def step(self, tokens: Tensor, state: DecoderState, memory: Memory) -> tuple[Tensor, DecoderState, Tensor]:
        """One decoding step.

        Args:
            tokens: ``[batch]`` the previous target tokens (``<s>`` at the start).
            state: the state after the previous step.
            memory: the encoded sources.

        Returns:
            ``(logits [batch, vocab], new state, attention weights [batch, src_len])``.
        """
        projected = self._input_projection(self.embed(tokens.unsqueeze(1)).squeeze(1))  # [B, gates]
        output, state = self._step_rnn(projected, state.feed, state)  # output [B, H]
        attentional, weights = self._attend(output.unsqueeze(1), memory)  # [B, 1, H], [B, 1, S]
        attentional = attentional.squeeze(1)
        new_state = state._replace(feed=attentional if self.config.input_feeding else None)
        return self.logits(attentional), new_state, weights.squeeze(1)

    def forward(self, targets: Tensor, state: DecoderState, memory: Memory) -> tuple[Tensor, Tensor]:
        """Teacher forcing over whole target sentences.

        Args:
            targets: ``[batch, tgt_len]`` decoder inputs (``<s> y_1 … y_{n-1}``, right-padded).
            state: from :meth:`initial_state`.
            memory: from :meth:`memory`.

        Returns:
            ``(h̃ [batch, tgt_len, hidden], attention weights [batch, tgt_len, src_len])``; pass h̃ (or
            the rows of it that are real tokens) to :meth:`logits`. Positions past a target's length hold
            garbage, which the loss masks out.
        """
        embedded = self.embed(targets)  # [B, T, E]
        if not self.config.input_feeding:
            # Nothing feeds back, so the RNN runs over the whole sentence in one fused call and the
            # attention for all positions is one batched matrix product.
            output, _, _ = self._rnn(embedded.transpose(0, 1), state)
            return self._attend(output.transpose(0, 1), memory)
        projected = self._input_projection(embedded)  # [B, T, gates]: one product for all positions
        attentionals, weights = [], []
        for t in range(targets.size(1)):
            output, state = self._step_rnn(projected[:, t], state.feed, state)
            attentional, weight = self._attend(output.unsqueeze(1), memory)
            attentionals.append(attentional)
            weights.append(weight)
            state = state._replace(feed=attentional.squeeze(1))
        return torch.cat(attentionals, dim=1), torch.cat(weights, dim=1)
