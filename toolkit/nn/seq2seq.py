"""Encoder–decoder translation network: BiLSTM encoder → bridge → attentional decoder (plain torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from toolkit.nn.beam import DecodingConfig, Hypothesis, beam_search, greedy_search
from toolkit.nn.decoder import AttentionDecoder, DecoderConfig, DecoderState, Memory
from toolkit.nn.embeddings import WordEmbedding
from toolkit.nn.encoder import EncoderConfig, RecurrentEncoder


@dataclass
class TranslateNetConfig:
    """Architecture of a :class:`TranslateNet` (vocabulary sizes come from the data)."""

    embedding_dim: int = 256
    """Source and target embedding size."""
    embedding_dropout: float = 0.2
    """Dropout on the source and target embeddings."""
    word_dropout: float = 0.0
    """Training-time probability of replacing an input subword by ``<unk>`` (both sides)."""
    share_embeddings: bool = True
    """One embedding matrix for source and target (needs a joint vocabulary). With
    ``decoder.tie_embeddings`` the output layer shares it as well (three-way tying)."""
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(hidden_size=256, num_layers=2, dropout=0.3))
    """The bidirectional recurrent encoder."""
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    """The attentional decoder."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field."""
        self.encoder.validate()
        self.decoder.validate()
        if self.embedding_dim < 1:
            raise ValueError("embedding_dim must be >= 1")


class TranslateNet(nn.Module):
    """Source ids → target logits (teacher forcing) or translations (greedy / beam search).

    Args:
        config: architecture.
        source_vocab_size: source vocabulary size.
        target_vocab_size: target vocabulary size.
        bos, eos: the target start/end ids; ``banned`` ids are never produced (padding, ``<s>``). They come from
            the tokenizer (the translate spec passes them): the network does not assume any.
    """

    def __init__(self, config: TranslateNetConfig, source_vocab_size: int, target_vocab_size: int, *, bos: int,
                 eos: int, banned: tuple[int, ...] = ()) -> None:
        super().__init__()
        config.validate()
        if config.share_embeddings and source_vocab_size != target_vocab_size:
            raise ValueError("share_embeddings needs one joint vocabulary for both languages "
                             f"(source {source_vocab_size} != target {target_vocab_size} entries)")
        self.config = config
        self.bos, self.eos, self.banned = bos, eos, tuple(banned)
        self.encoder = RecurrentEncoder(config.embedding_dim, config.encoder)
        directions = 2 if config.encoder.bidirectional else 1
        self.decoder = AttentionDecoder(
            config.decoder, target_vocab_size, config.embedding_dim, self.encoder.output_size,
            directions * config.encoder.hidden_size, config.embedding_dropout, config.word_dropout,
        )
        # Shared embeddings live once, in the decoder (safetensors refuses aliased tensors).
        self.source_embed = None if config.share_embeddings else WordEmbedding(
            source_vocab_size, config.embedding_dim, config.embedding_dropout, config.word_dropout)

    def embed_source(self, source: Tensor) -> Tensor:
        """``[batch, src_len]`` ids → ``[batch, src_len, embedding_dim]``."""
        embed = self.decoder.embed if self.source_embed is None else self.source_embed
        return embed(source)

    def encode(self, source: Tensor, lengths: Tensor) -> tuple[Memory, DecoderState]:
        """Encode ``source [batch, src_len]`` (right-padded, ``lengths [batch]``) → (memory, initial state)."""
        encoded = self.encoder(self.embed_source(source), lengths)
        positions = torch.arange(source.size(1), device=source.device).unsqueeze(0)  # (no bool cumsum: ONNX lacks it)
        mask = positions < lengths.to(source.device).unsqueeze(1)
        return self.decoder.memory(encoded.outputs, mask), self.decoder.initial_state(encoded.last_hidden)

    def forward(self, source: Tensor, lengths: Tensor, target_in: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher forcing.

        Args:
            source: ``[batch, src_len]`` source ids; ``lengths`` ``[batch]``.
            target_in: ``[batch, tgt_len]`` decoder inputs ``<s> y_1 … y_{n-1}`` (right-padded).

        Returns:
            ``(h̃ [batch, tgt_len, hidden], attention [batch, tgt_len, src_len])``; logits via
            :meth:`logits` (on the real positions only, to save the softmax over padding).
        """
        memory, state = self.encode(source, lengths)
        return self.decoder(target_in, state, memory)

    def logits(self, attentional: Tensor) -> Tensor:
        """h̃ ``[..., hidden]`` → logits ``[..., target_vocab]``."""
        return self.decoder.logits(attentional)

    def translate(self, source: Tensor, lengths: Tensor, decoding: DecodingConfig,
                  return_attention: bool = False) -> list[Hypothesis]:
        """Search for the best translation of each source sentence (greedy when ``beam_size == 1``).

        Args:
            source: ``[batch, src_len]``; lengths ``[batch]``.
            decoding: beam size, length penalty and length limits.
            return_attention: fill :attr:`Hypothesis.attention` (``[output steps, src_len]``, trimmed to
                each sentence's own source length).

        Returns:
            One :class:`Hypothesis` per sentence, in input order.
        """
        decoding.validate()
        memory, state = self.encode(source, lengths)
        limits = decoding.max_lengths(lengths.to(source.device))
        common = {"bos": self.bos, "eos": self.eos, "banned": self.banned, "return_attention": return_attention}
        if decoding.beam_size == 1:
            results = greedy_search(self.decoder, memory, state, limits, **common)
        else:
            results = beam_search(self.decoder, memory, state, limits, beam_size=decoding.beam_size,
                                  length_penalty=decoding.length_penalty, **common)
        if return_attention:
            for result, length in zip(results, lengths.tolist(), strict=True):
                result.attention = result.attention[:, :length]
        return results
