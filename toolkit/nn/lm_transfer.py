"""Start a network's embeddings and recurrent encoder from a trained language model's (given as tensors).

A forward LM's layers go to the forward direction of each layer, a backward LM's to the backward direction; a
bidirectional encoder with more than one layer needs ``separate_directions`` (each direction its own stack, the
shape of two LMs side by side). Words are matched by their string: a word the LM knows gets the LM's vector, any
other word keeps its fresh (random or GloVe) row. Reading the LM's model directory is not done here: it is opened
once for reuse (:func:`toolkit.tasks.finetune.open_language_model`: :mod:`toolkit.data.lm` opens and checks it,
:mod:`toolkit.specs.lm` types its network side); this module takes its state dict and vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from toolkit.errors import ConfigError
from toolkit.nn.encoder import EncoderConfig, RecurrentEncoder

PADDING = "<pad>"


@dataclass
class TransferReport:
    """What was copied (printed by ``bilstm fit`` and kept in meta.json ``init_from``)."""

    direction: str
    words_found: int
    words_total: int
    layers: int

    def __str__(self) -> str:
        share = self.words_found / max(1, self.words_total)
        return (f"{self.direction} LM: {self.words_found:,} of {self.words_total:,} words have its vectors "
                f"({share:.1%}); encoder layers 1–{self.layers} copied")


def vocabulary_rows(tokens: Sequence[str], lm_index: Mapping[str, int]) -> tuple[Tensor, Tensor]:
    """For each of a network's ``tokens``: the LM's row ``[V]`` (long) and whether it has one ``[V]`` (bool).

    Padding (``<pad>``) never takes a vector; specials the LM has too (``<unk>``, ``<eos>``) take the LM's.
    """
    rows = torch.zeros(len(tokens), dtype=torch.long)
    found = torch.zeros(len(tokens), dtype=torch.bool)
    for position, token in enumerate(tokens):
        if token == PADDING:
            continue
        row = lm_index.get(token)
        if row is not None:
            rows[position], found[position] = row, True
    return rows, found


def copy_embeddings(table: nn.Embedding, lm_vectors: Tensor, rows: Tensor, found: Tensor) -> None:
    """Copy ``lm_vectors [V_lm, E]`` rows into ``table`` where ``found``; the sizes must agree."""
    if lm_vectors.size(1) != table.embedding_dim:
        raise ConfigError(f"init_from: the language model's word vectors have {lm_vectors.size(1)} dimensions but "
                          f"network.embedding_dim is {table.embedding_dim}; set embedding_dim: {lm_vectors.size(1)}")
    with torch.no_grad():
        table.weight[found] = lm_vectors[rows[found]].to(table.weight)


def _check_encoder(config: EncoderConfig, lm: EncoderConfig, direction: str) -> None:
    problems = []
    if config.cell != lm.cell:
        problems.append(f"encoder.cell is {config.cell!r}, the LM's is {lm.cell!r}")
    if config.hidden_size != lm.hidden_size:
        problems.append(f"encoder.hidden_size is {config.hidden_size}, the LM's is {lm.hidden_size}")
    if config.num_layers > lm.num_layers:
        problems.append(f"encoder.num_layers is {config.num_layers}, the LM has only {lm.num_layers}")
    if direction == "backward" and not config.bidirectional:
        problems.append("a backward LM needs a bidirectional encoder (encoder.bidirectional: true)")
    if config.bidirectional and config.num_layers > 1 and not config.separate_directions:
        problems.append("a bidirectional encoder of several layers merges the directions after every layer; set "
                        "encoder.separate_directions: true to give each direction its own stack, as in the LMs")
    if problems:
        raise ConfigError(f"init_from: the {direction} language model does not fit this network: "
                          + "; ".join(problems))


def copy_encoder(encoder: RecurrentEncoder, lm_config: EncoderConfig, lm_state: Mapping[str, Tensor],
                 direction: str) -> int:
    """Copy an LM encoder's layers (``lm_state``: its ``layers.N.forward_rnn.*`` tensors) into one direction of
    ``encoder``'s bottom layers; returns how many layers were copied."""
    _check_encoder(encoder.config, lm_config, direction)
    target = "forward_rnn" if direction == "forward" else "backward_rnn"
    for depth, layer in enumerate(encoder.layers):
        rnn = getattr(layer, target)
        prefix = f"layers.{depth}.forward_rnn."
        state = {name[len(prefix):]: tensor for name, tensor in lm_state.items() if name.startswith(prefix)}
        own = rnn.state_dict()
        wrong = [(name, tuple(state[name].shape), tuple(own[name].shape)) for name in own
                 if name in state and state[name].shape != own[name].shape]
        if set(state) != set(own) or wrong:
            raise ConfigError(f"init_from: layer {depth + 1} of the {direction} LM does not fit: "
                              f"tensors {sorted(set(state) ^ set(own))[:4]} differ, shapes {wrong[:3]}")
        rnn.load_state_dict(state)
    return len(encoder.layers)
